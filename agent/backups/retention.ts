import type { RetentionPolicy } from './config.js';

/** A backup whose file still exists (locally or offsite). */
export interface RetentionCandidate {
  id: number;
  /** ISO timestamp of the run's start: the moment the backup describes. */
  startedAt: string;
  verified: boolean;
}

export interface RetentionDecision { id: number; reasons: string[] }

export interface RetentionPlan {
  keep: RetentionDecision[];
  prune: RetentionDecision[];
  /** The newest verified backup: kept whatever the policy says. */
  newestVerifiedId: number | null;
}

const newestFirst = (a: RetentionCandidate, b: RetentionCandidate) =>
  (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : b.id - a.id);

/** UTC calendar keys; buckets are UTC days so a plan never depends on the server's timezone. */
export function dayKey(date: Date): string {
  return date.toISOString().slice(0, 10);
}

export function monthKey(date: Date): string {
  return date.toISOString().slice(0, 7);
}

/** ISO 8601 week (weeks start on Monday; week 1 holds the year's first Thursday), e.g. "2025-W01". */
export function weekKey(date: Date): string {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/**
 * Pure grandfather-father-son plan. Only verified backups fill the tiers: the newest verified
 * backup of each of the last `daily` days, `weekly` ISO weeks and `monthly` months that have
 * one (tiers are independent, so one backup can hold several). On top of that, whatever the
 * policy or the run history:
 * - the newest verified backup is kept;
 * - nothing newer than it is pruned (it has not been judged yet, or failed verification and
 *   is all there is since);
 * - with no verified backup at all, nothing is pruned.
 * Unverified backups older than the newest verified one are pruned: a good backup supersedes them.
 */
export function planRetention(candidates: readonly RetentionCandidate[], policy: RetentionPolicy): RetentionPlan {
  const sorted = [...candidates].sort(newestFirst);
  const newestVerified = sorted.find((c) => c.verified);
  if (!newestVerified) {
    return { keep: sorted.map((c) => ({ id: c.id, reasons: ['no verified backup yet'] })), prune: [], newestVerifiedId: null };
  }
  const reasons = new Map<number, string[]>(sorted.map((c) => [c.id, []]));
  const add = (id: number, reason: string) => reasons.get(id)!.push(reason);
  add(newestVerified.id, 'last verified backup');
  for (const c of sorted) {
    if (newestFirst(c, newestVerified) < 0) add(c.id, 'newer than the last verified backup');
  }
  const tiers: [keyof RetentionPolicy, (d: Date) => string][] = [['daily', dayKey], ['weekly', weekKey], ['monthly', monthKey]];
  for (const [tier, keyOf] of tiers) {
    const seen = new Set<string>();
    for (const c of sorted) {
      if (!c.verified) continue;
      if (seen.size >= policy[tier]) break;
      const key = keyOf(new Date(c.startedAt));
      if (seen.has(key)) continue;
      seen.add(key);
      add(c.id, `${tier} ${key}`);
    }
  }
  const keep: RetentionDecision[] = [];
  const prune: RetentionDecision[] = [];
  for (const c of sorted) {
    const why = reasons.get(c.id)!;
    if (why.length) keep.push({ id: c.id, reasons: why });
    else prune.push({ id: c.id, reasons: [c.verified ? 'outside the retention policy' : 'unverified, and a newer backup is verified'] });
  }
  return { keep, prune, newestVerifiedId: newestVerified.id };
}
