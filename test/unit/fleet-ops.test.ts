import { describe, expect, it } from 'vitest';
import type { AppStatus, LockInfo, SlotStatus } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { fleetView, formatFleetView, majorityRelease, type HostSnapshot } from '../../controller/fleet/status-view.js';
import { combinedOutcome, formatFleetHistory, mergeFleetHistory, type FleetDeploymentRow } from '../../controller/fleet/history-merge.js';
import { planReconcile, recordsByHost, skippedOnly } from '../../controller/fleet/reconcile-plan.js';
import type { FleetRecord } from '../../contract/api.js';
import { planFleetRollback, planFleetSwitch } from '../../controller/fleet/flip-plan.js';

const A = `a${'1'.repeat(39)}`;
const B = `b${'2'.repeat(39)}`;
const C = `c${'3'.repeat(39)}`;

function slot(name: 'blue' | 'green', releaseId: string | null, live: boolean, online = true): SlotStatus {
  return {
    slot: name, port: 3001, releaseId, state: live ? 'live' : 'standby', live,
    process: releaseId ? { status: online ? 'online' : 'stopped', pid: 1, restarts: 0, cwd: null } : null,
    health: releaseId ? { ok: true, ms: 2 } : null,
  };
}

function status(live: string | null, standby: string | null = null, liveSlot: 'blue' | 'green' = 'blue'): AppStatus {
  const other = liveSlot === 'blue' ? 'green' : 'blue';
  return {
    app: 'sample', liveSlot: live ? liveSlot : null, liveReleaseId: live, generation: 1, publicUrl: 'http://x',
    slots: [slot(liveSlot, live, live !== null), slot(other, standby, false)], releases: [],
  };
}

const host = (name: string, s: AppStatus | null, lock: LockInfo | null = null): HostSnapshot => ({ name, status: s, lock, error: s ? null : 'connect ETIMEDOUT' });

const runningLock: LockInfo = {
  app: 'sample', lockId: 'x', holder: 'ci@box', action: 'deploy', releaseId: B, since: '2026-01-01T00:00:00Z', expiresAt: null, deploymentId: 7, stale: false,
};

describe('fleet status: table and drift', () => {
  it('a fleet on one release is consistent', () => {
    const view = fleetView([host('h1', status(A)), host('h2', status(A)), host('h3', status(A))], { releaseId: A, rolloutId: 'r1' });
    expect(view).toMatchObject({ consistent: true, expected: A, expectedFrom: 'record', releases: [A], drift: [] });
    expect(formatFleetView(view, 'sample [production]')).toMatch(new RegExp(`^sample \\[production\\]: 3 host\\(s\\) on ${shortSha(A)}`));
  });

  it('names a host on another release and an unreachable one, against the fleet record', () => {
    const view = fleetView([host('h1', status(A)), host('h2', status(B)), host('h3', null)], { releaseId: A, rolloutId: 'r1' });
    expect(view.consistent).toBe(false);
    expect(view.hosts.map((h) => h.drift)).toEqual([null, 'other_release', 'unreachable']);
    expect(view.drift).toEqual([`h2: serves ${shortSha(B)}, the fleet ${shortSha(A)} (fleet record)`, 'h3: unreachable (connect ETIMEDOUT)']);
    const text = formatFleetView(view, 'sample');
    expect(text).toContain('DRIFT (2)');
    expect(text).toMatch(/! h3\s+-\s+unreachable/);
  });

  it('without a record the majority is expected; a tie expects nothing and names every host', () => {
    expect(majorityRelease([A, A, B, null])).toBe(A);
    expect(majorityRelease([A, B])).toBeNull();
    const tie = fleetView([host('h1', status(A)), host('h2', status(B))], null);
    expect(tie).toMatchObject({ expected: null, expectedFrom: null, consistent: false });
    expect(tie.drift).toHaveLength(2);
    const majority = fleetView([host('h1', status(A)), host('h2', status(B)), host('h3', status(A))], null);
    expect(majority).toMatchObject({ expected: A, expectedFrom: 'majority' });
    expect(majority.hosts.map((h) => h.drift)).toEqual([null, 'other_release', null]);
  });

  it('shows each host\'s lock and the live slot\'s health', () => {
    const sick = status(A);
    sick.slots[0]!.health = { ok: false, status: 502, ms: 3 };
    const view = fleetView([host('h1', sick, runningLock), host('h2', status(A), { ...runningLock, stale: true })], null);
    expect(view.hosts.map((h) => [h.health, h.lock])).toEqual([['unhealthy', 'ci@box (deploy #7)'], ['healthy', 'stale (ci@box)']]);
  });
});

describe('fleet history: rows merged by rollout id', () => {
  const row = (id: number, rolloutId: string | null, startedAt: string, outcome: string | null, kind = 'deploy', releaseId = B): FleetDeploymentRow => ({
    id, app: 'sample', kind, releaseId, slot: 'green', previousSlot: 'blue', previousRelease: A, state: outcome ? 'done' : 'watching', outcome: outcome as FleetDeploymentRow['outcome'],
    reason: null, requestedBy: 'me@laptop', startedAt, endedAt: null, note: null, forced: false, targetState: null, badMark: null, marksPrevious: false, rolloutId,
  });

  it('one entry per rollout id across hosts, host rows without one on their own, newest first', () => {
    const merged = mergeFleetHistory([
      { name: 'h1', rows: [row(5, 'r2', '2026-01-02T00:00:01Z', 'rolled_back'), row(4, 'r1', '2026-01-01T00:00:00Z', 'succeeded')] },
      { name: 'h2', rows: [row(9, 'r2', '2026-01-02T00:00:00Z', 'rolled_back'), row(8, null, '2026-01-01T12:00:00Z', 'succeeded', 'rollback', A), row(7, 'r1', '2026-01-01T00:00:02Z', 'succeeded')] },
      { name: 'h3', rows: [row(3, 'r1', '2026-01-01T00:00:03Z', 'succeeded')] },
    ], ['h1', 'h2', 'h3'], 10);
    expect(merged.map((e) => [e.rolloutId, e.hosts.map((h) => `${h.name}#${h.id}`), e.outcome, e.missing])).toEqual([
      ['r2', ['h1#5', 'h2#9'], 'rolled_back', ['h3']],
      [null, ['h2#8'], 'succeeded', []],
      ['r1', ['h1#4', 'h2#7', 'h3#3'], 'succeeded', []],
    ]);
    expect(merged[0]!.startedAt).toBe('2026-01-02T00:00:00Z');
    const text = formatFleetHistory(merged, Date.parse('2026-01-03T00:00:00Z'));
    expect(text).toContain('not on: h3');
    expect(text).toMatch(/h2 #8\s+rollback/);
    expect(mergeFleetHistory([{ name: 'h1', rows: [row(1, null, '2026-01-01T00:00:00Z', 'succeeded'), row(2, null, '2026-01-02T00:00:00Z', 'succeeded')] }], ['h1'], 1)).toHaveLength(1);
  });

  it('a host whose answer was cut at the limit: rollouts older than its oldest row are left out, not shown as "not on" it', () => {
    // h1 ran a deploy and its revert in r2, so its two rows reach only back to r2; h3's reach r1.
    const histories = [
      { name: 'h1', rows: [row(6, 'r2', '2026-01-02T00:00:05Z', 'succeeded', 'switch', A), row(5, 'r2', '2026-01-02T00:00:01Z', 'succeeded')], more: true },
      { name: 'h3', rows: [row(3, 'r2', '2026-01-02T00:00:02Z', 'failed'), row(2, 'r1', '2026-01-01T00:00:00Z', 'succeeded')], more: true },
    ];
    const merged = mergeFleetHistory(histories, ['h1', 'h3'], 10);
    expect(merged.map((e) => e.rolloutId)).toEqual(['r2']);
    // h1's deploy was followed by its revert (a switch back), h3 failed: the rollout was rolled back.
    expect(merged[0]!.outcome).toBe('rolled_back');
    expect(merged[0]!.missing).toEqual([]);
    // The same rows from hosts that gave all they have: r1 is shown, and h1 really was not in it.
    const whole = mergeFleetHistory(histories.map((h) => ({ ...h, more: false })), ['h1', 'h3'], 10);
    expect(whole.map((e) => [e.rolloutId, e.missing])).toEqual([['r2', []], ['r1', ['h1']]]);
  });

  it('a rollout with a host still running is running; hosts that disagree are mixed', () => {
    expect(combinedOutcome(['succeeded', null])).toBe('running');
    expect(combinedOutcome(['succeeded', 'rolled_back'])).toBe('mixed');
    // No host kept the release: the fleet was rolled back (some failed, the others reverted).
    expect(combinedOutcome(['rolled_back', 'failed'])).toBe('rolled_back');
    expect(combinedOutcome(['failed', 'failed'])).toBe('failed');
    expect(combinedOutcome(['succeeded', 'succeeded'])).toBe('succeeded');
  });
});

describe('reconcile-first', () => {
  const record = { releaseId: A, rolloutId: 'r1' };

  it('brings each drifting reachable host to the record\'s release; one flip when it is warm', () => {
    const plan = planReconcile([host('h1', status(A, B)), host('h2', status(B, A, 'green')), host('h3', status(C, B)), host('h4', null)], record);
    expect(plan.actions).toEqual([{ host: 'h2', from: B, to: A, warm: true }, { host: 'h3', from: C, to: A, warm: false }]);
    expect(plan.unreachable).toEqual(['h4']);
    expect(plan.note).toContain(`reconciling h2 (${shortSha(B)} → ${shortSha(A)}, one flip), h3`);
    expect(plan.note).toMatch(/unreachable, left as they are: h4/);
  });

  it('a host left out of the newest rollout on purpose is held to the newest record that names it', () => {
    const rec = (rolloutId: string, releaseId: string, hosts: string[], at: string): FleetRecord => ({
      rolloutId, kind: 'push', releaseId, attemptedReleaseId: releaseId, outcome: 'succeeded', hosts, skipped: [], env: null, actor: 'me', reason: null, at,
    });
    const all = rec('r1', A, ['h1', 'h2', 'h3'], '2026-01-01T00:00:00Z');
    const canary = rec('r2', C, ['h1'], '2026-01-02T00:00:00Z');
    // h1 keeps only the --hosts push's record; h2 and h3 the fleet push before it.
    const byHost = recordsByHost([canary, all, all], ['h1', 'h2', 'h3']);
    expect([...byHost].map(([h, r]) => [h, r.rolloutId])).toEqual([['h1', 'r2'], ['h2', 'r1'], ['h3', 'r1']]);
    const perHost = new Map([...byHost].map(([h, r]) => [h, { releaseId: r.releaseId, rolloutId: r.rolloutId }]));
    const plan = planReconcile([host('h1', status(C, A)), host('h2', status(A)), host('h3', status(B, A))], { releaseId: C, rolloutId: 'r2' }, { perHost });
    expect(plan.actions).toEqual([{ host: 'h3', from: B, to: A, warm: true }]);
    expect(recordsByHost([null, all], ['h9']).size).toBe(0);
  });

  it('a host skipped by the newest rollout is not moved and is named left out; never part of a rollout, it is held to nothing', () => {
    const rec = (rolloutId: string, releaseId: string, hosts: string[], skipped: string[], at: string): FleetRecord => ({
      rolloutId, kind: 'promote', releaseId, attemptedReleaseId: releaseId, outcome: 'succeeded', hosts, skipped, env: null, actor: 'me', reason: null, at,
    });
    const all = rec('r1', A, ['h1', 'h2', 'h3'], [], '2026-01-01T00:00:00Z');
    const without3 = rec('r2', C, ['h1', 'h2'], ['h3'], '2026-01-02T00:00:00Z');
    const snapshots = [host('h1', status(C, A)), host('h2', status(C, A)), host('h3', status(A, B))];
    // h3 keeps r1 (it was unreachable when r2 was written): held to A, which it serves.
    const held = new Map([...recordsByHost([without3, without3, all], ['h1', 'h2', 'h3'])].map(([h, r]) => [h, { releaseId: r.releaseId, rolloutId: r.rolloutId }]));
    const plan = planReconcile(snapshots, { releaseId: C, rolloutId: 'r2' }, { perHost: held });
    expect(plan).toMatchObject({ actions: [], leftOut: ['h3'] });
    expect(plan.note).toMatch(/left out of the rollout that brought \S+, not moved: h3 \(the next push or promotion brings them\)/);
    // h3 has no record at all (never part of a fleet rollout): only r2 names it, as skipped.
    expect(skippedOnly([without3, without3, null], ['h1', 'h2', 'h3'])).toEqual(new Set(['h3']));
    expect(skippedOnly([without3, all], ['h1', 'h2', 'h3']).size).toBe(0);
    const perHost = new Map([...recordsByHost([without3, without3, null], ['h1', 'h2', 'h3'])].map(([h, r]) => [h, { releaseId: r.releaseId, rolloutId: r.rolloutId }]));
    expect(planReconcile(snapshots, { releaseId: C, rolloutId: 'r2' }, { perHost })).toMatchObject({ actions: [{ host: 'h3', to: C }] });
    expect(planReconcile(snapshots, { releaseId: C, rolloutId: 'r2' }, { perHost, unheld: new Set(['h3']) })).toMatchObject({ actions: [], leftOut: ['h3'] });
  });

  it('a push leaves a host already on the release it brings alone; the others still go back first', () => {
    const plan = planReconcile([host('h1', status(A)), host('h2', status(C, A)), host('h3', status(B, A))], record, { alsoFine: C });
    expect(plan.actions.map((a) => a.host)).toEqual(['h3']);
  });

  it('nothing without a record (the majority is no authority), nothing when all agree', () => {
    expect(planReconcile([host('h1', status(A)), host('h2', status(B))], null)).toMatchObject({ target: null, actions: [], note: null });
    expect(planReconcile([host('h1', status(A)), host('h2', status(A))], record)).toMatchObject({ target: A, actions: [], note: null });
  });

  it('a host a running rollout holds is busy, one a live reservation holds is held; a stale lock is no obstacle', () => {
    const reservation = { ...runningLock, deploymentId: null, action: 'fleet:r9', expiresAt: '2026-01-01T00:15:00Z' };
    const plan = planReconcile([
      host('h1', status(B, A), runningLock), host('h2', status(B, A), { ...runningLock, stale: true }), host('h3', status(B, A), reservation), host('h4', status(A, B), reservation),
    ], record);
    expect(plan.busy).toEqual(['h1']);
    expect(plan.held).toEqual([{ host: 'h3', holder: 'ci@box', action: 'fleet:r9', expiresAt: '2026-01-01T00:15:00Z' }]);
    expect(plan.actions.map((a) => a.host)).toEqual(['h2']);
  });
});

describe('fleet rollback and switch: one release on every host', () => {
  it('rollback without --to goes to the release every standby slot holds', () => {
    const plan = planFleetRollback([host('h1', status(B, A)), host('h2', status(B, A, 'green')), host('h3', status(B, A))], undefined);
    expect(plan).toEqual({ to: A, already: [], moves: ['h1', 'h2', 'h3'].map((h) => ({ host: h, from: B, warm: true })) });
    expect(planFleetRollback([host('h1', status(A, B))], A)).toEqual({ to: A, already: ['h1'], moves: [] });
  });

  it('refuses when the standby slots disagree, naming them; --to settles it (prefixes resolved)', () => {
    const snapshots = [host('h1', status(B, A)), host('h2', status(B, C))];
    const error = (() => { try { planFleetRollback(snapshots, undefined); } catch (e) { return e as SlipwayError; } throw new Error('no error'); })();
    expect(error.code).toBe('fleet_rollback_ambiguous');
    expect(error.message).toContain(`${shortSha(A)} on h1; ${shortSha(C)} on h2`);
    const settled = planFleetRollback([host('h1', status(B, A)), { ...host('h2', status(B, C)), status: { ...status(B, C), releases: [{ releaseId: A } as AppStatus['releases'][number]] } }], 'a111111');
    expect(settled).toEqual({ to: A, already: [], moves: [{ host: 'h1', from: B, warm: true }, { host: 'h2', from: B, warm: false }] });
  });

  it('switch needs the slot to hold one release everywhere', () => {
    expect(planFleetSwitch([host('h1', status(B, A)), host('h2', status(B, A))], 'green').to).toBe(A);
    expect(() => planFleetSwitch([host('h1', status(B, A)), host('h2', status(A, B))], 'green')).toThrow(/slot green does not hold one release/);
  });
});
