import type { ReleaseState } from '../state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha, type Slot } from '../../contract/names.js';

/** What the rollback rules need to know of a release the host has. */
export interface RollbackCandidate {
  releaseId: string;
  /** The full commit SHA from the release's manifest. */
  sha: string;
  state: ReleaseState;
  /** The id of the last push that put it live: the deploy order. */
  lastDeployId: number | null;
  liveAt: string | null;
  /** Set when an operator rolled back away from it. */
  rolledBack: boolean;
}

/**
 * Pure: the release a `--to` reference names. An exact release id wins; otherwise the reference
 * must be a prefix of exactly one release id or one full commit SHA (the API takes 7 characters
 * or more, git's own default abbreviation).
 * Several releases of one commit (different contents) make the commit's SHA ambiguous.
 */
export function resolveReleaseRef(app: string, ref: string, releases: RollbackCandidate[]): RollbackCandidate {
  const exact = releases.find((r) => r.releaseId === ref);
  if (exact) return exact;
  const matches = releases.filter((r) => r.releaseId.startsWith(ref) || r.sha.startsWith(ref));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) {
    throw new SlipwayError('release_not_found', `no release of ${app} on this host matches ${ref}`, {
      hint: 'deploy releases lists what the host has', status: 404,
    });
  }
  throw new SlipwayError('release_ref_ambiguous', `${ref} matches ${matches.length} releases of ${app}: ${matches.map((r) => r.releaseId).join(', ')}`, {
    hint: 'give more characters of the one you mean (deploy releases lists them)', status: 409,
    details: matches.map((r) => `${r.releaseId} (${r.state})`),
  });
}

/**
 * Pure: the target of a plain `deploy rollback`, walking back one release at a time through
 * deploy order, as Capistrano does: the most recently pushed release that is not live, is marked
 * good (never bad, failed or never live) and that no operator has rolled back away from. So after
 * pushes A, B, C two rollbacks give B, then A, never C again; `--to` reaches any release.
 */
export function previousRelease(releases: RollbackCandidate[], liveRelease: string | null): string | null {
  const candidates = releases
    .filter((r) => r.releaseId !== liveRelease && r.state === 'good' && !r.rolledBack && (r.lastDeployId !== null || r.liveAt !== null))
    .sort((a, b) => compareDeployOrder(b, a));
  return candidates[0]?.releaseId ?? null;
}

/**
 * Pure: negative when `a` was pushed before `b`. Releases live before the deploy order was
 * recorded (no push id) come first, ordered by when they were last live.
 */
export function compareDeployOrder(a: RollbackCandidate, b: RollbackCandidate): number {
  return (a.lastDeployId ?? -1) - (b.lastDeployId ?? -1) || (a.liveAt ?? '').localeCompare(b.liveAt ?? '');
}

export interface RollbackPlan {
  target: string;
  /** The target's recorded state when the rollback starts. */
  targetState: ReleaseState;
  /** --force overrode the target's bad mark (recorded in the history; the mark stays). */
  forced: boolean;
  /**
   * The rollback goes back in deploy order, so the live release it leaves is marked rolled back.
   * Going forward (`--to` a newer release, e.g. undoing a rollback) marks nothing.
   */
  marksLiveRolledBack: boolean;
}

/** Pure: what a rollback goes to, or why it is refused (nothing changes on a refusal). */
export function planRollback(input: {
  app: string; liveSlot: Slot | null; liveRelease: string | null; releases: RollbackCandidate[]; to?: string | undefined; force: boolean;
}): RollbackPlan {
  const { app } = input;
  let target: RollbackCandidate;
  if (input.to !== undefined) {
    target = resolveReleaseRef(app, input.to, input.releases);
  } else {
    const previous = previousRelease(input.releases, input.liveRelease);
    if (!previous) {
      throw new SlipwayError('no_previous_release', `${app} has no earlier good release to roll back to (releases rolled back from, bad or failed ones are skipped)`, {
        hint: 'list releases with: deploy releases, then: deploy rollback --to <id>', status: 409,
      });
    }
    target = input.releases.find((r) => r.releaseId === previous)!;
  }
  if (target.releaseId === input.liveRelease) {
    throw new SlipwayError('release_already_live', `${shortSha(target.releaseId)} is already live on ${input.liveSlot}`, { hint: 'nothing to roll back', status: 409 });
  }
  if (target.state === 'bad' && !input.force) {
    throw new SlipwayError('release_bad', `release ${shortSha(target.releaseId)} of ${app} is marked bad (it failed after going live)`, {
      hint: `pass --force to roll back to it anyway (it is watched, and swapped back if it fails again): deploy rollback --to ${target.releaseId} --force`, status: 409,
    });
  }
  const live = input.releases.find((r) => r.releaseId === input.liveRelease);
  return {
    target: target.releaseId, targetState: target.state, forced: input.force && target.state === 'bad',
    marksLiveRolledBack: live !== undefined && compareDeployOrder(target, live) < 0,
  };
}
