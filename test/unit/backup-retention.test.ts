import { describe, expect, it } from 'vitest';
import { dayKey, planRetention, weekKey, type RetentionCandidate } from '../../agent/backups/retention.js';
import type { RetentionPolicy } from '../../agent/backups/config.js';

type Outcome = 'verified' | 'unverified' | 'failed';
interface Run { id: number; startedAt: string; outcome: Outcome }

const GFS: RetentionPolicy = { daily: 7, weekly: 4, monthly: 12 };

/** One run a day at 03:00 UTC from `from` to `to`; `outcomes` overrides the default "verified". */
function calendar(from: string, to: string, outcomes: Record<string, Outcome> = {}): Run[] {
  const runs: Run[] = [];
  for (let t = Date.parse(`${from}T03:00:00Z`), id = 1; t <= Date.parse(`${to}T03:00:00Z`); t += 86_400_000, id++) {
    const startedAt = new Date(t).toISOString();
    runs.push({ id, startedAt, outcome: outcomes[dayKey(new Date(t))] ?? 'verified' });
  }
  return runs;
}

/** What the service hands to the plan: runs whose file exists (a failed run's file is removed at once). */
function candidates(runs: Run[]): RetentionCandidate[] {
  return runs.filter((r) => r.outcome !== 'failed').map((r) => ({ id: r.id, startedAt: r.startedAt, verified: r.outcome === 'verified' }));
}

const days = (runs: Run[], ids: number[]) => ids.map((id) => dayKey(new Date(runs.find((r) => r.id === id)!.startedAt))).sort();

describe('GFS retention plan', () => {
  it('keeps 7 daily, 4 weekly (ISO) and 12 monthly verified backups, the last verified and anything newer', () => {
    const runs = calendar('2025-01-01', '2025-03-15', {
      '2025-03-10': 'unverified', '2025-03-13': 'unverified', '2025-03-14': 'failed', '2025-03-15': 'failed',
      '2025-01-15': 'failed', '2025-02-27': 'unverified',
    });
    const plan = planRetention(candidates(runs), GFS);
    expect(days(runs, plan.keep.map((k) => k.id))).toEqual([
      '2025-01-31', // monthly 2025-01
      '2025-02-23', // weekly 2025-W08 (Sunday is the week's last day)
      '2025-02-28', // monthly 2025-02
      '2025-03-02', // weekly 2025-W09
      '2025-03-05', '2025-03-06', '2025-03-07', '2025-03-08', // daily
      '2025-03-09', // daily + weekly 2025-W10
      '2025-03-11', // daily
      '2025-03-12', // last verified: daily, weekly 2025-W11, monthly 2025-03
      '2025-03-13', // unverified but newer than the last verified: not judged away
    ]);
    expect(days(runs, [plan.newestVerifiedId!])).toEqual(['2025-03-12']);
    const reasonsOf = (day: string) => plan.keep.find((k) => days(runs, [k.id])[0] === day)!.reasons;
    expect(reasonsOf('2025-03-12')).toEqual(['last verified backup', 'daily 2025-03-12', 'weekly 2025-W11', 'monthly 2025-03']);
    expect(reasonsOf('2025-03-13')).toEqual(['newer than the last verified backup']);
    // the unverified 2025-03-10 is superseded by verified backups after it
    const pruned10 = plan.prune.find((p) => days(runs, [p.id])[0] === '2025-03-10');
    expect(pruned10?.reasons).toEqual(['unverified, and a newer backup is verified']);
    expect(plan.keep.length + plan.prune.length).toBe(candidates(runs).length);
  });

  it('N failed runs in a row never cost the last verified backup, even with a policy keeping nothing', () => {
    const outcomes: Record<string, Outcome> = {};
    for (let d = 1; d <= 28; d++) outcomes[`2025-06-${String(d).padStart(2, '0')}`] = d <= 3 ? 'verified' : 'failed';
    const runs = calendar('2025-06-01', '2025-06-28', outcomes);
    for (const policy of [GFS, { daily: 0, weekly: 0, monthly: 0 }, { daily: 1, weekly: 0, monthly: 0 }]) {
      const plan = planRetention(candidates(runs), policy);
      expect(days(runs, [plan.newestVerifiedId!])).toEqual(['2025-06-03']);
      expect(plan.keep.map((k) => k.id)).toContain(plan.newestVerifiedId);
    }
  });

  it('when everything after an old verified backup failed verification, the old one and all newer survive', () => {
    const outcomes: Record<string, Outcome> = {};
    for (let d = 2; d <= 20; d++) outcomes[`2025-01-${String(d).padStart(2, '0')}`] = 'unverified';
    const runs = calendar('2024-12-20', '2025-01-20', outcomes);
    const plan = planRetention(candidates(runs), { daily: 2, weekly: 0, monthly: 0 });
    const kept = days(runs, plan.keep.map((k) => k.id));
    expect(kept[0]).toBe('2024-12-31'); // the daily tier's second day
    expect(kept).toContain('2025-01-01'); // last verified
    expect(kept).toHaveLength(2 + 19);
    expect(plan.prune.every((p) => p.reasons[0] === 'outside the retention policy')).toBe(true);
  });

  it('with no verified backup at all, prunes nothing', () => {
    const runs = calendar('2025-01-01', '2025-02-01', Object.fromEntries(Array.from({ length: 32 }, (_, i) => [dayKey(new Date(Date.UTC(2025, 0, 1 + i))), 'unverified' as Outcome])));
    const plan = planRetention(candidates(runs), GFS);
    expect(plan.prune).toEqual([]);
    expect(plan.newestVerifiedId).toBeNull();
  });

  it('picks the newest backup of each day when a job runs several times a day, whatever the input order', () => {
    const list: RetentionCandidate[] = [];
    let id = 1;
    for (const day of ['2025-05-01', '2025-05-02']) for (const hour of ['01', '09', '17']) list.push({ id: id++, startedAt: `${day}T${hour}:00:00.000Z`, verified: true });
    const shuffled = [list[3]!, list[0]!, list[5]!, list[1]!, list[4]!, list[2]!];
    const plan = planRetention(shuffled, { daily: 7, weekly: 0, monthly: 0 });
    expect(plan.keep.map((k) => k.id).sort()).toEqual([3, 6]);
    expect(plan.prune.map((p) => p.id).sort()).toEqual([1, 2, 4, 5]);
  });

  it('applied after every verified run over two years of a flaky job, the set converges to GFS and never loses the last verified', () => {
    // A deterministic pseudo-random history: ~20% failed, ~5% unverified, and a 40-day outage at the end.
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const onDisk = new Map<number, RetentionCandidate>();
    let lastVerified: RetentionCandidate | null = null;
    const start = Date.parse('2023-01-01T03:00:00Z');
    for (let day = 0; day < 730; day++) {
      const outage = day >= 690;
      const roll = random();
      const outcome: Outcome = outage || roll < 0.2 ? 'failed' : roll < 0.25 ? 'unverified' : 'verified';
      if (outcome === 'failed') continue;
      const c = { id: day + 1, startedAt: new Date(start + day * 86_400_000).toISOString(), verified: outcome === 'verified' };
      onDisk.set(c.id, c);
      if (!c.verified) continue;
      lastVerified = c;
      // as the service does: retention only right after a newer backup is verified
      for (const p of planRetention([...onDisk.values()], GFS).prune) onDisk.delete(p.id);
      expect(onDisk.has(lastVerified.id)).toBe(true);
    }
    const kept = [...onDisk.values()];
    expect(onDisk.has(lastVerified!.id)).toBe(true);
    expect(kept.every((c) => c.verified)).toBe(true);
    // 7 days + 4 weeks + 12 months, overlapping: never more than 23 files
    expect(kept.length).toBeGreaterThanOrEqual(12);
    expect(kept.length).toBeLessThanOrEqual(23);
    const months = new Set(kept.map((c) => c.startedAt.slice(0, 7)));
    expect(months.size).toBe(12);
  });
});

describe('calendar keys', () => {
  it('uses ISO weeks across year boundaries', () => {
    expect(weekKey(new Date('2024-12-30T12:00:00Z'))).toBe('2025-W01');
    expect(weekKey(new Date('2021-01-03T12:00:00Z'))).toBe('2020-W53');
    expect(weekKey(new Date('2026-01-01T00:00:00Z'))).toBe('2026-W01');
    expect(weekKey(new Date('2025-03-09T23:59:59Z'))).toBe('2025-W10');
    expect(weekKey(new Date('2025-03-10T00:00:00Z'))).toBe('2025-W11');
  });
});
