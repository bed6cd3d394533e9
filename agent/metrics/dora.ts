import type { DoraFigures, Spread } from '../../contract/api.js';

export type { DoraFigures } from '../../contract/api.js';

// The four DORA figures, computed from the agent's deployment history. Pure: rows in, figures out,
// so the definitions below are unit-tested on constructed histories.
//
// - Deployment frequency: deploys (kind "deploy") that moved traffic within the window, per day.
// - Lead time for changes: commit time → traffic on the new release, for deploys that succeeded.
// - Change failure rate: of the deploys that moved traffic, the share that failed in production:
//   swapped back by the watch window, failed after the switch, or left by a later hand rollback
//   while they were live.
// - Time to restore: from a failed release taking traffic to a good one taking it again (the end
//   of the swap-back, or the hand rollback's switch). A failure not restored yet is "open".

export interface DoraDeployment {
  id: number;
  kind: 'deploy' | 'switch' | 'rollback';
  releaseId: string | null;
  /** The release that was live when the deployment started. */
  previousRelease: string | null;
  outcome: 'succeeded' | 'failed' | 'rolled_back' | null;
  startedAt: string;
  endedAt: string | null;
  /** When traffic moved to releaseId; null when it never did. */
  switchedAt: string | null;
  /** Commit time of releaseId (from its manifest); null when unknown. */
  commitTime: string | null;
}

const DAY_MS = 86_400_000;

function ms(iso: string): number {
  return Date.parse(iso);
}

/** Nearest-rank percentile of sorted values; null for none. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, medianMs: percentile(sorted, 50), p90Ms: percentile(sorted, 90) };
}

/** When a deploy that took traffic failed in production, and when it was restored (null: not yet). */
interface Failure { failedAt: number; restoredAt: number | null }

function failureOf(deploy: DoraDeployment, later: DoraDeployment[]): Failure | null {
  const switchedAt = ms(deploy.switchedAt!);
  if (deploy.outcome === 'rolled_back') return { failedAt: switchedAt, restoredAt: deploy.endedAt ? ms(deploy.endedAt) : null };
  if (deploy.outcome === 'failed') {
    // Failed after the switch with traffic left on it: restored by the next deployment that moves traffic and succeeds.
    const fix = later.find((d) => d.switchedAt && d.outcome === 'succeeded');
    return { failedAt: switchedAt, restoredAt: fix ? ms(fix.switchedAt!) : null };
  }
  // Succeeded, then left by a hand rollback before any other deployment moved traffic.
  const next = later.find((d) => d.switchedAt);
  if (next && next.kind === 'rollback' && next.previousRelease === deploy.releaseId) {
    return { failedAt: switchedAt, restoredAt: next.outcome === 'succeeded' ? ms(next.switchedAt!) : null };
  }
  return null;
}

/**
 * Pure: the DORA figures for deployments that moved traffic in [since, until). `history` is every
 * deployment of the app (any order); later ones are consulted to see whether a deploy was rolled back.
 */
export function doraFigures(history: DoraDeployment[], since: Date, until: Date): DoraFigures {
  const ordered = [...history].sort((a, b) => ms(a.startedAt) - ms(b.startedAt) || a.id - b.id);
  const [from, to] = [since.getTime(), until.getTime()];
  const days = Math.max((to - from) / DAY_MS, 1 / 24);
  const leadTimes: number[] = [];
  const restores: number[] = [];
  let deployments = 0;
  let failed = 0;
  let open = 0;
  for (const [i, d] of ordered.entries()) {
    if (d.kind !== 'deploy' || !d.switchedAt) continue;
    const at = ms(d.switchedAt);
    if (at < from || at >= to) continue;
    deployments++;
    const failure = failureOf(d, ordered.slice(i + 1));
    if (failure) {
      failed++;
      if (failure.restoredAt === null) open++;
      else restores.push(Math.max(0, failure.restoredAt - failure.failedAt));
    } else if (d.outcome === 'succeeded' && d.commitTime) {
      leadTimes.push(Math.max(0, at - ms(d.commitTime)));
    }
  }
  return {
    since: since.toISOString(),
    until: until.toISOString(),
    days: Math.round(days * 100) / 100,
    deployments,
    perDay: Math.round((deployments / days) * 100) / 100,
    leadTime: spread(leadTimes),
    changeFailures: { failed, total: deployments, rate: deployments === 0 ? null : Math.round((failed / deployments) * 1000) / 1000 },
    timeToRestore: { ...spread(restores), open },
  };
}
