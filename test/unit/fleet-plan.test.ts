import { describe, expect, it } from 'vitest';
import { fleetVerdict, hostsToRevert, outcomeOfResult, planPush, type HostOutcome } from '../../controller/fleet/plan.js';
import { mostCommon, oneLine, revertSlot } from '../../controller/fleet/push.js';
import { newestRecord } from '../../controller/fleet/record.js';
import { parseBatch } from '../../controller/fleet/target.js';
import { fleetActivation } from '../../agent/rollout/activation-plan.js';
import { fleetPartOf } from '../../agent/rollout/rollout.js';
import { watchWindow } from '../../agent/rollout/watch.js';
import { EXIT } from '../../controller/errors.js';
import type { FleetRecord } from '../../contract/api.js';

const HOSTS = ['h1', 'h2', 'h3'];
const rollout = (batch: number | string, primary = 'h1') => ({ batch: parseBatch(batch), bakeMs: 2000, primary });
const outcomes = (entries: Record<string, HostOutcome>) => new Map(Object.entries(entries));

describe('fleet push plan', () => {
  it('batches of 1: the primary first, a bake after each batch but the last, the full window after the last', () => {
    expect(planPush(HOSTS, rollout(1, 'h2'), new Set())).toEqual({
      unchanged: [], runOnceHost: 'h2',
      batches: [{ hosts: ['h2'], watchMs: 2000, last: false }, { hosts: ['h1'], watchMs: 2000, last: false }, { hosts: ['h3'], watchMs: null, last: true }],
    });
  });

  it('batches of 2 and of a percentage; batch = all is one batch with the full window', () => {
    expect(planPush(HOSTS, rollout(2), new Set()).batches).toEqual([{ hosts: ['h1', 'h2'], watchMs: 2000, last: false }, { hosts: ['h3'], watchMs: null, last: true }]);
    // rollout.window sets the last batch's window instead of the release's own.
    expect(planPush(HOSTS, { ...rollout(2), windowMs: 9000 }, new Set()).batches[1]).toEqual({ hosts: ['h3'], watchMs: 9000, last: true });
    expect(planPush(HOSTS, rollout('50%'), new Set()).batches.map((b) => b.hosts)).toEqual([['h1', 'h2'], ['h3']]);
    expect(planPush(HOSTS, rollout('100%'), new Set()).batches).toEqual([{ hosts: HOSTS, watchMs: null, last: true }]);
  });

  it('leaves hosts already on the release alone; the run-once work is not run again when the primary has the release', () => {
    const plan = planPush(HOSTS, rollout(2), new Set(['h1']));
    expect(plan).toEqual({ unchanged: ['h1'], runOnceHost: null, batches: [{ hosts: ['h2', 'h3'], watchMs: null, last: true }] });
    expect(planPush(HOSTS, rollout(1), new Set(HOSTS)).batches).toEqual([]);
  });

  it('reads a host result: swap-back is rolled back, a failure after the switch is not', () => {
    expect(outcomeOfResult({ outcome: 'succeeded', phase: null })).toBe('succeeded');
    expect(outcomeOfResult({ outcome: 'rolled_back', phase: 'after_switch' })).toBe('swapped_back');
    expect(outcomeOfResult({ outcome: 'failed', phase: 'before_switch' })).toBe('failed');
    expect(outcomeOfResult({ outcome: 'failed', phase: 'after_switch' })).toBe('failed_after_switch');
  });

  it('reverts the hosts that switched and passed, and those already on the release; judges the fleet', () => {
    const after = outcomes({ h1: 'succeeded', h2: 'unchanged', h3: 'failed', h4: 'not_started' });
    expect(hostsToRevert(after)).toEqual(['h1', 'h2']);
    expect(fleetVerdict(outcomes({ h1: 'succeeded', h2: 'unchanged', h3: 'skipped' }))).toEqual({ outcome: 'succeeded', exitCode: EXIT.ok });
    expect(fleetVerdict(outcomes({ h1: 'reverted', h2: 'swapped_back', h3: 'not_started' }))).toEqual({ outcome: 'rolled_back', exitCode: EXIT.rolledBack });
    expect(fleetVerdict(outcomes({ h1: 'failed', h2: 'not_started' }))).toEqual({ outcome: 'failed', exitCode: EXIT.failedBeforeSwitch });
    expect(fleetVerdict(outcomes({ h1: 'reverted', h2: 'in_doubt' }))).toEqual({ outcome: 'rolled_back', exitCode: EXIT.rolledBack });
    expect(fleetVerdict(outcomes({ h1: 'revert_failed', h2: 'swapped_back' })).exitCode).toBe(EXIT.failedAfterSwitch);
    expect(fleetVerdict(outcomes({ h1: 'unchanged', h2: 'swapped_back' })).exitCode).toBe(EXIT.failedAfterSwitch);
  });

  it('flips a switched host back to the slot it served; an unchanged host only to a running standby on the previous release', () => {
    const slots = (standby: { releaseId: string | null; state: string }) => [
      { slot: 'blue' as const, releaseId: 'new', state: 'running' }, { slot: 'green' as const, ...standby },
    ];
    expect(revertSlot('succeeded', { liveSlot: 'green', slots: [] }, 'old')).toBe('green');
    expect(revertSlot('unchanged', { liveSlot: 'blue', slots: slots({ releaseId: 'old', state: 'running' }) as never }, 'old')).toBe('green');
    expect(revertSlot('unchanged', { liveSlot: 'blue', slots: slots({ releaseId: 'old', state: 'stopped' }) as never }, 'old')).toBeNull();
    expect(revertSlot('unchanged', { liveSlot: 'blue', slots: slots({ releaseId: 'older', state: 'running' }) as never }, 'old')).toBeNull();
    expect(mostCommon(['a', 'b', 'b', null])).toBe('b');
    expect(mostCommon([null])).toBeNull();
    expect(oneLine('h3: failed\nlast 2 line(s):\n  out| x', 30)).toBe('h3: failed last 2 line(s): ou…');
  });

  it('the newest fleet record wins', () => {
    const record = (at: string) => ({ rolloutId: at, at } as unknown as FleetRecord);
    expect(newestRecord([record('2026-01-01T00:00:00.000Z'), null, record('2026-02-01T00:00:00.000Z')])?.at).toBe('2026-02-01T00:00:00.000Z');
    expect(newestRecord([null])).toBeNull();
  });
});

describe('a fleet host on the agent', () => {
  it('takes the batch window and keeps the previous slot warm; without fleet fields nothing changes', () => {
    const plan = { windowMs: 30_000, settle: true, clearsBadMark: false };
    expect(fleetActivation(plan, undefined)).toBe(plan);
    expect(fleetActivation(plan, { watchMs: 2000, keepPrevious: true })).toEqual({ windowMs: 2000, settle: false, clearsBadMark: false });
    expect(fleetActivation({ ...plan, clearsBadMark: true }, { watchMs: 0, keepPrevious: false })).toEqual({ windowMs: 0, settle: true, clearsBadMark: false });
    expect(fleetPartOf({})).toBeUndefined();
    expect(fleetPartOf({ runOnce: false })).toEqual({ rolloutId: null, runOnce: false, watchMs: null, keepPrevious: false });
  });

  it('an abort fails the watch window (here during a round: its checks are not judged)', async () => {
    const abort = new AbortController();
    let rounds = 0;
    const clock = { now: () => rounds * 1000, sleep: async () => undefined };
    const verdict = await watchWindow({
      windowMs: 60_000, intervalMs: 1000, threshold: 3, clock,
      runChecks: async () => { rounds++; if (rounds === 3) abort.abort('h3 failed its health gate'); return [{ name: 'public', ok: true, detail: 'HTTP 200' }]; },
      signal: abort.signal,
    });
    expect(verdict).toEqual({ ok: false, failingRounds: 0, reason: 'aborted: h3 failed its health gate' });
    expect(rounds).toBe(3);
  });
});
