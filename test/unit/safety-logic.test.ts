import { describe, expect, it } from 'vitest';
import { judgeRound } from '../../agent/rollout/watch.js';
import { planRecovery, resolveInterrupted } from '../../agent/rollout/recovery.js';
import { planReleaseCleanup } from '../../agent/release/retention.js';
import { isStaleLock, type DeploymentRow, type LockRow } from '../../agent/state/store.js';

const ok = { name: 'public' as const, ok: true, detail: 'ok' };
const bad = { name: 'slot' as const, ok: false, detail: 'HTTP 503' };

describe('watch verdicts', () => {
  it('tolerates fewer failing rounds than the threshold, and resets on a good round', () => {
    let v = { ok: true, failingRounds: 0, reason: null as string | null };
    v = judgeRound(v, [ok, bad], 3);
    expect(v).toMatchObject({ ok: true, failingRounds: 1 });
    v = judgeRound(v, [ok, bad], 3);
    expect(v).toMatchObject({ ok: true, failingRounds: 2 });
    v = judgeRound(v, [ok], 3);
    expect(v).toEqual({ ok: true, failingRounds: 0, reason: null });
  });
  it('fails at the threshold and names the check and what it saw', () => {
    let v = { ok: true, failingRounds: 0, reason: null as string | null };
    for (let i = 0; i < 3; i++) v = judgeRound(v, [ok, bad], 3);
    expect(v).toEqual({ ok: false, failingRounds: 3, reason: 'slot check: HTTP 503 (3 round(s) in a row)' });
  });
});

describe('crash recovery plan', () => {
  const slot = (s: 'blue' | 'green', healthy: boolean) => ({ slot: s, releaseId: `${s}-release`, processOnline: healthy, healthy });
  it('keeps what nginx serves when it is healthy', () => {
    expect(planRecovery('green', [slot('blue', true), slot('green', true)])).toEqual({ live: 'green', switchNeeded: false });
  });
  it('moves traffic to the other slot when the served one is unhealthy', () => {
    expect(planRecovery('green', [slot('blue', true), slot('green', false)])).toEqual({ live: 'blue', switchNeeded: true });
  });
  it('leaves nginx alone when nothing is healthy', () => {
    expect(planRecovery('green', [slot('blue', false), slot('green', false)])).toEqual({ live: 'green', switchNeeded: false });
  });
  it('records why an interrupted deployment ended as it did', () => {
    const d = { slot: 'green', releaseId: 'a'.repeat(40), state: 'watching' } as DeploymentRow;
    expect(resolveInterrupted(d, 'green', 'green').outcome).toBe('succeeded');
    expect(resolveInterrupted(d, 'blue', 'green').outcome).toBe('rolled_back');
    expect(resolveInterrupted({ ...d, state: 'starting' }, 'blue', 'blue')).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('"starting"') });
  });
});

describe('release retention', () => {
  const releases = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].map((id, i) => ({ releaseId: id, createdAt: `2026-11-0${i + 1}T00:00:00Z` }));
  it('keeps the newest N and deletes older ones', () => {
    expect(planReleaseCleanup({ releases, keep: 2, referenced: new Set(), inUse: new Set(), lastGood: null }))
      .toEqual({ keep: ['r6', 'r5'], remove: ['r4', 'r3', 'r2', 'r1'] });
  });
  it('never deletes a referenced, in-use or last good release, even beyond N', () => {
    const plan = planReleaseCleanup({ releases, keep: 1, referenced: new Set(['r2']), inUse: new Set(['r3']), lastGood: 'r1' });
    expect(plan.keep.sort()).toEqual(['r1', 'r2', 'r3', 'r6']);
    expect(plan.remove.sort()).toEqual(['r4', 'r5']);
  });
});

describe('stale locks', () => {
  const lock: LockRow = { app: 'shop', lockId: 'x', holder: 'a@b', action: 'deploy', releaseId: null, since: '2026-11-01T00:00:00Z', expiresAt: null, bootId: 'boot-1', deploymentId: 7 };
  const now = new Date('2026-11-01T01:00:00Z');
  it('a lock of a previous agent process is stale', () => {
    expect(isStaleLock(lock, 'boot-2', now)).toBe(true);
    expect(isStaleLock(lock, 'boot-1', now)).toBe(false);
  });
  it('a reservation that no rollout took over expires', () => {
    const reserved = { ...lock, deploymentId: null, expiresAt: '2026-11-01T00:15:00Z' };
    expect(isStaleLock(reserved, 'boot-1', now)).toBe(true);
    expect(isStaleLock(reserved, 'boot-1', new Date('2026-11-01T00:10:00Z'))).toBe(false);
  });
});
