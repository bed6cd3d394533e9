import { shortSha, type Slot } from '../../contract/names.js';
import type { SlotState } from '../state/store.js';

// Pure: what to do so that PM2 runs exactly what SQLite says, given what runs now. Used by crash
// recovery at start and by the PM2 watchdog after a daemon died; no I/O here, the actions are
// carried out by rehome.ts in the order given.

/** One slot as SQLite records it and as the box runs it. */
export interface SlotSnapshot {
  slot: Slot;
  /** SQLite's release and state for the slot (SQLite is the source of truth). */
  releaseId: string | null;
  state: SlotState;
  /** PM2's process of the slot: online in the slot's release dir, present otherwise, or absent. */
  pm2: 'online' | 'other' | 'absent';
  /** Pids of the slot's processes that PM2 does not manage (left behind by a dead daemon). */
  orphans: number[];
  /** A rollout the agent's crash interrupted was starting this slot, and traffic is not there. */
  abandoned: boolean;
}

export type ReconcileAction =
  /** PM2 runs what SQLite says: kept as it is. */
  | { kind: 'adopt'; slot: Slot; reason: string }
  /** Remove PM2's process of the slot. */
  | { kind: 'delete'; slot: Slot; reason: string }
  /** Stop these pids (verified to be the slot's processes) after traffic no longer reaches them. */
  | { kind: 'stop-orphans'; slot: Slot; pids: number[]; reason: string }
  /** Start the release in the slot under PM2 (its port must be free by then). */
  | { kind: 'start'; slot: Slot; releaseId: string; reason: string }
  /** Health-gate the slot, then the normal switch (include, reload, flip, each proven). */
  | { kind: 'switch'; slot: Slot; releaseId: string; reason: string }
  /** Record the slot's state in SQLite. */
  | { kind: 'mark'; slot: Slot; state: SlotState; reason: string };

export interface ReconcileInput {
  /** The slot that serves (after crash recovery chose it), or null when none does. */
  live: Slot | null;
  slots: SlotSnapshot[];
}

/** Whether SQLite wants the slot's release running (an abandoned rollout's slot is not wanted). */
function meantToRun(s: SlotSnapshot): s is SlotSnapshot & { releaseId: string } {
  return s.state === 'running' && s.releaseId !== null && !s.abandoned;
}

function pids(s: SlotSnapshot): string {
  return `pid${s.orphans.length > 1 ? 's' : ''} ${s.orphans.join(', ')}`;
}

/**
 * The live slot is kept as it runs when PM2 runs it. When only orphans run it (the daemon died),
 * it is re-homed without a gap: its release is started under PM2 in the other slot, health-gated
 * and switched to, and only then are the orphans stopped; the other slot's release, if it was
 * meant to run, moves into the freed slot. Every other slot is restarted under PM2 when orphans
 * show it was running, and stopped when SQLite does not want it running.
 */
export function planReconcile(input: ReconcileInput): ReconcileAction[] {
  const live = input.slots.find((s) => s.slot === input.live) ?? null;
  const others = input.slots.filter((s) => s !== live);
  if (live?.releaseId && live.pm2 !== 'online' && live.orphans.length > 0 && others.length === 1) {
    return rehomeLive(live as SlotSnapshot & { releaseId: string }, others[0]!);
  }
  const actions: ReconcileAction[] = [];
  if (live?.releaseId) actions.push(...keepLive(live as SlotSnapshot & { releaseId: string }));
  for (const s of others) actions.push(...reconcileStandby(s));
  return actions;
}

function keepLive(live: SlotSnapshot & { releaseId: string }): ReconcileAction[] {
  const { slot } = live;
  const actions: ReconcileAction[] = [];
  if (live.pm2 !== 'online') {
    // Nothing serves: bringing the release back is all that is left to do.
    if (live.pm2 === 'other') actions.push({ kind: 'delete', slot, reason: `PM2's process of live ${slot} does not run ${shortSha(live.releaseId)}` });
    actions.push({ kind: 'start', slot, releaseId: live.releaseId, reason: `no process runs the live slot ${slot}: starting ${shortSha(live.releaseId)} again` });
    return actions;
  }
  if (live.orphans.length > 0) {
    actions.push({ kind: 'stop-orphans', slot, pids: live.orphans, reason: `${pids(live)} of live ${slot} run outside PM2, beside PM2's own` });
  }
  if (live.state !== 'running') actions.push({ kind: 'mark', slot, state: 'running', reason: `${slot} serves traffic` });
  else if (actions.length === 0) actions.push({ kind: 'adopt', slot, reason: `PM2 runs live ${slot} (${shortSha(live.releaseId)})` });
  return actions;
}

function reconcileStandby(s: SlotSnapshot): ReconcileAction[] {
  const { slot } = s;
  const actions: ReconcileAction[] = [];
  if (meantToRun(s)) {
    if (s.pm2 === 'online' && s.orphans.length === 0) return [{ kind: 'adopt', slot, reason: `PM2 runs ${slot} (${shortSha(s.releaseId)})` }];
    if (s.orphans.length > 0) {
      if (s.pm2 !== 'absent') actions.push({ kind: 'delete', slot, reason: `PM2's process of ${slot} cannot have its port while orphans hold it` });
      actions.push(
        { kind: 'stop-orphans', slot, pids: s.orphans, reason: `${pids(s)} of ${slot} run outside PM2 (its daemon died)` },
        { kind: 'start', slot, releaseId: s.releaseId, reason: `${slot} was running ${shortSha(s.releaseId)}: starting it again under PM2` },
      );
      return actions;
    }
    // Its process is gone (stopped by hand, crashed for good): SQLite learns it, nothing is started.
    if (s.pm2 === 'other') actions.push({ kind: 'delete', slot, reason: `PM2's process of ${slot} does not run ${shortSha(s.releaseId)}` });
    actions.push({ kind: 'mark', slot, state: 'stopped', reason: `no process runs ${slot} any more` });
    return actions;
  }
  if (s.pm2 !== 'absent') actions.push({ kind: 'delete', slot, reason: s.abandoned ? `${slot} belonged to an interrupted rollout` : `SQLite records ${slot} as ${s.state}` });
  if (s.orphans.length > 0) actions.push({ kind: 'stop-orphans', slot, pids: s.orphans, reason: `${pids(s)} of ${slot} run outside PM2, and ${slot} is not meant to run` });
  if (s.abandoned || s.state === 'running' || s.state === 'starting') {
    actions.push({ kind: 'mark', slot, state: 'stopped', reason: s.abandoned ? `${slot} belonged to an interrupted rollout` : `${slot} no longer runs` });
  }
  return actions;
}

function rehomeLive(live: SlotSnapshot & { releaseId: string }, standby: SlotSnapshot): ReconcileAction[] {
  const to = standby.slot;
  const from = live.slot;
  const release = shortSha(live.releaseId);
  const actions: ReconcileAction[] = [];
  if (standby.pm2 !== 'absent') actions.push({ kind: 'delete', slot: to, reason: `${to} takes the live release while ${from} is re-homed` });
  if (standby.orphans.length > 0) {
    actions.push({ kind: 'stop-orphans', slot: to, pids: standby.orphans, reason: `${pids(standby)} of standby ${to} run outside PM2 (its daemon died)` });
  }
  actions.push(
    { kind: 'start', slot: to, releaseId: live.releaseId, reason: `live ${from} runs outside PM2 (${pids(live)}): starting ${release} under PM2 in ${to}` },
    { kind: 'switch', slot: to, releaseId: live.releaseId, reason: `moving traffic to ${to}, which runs ${release} under PM2` },
    { kind: 'stop-orphans', slot: from, pids: live.orphans, reason: `traffic left ${from}: stopping ${pids(live)}, which PM2 no longer managed` },
  );
  if (live.pm2 !== 'absent') actions.push({ kind: 'delete', slot: from, reason: `PM2's process of ${from} never held its port` });
  if (meantToRun(standby)) {
    actions.push({ kind: 'start', slot: from, releaseId: standby.releaseId, reason: `the standby release ${shortSha(standby.releaseId)} moves from ${to} to ${from}, under PM2` });
  } else {
    actions.push({ kind: 'mark', slot: from, state: 'stopped', reason: `${from} is the standby now, and nothing was meant to run there` });
  }
  return actions;
}
