import { describe, expect, it } from 'vitest';
import { planReconcile, type ReconcileAction, type SlotSnapshot } from '../../agent/rollout/reconcile-plan.js';
import type { SlotState } from '../../agent/state/store.js';
import { SLOTS, type Slot } from '../../contract/names.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

function slot(s: Slot, fields: Partial<SlotSnapshot> = {}): SlotSnapshot {
  return { slot: s, releaseId: s === 'blue' ? A : B, state: 'running', pm2: 'online', orphans: [], abandoned: false, ...fields };
}

/** The plan without its reasons, which are for people. */
function steps(actions: ReconcileAction[]): string[] {
  return actions.map((a) => {
    switch (a.kind) {
      case 'stop-orphans': return `stop-orphans ${a.slot} ${a.pids.join(',')}`;
      case 'start': case 'switch': return `${a.kind} ${a.slot} ${a.releaseId.slice(0, 1)}`;
      case 'mark': return `mark ${a.slot} ${a.state}`;
      default: return `${a.kind} ${a.slot}`;
    }
  });
}

describe('PM2 reconciliation plan', () => {
  it('adopts slots PM2 runs as SQLite says', () => {
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green')] }))).toEqual(['adopt blue', 'adopt green']);
  });

  it('after the daemon died with both slots running: standby stopped, live re-homed through it, then the standby release moves over', () => {
    const plan = planReconcile({
      live: 'blue',
      slots: [slot('blue', { pm2: 'absent', orphans: [101] }), slot('green', { pm2: 'absent', orphans: [202] })],
    });
    expect(steps(plan)).toEqual([
      'stop-orphans green 202',
      'start green a',
      'switch green a',
      'stop-orphans blue 101',
      'start blue b',
    ]);
    expect(plan.every((a) => a.reason.length > 0)).toBe(true);
  });

  it('re-homes the live slot and leaves the freed slot stopped when the standby was not meant to run', () => {
    for (const state of ['stopped', 'failed', 'starting', 'empty'] as SlotState[]) {
      const plan = planReconcile({
        live: 'green',
        slots: [slot('blue', { state, pm2: 'absent' }), slot('green', { pm2: 'absent', orphans: [7, 8] })],
      });
      expect(steps(plan), state).toEqual(['start blue b', 'switch blue b', 'stop-orphans green 7,8', 'mark green stopped']);
    }
  });

  it('deletes whatever PM2 holds under a slot before starting the live release there', () => {
    const plan = planReconcile({
      live: 'blue',
      slots: [slot('blue', { pm2: 'other', orphans: [1] }), slot('green', { pm2: 'online' })],
    });
    expect(steps(plan)).toEqual(['delete green', 'start green a', 'switch green a', 'stop-orphans blue 1', 'delete blue', 'start blue b']);
  });

  it('restarts a standby its orphans show was running, and stops one that was not meant to run', () => {
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { pm2: 'absent', orphans: [5] })] })))
      .toEqual(['adopt blue', 'stop-orphans green 5', 'start green b']);
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { pm2: 'other', orphans: [5] })] })))
      .toEqual(['adopt blue', 'delete green', 'stop-orphans green 5', 'start green b']);
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { state: 'stopped', pm2: 'absent', orphans: [5] })] })))
      .toEqual(['adopt blue', 'stop-orphans green 5']);
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { state: 'starting', pm2: 'absent', orphans: [5] })] })))
      .toEqual(['adopt blue', 'stop-orphans green 5', 'mark green stopped']);
  });

  it('stops orphans of the live slot beside the PM2 process that serves it', () => {
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue', { orphans: [9] }), slot('green')] })))
      .toEqual(['stop-orphans blue 9', 'adopt green']);
  });

  it('keeps the rules crash recovery had before orphans: abandoned and gone standbys stop, live is marked running', () => {
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { abandoned: true })] })))
      .toEqual(['adopt blue', 'delete green', 'mark green stopped']);
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { pm2: 'absent' })] })))
      .toEqual(['adopt blue', 'mark green stopped']);
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue'), slot('green', { pm2: 'other' })] })))
      .toEqual(['adopt blue', 'delete green', 'mark green stopped']);
    expect(steps(planReconcile({ live: 'green', slots: [slot('blue', { state: 'stopped', pm2: 'absent' }), slot('green', { state: 'starting' })] })))
      .toEqual(['mark green running']);
  });

  it('starts the live release again when nothing runs it (a reboot took PM2 and the apps)', () => {
    expect(steps(planReconcile({ live: 'blue', slots: [slot('blue', { pm2: 'absent' }), slot('green', { pm2: 'absent' })] })))
      .toEqual(['start blue a', 'mark green stopped']);
  });

  it('has nothing to do for an app never deployed', () => {
    const empty = (s: Slot) => slot(s, { releaseId: null, state: 'empty', pm2: 'absent' });
    expect(planReconcile({ live: null, slots: [empty('blue'), empty('green')] })).toEqual([]);
  });
});

/** Every combination of what SQLite and the box can say about two slots. */
function* situations(): Generator<{ live: Slot | null; slots: SlotSnapshot[] }> {
  const states: SlotState[] = ['running', 'starting', 'stopped', 'failed'];
  const pm2s: SlotSnapshot['pm2'][] = ['online', 'other', 'absent'];
  const variants = (s: Slot, pid: number): SlotSnapshot[] => states.flatMap((state) => pm2s.flatMap((pm2) => [[], [pid]].flatMap((orphans) =>
    [false, true].map((abandoned) => slot(s, { state, pm2, orphans, abandoned })))));
  for (const live of [...SLOTS, null] as (Slot | null)[]) {
    for (const blue of variants('blue', 1)) {
      for (const green of variants('green', 2)) {
        // Crash recovery never calls the serving slot abandoned.
        if ((live === 'blue' && blue.abandoned) || (live === 'green' && green.abandoned)) continue;
        yield { live, slots: [blue, green] };
      }
    }
  }
}

/** What a plan breaks of the rules every plan must keep, replayed against a model of the box. */
function violations(input: { live: Slot | null; slots: SlotSnapshot[] }, plan: ReconcileAction[]): string[] {
  const found: string[] = [];
  let live = input.live;
  const pm2Holds = new Map(input.slots.map((s) => [s.slot, s.pm2 !== 'absent']));
  const orphansLeft = new Map(input.slots.map((s) => [s.slot, s.orphans.length > 0]));
  const state = new Map(input.slots.map((s) => [s.slot, s.state]));
  const servedByOrphans = input.slots.find((s) => s.slot === live)?.pm2 !== 'online';
  const stopped: number[] = [];
  for (const action of plan) {
    if (action.kind === 'stop-orphans') {
      if (action.slot === live && servedByOrphans) found.push(`stops the orphans serving ${action.slot} before traffic left it`);
      stopped.push(...action.pids);
      orphansLeft.set(action.slot, false);
    }
    if (action.kind === 'delete') pm2Holds.set(action.slot, false);
    if (action.kind === 'start') {
      if (orphansLeft.get(action.slot)) found.push(`starts ${action.slot} while orphans hold its port`);
      if (pm2Holds.get(action.slot) && action.slot !== live) found.push(`starts ${action.slot} over a PM2 process`);
      pm2Holds.set(action.slot, true);
      state.set(action.slot, 'running');
    }
    if (action.kind === 'switch') {
      if (state.get(action.slot) !== 'running') found.push(`switches to ${action.slot} before starting it`);
      live = action.slot;
    }
    if (action.kind === 'mark') state.set(action.slot, action.state);
  }
  const orphans = input.slots.flatMap((s) => s.orphans).sort();
  if (JSON.stringify(stopped.sort()) !== JSON.stringify(orphans)) found.push(`stops ${stopped.join(',') || 'none'} of orphans ${orphans.join(',') || 'none'}`);
  for (const [s, st] of state) if (st === 'starting' && s !== live) found.push(`leaves ${s} "starting"`);
  return found;
}

describe('PM2 reconciliation plan: invariants over every situation', () => {
  it('never stops what serves before traffic left it, never starts into a held port, stops every orphan once, leaves no slot starting', () => {
    let count = 0;
    const broken: string[] = [];
    for (const input of situations()) {
      count += 1;
      const problems = violations(input, planReconcile(input));
      if (problems.length > 0) broken.push(`${problems.join('; ')} in ${JSON.stringify(input)}`);
    }
    expect(broken.slice(0, 5)).toEqual([]);
    expect(count).toBeGreaterThan(1000);
  });
});
