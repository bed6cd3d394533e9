import { lstat } from 'node:fs/promises';
import path from 'node:path';
import type { ContentEntry } from '../../contract/release-content.js';
import type { KnownContent } from './file-index.js';
import { carryOver, inodeKey, isTrusted, type InodeStat, type TrustTable } from './trust.js';

const BATCH = 32;

/**
 * After a release assembled from a delta upload is published: every file of it was verified in
 * this ingest (hashed, or trusted, and the tree digest checked), so each inode is noted as lstat
 * sees it now, after the ingest's own links, chmods and the bundle's removal moved its ctime.
 */
export async function noteRelease(trust: TrustTable, dir: string, contents: readonly ContentEntry[]): Promise<void> {
  const files = contents.filter((e): e is Extract<ContentEntry, { type: 'file' }> => e.type === 'file');
  for (let i = 0; i < files.length; i += BATCH) {
    await Promise.all(files.slice(i, i + BATCH).map(async (entry) => {
      const st = await lstat(path.join(dir, entry.path), { bigint: true }).catch(() => undefined);
      if (st?.isFile() && st.size === BigInt(entry.size)) await trust.note(st, entry.sha256);
    }));
  }
  await trust.save();
}

export interface Survivor { file: string; before: InodeStat }

/**
 * Before a release is removed: the trusted files it shares with kept releases (by content, then
 * by inode), each with a kept path to it and its stat now. Removing the release's links moves
 * their ctime; carryOverAll notes the new one when nothing else changed.
 */
export async function trustedSurvivors(
  trust: TrustTable, removed: readonly ContentEntry[], known: ReadonlyMap<string, readonly KnownContent[]>, releaseDir: (id: string) => string,
): Promise<Survivor[]> {
  const survivors = new Map<string, Survivor>();
  const seen = new Set<string>();
  for (const entry of removed) {
    if (entry.type !== 'file' || seen.has(entry.sha256)) continue;
    seen.add(entry.sha256);
    for (const candidate of known.get(entry.sha256) ?? []) {
      const file = path.join(releaseDir(candidate.releaseId), candidate.path);
      const st = await lstat(file, { bigint: true }).catch(() => undefined);
      if (!st?.isFile() || survivors.has(inodeKey(st))) continue;
      if (isTrusted(await trust.get(st), st, entry.sha256)) survivors.set(inodeKey(st), { file, before: st });
    }
  }
  return [...survivors.values()];
}

/** After the removal: each survivor's record follows its new ctime if only its link count changed. */
export async function carryOverAll(trust: TrustTable, survivors: readonly Survivor[]): Promise<void> {
  for (const { file, before } of survivors) {
    const after = await lstat(file, { bigint: true }).catch(() => undefined);
    if (!after) continue;
    const record = carryOver(await trust.get(before), before, after);
    if (record) await trust.set(after, record);
  }
  await trust.save();
}
