export interface RetainedRelease { releaseId: string; createdAt: string }

export interface CleanupInput {
  releases: RetainedRelease[];
  keep: number;
  /** Releases a slot points at (live, standby, or a failed slot kept for inspection). */
  referenced: ReadonlySet<string>;
  /** Releases whose directory a running process uses (from PM2's pm_cwd), whatever SQLite says. */
  inUse: ReadonlySet<string>;
  /** The last release that served traffic and is not bad: the rollback target of last resort. */
  lastGood: string | null;
}

/**
 * Pure: which releases cleanup may delete. The newest `keep` stay, and so does every release that
 * is referenced, in use, or the last good one, even beyond `keep`.
 */
export function planReleaseCleanup(input: CleanupInput): { remove: string[]; keep: string[] } {
  const newestFirst = [...input.releases].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.releaseId.localeCompare(a.releaseId));
  const keep: string[] = [];
  const remove: string[] = [];
  newestFirst.forEach((release, index) => {
    const protectedRelease = index < input.keep || input.referenced.has(release.releaseId)
      || input.inUse.has(release.releaseId) || input.lastGood === release.releaseId;
    (protectedRelease ? keep : remove).push(release.releaseId);
  });
  return { remove, keep };
}
