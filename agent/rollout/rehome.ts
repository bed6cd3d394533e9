import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import type { SlotProcessRow, StateStore } from '../state/store.js';
import { pm2DaemonDown, type DaemonHealth } from '../pm2-daemon.js';
import type { Pm2Process } from '../pm2.js';
import { findSlotOrphans, stopOrphans, type SlotOrphan } from '../pm2-orphans.js';
import { waitFor } from '../../lib/wait.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import { planReconcile, type ReconcileAction, type SlotSnapshot } from './reconcile-plan.js';
import type { HealthChecker } from './rollout.js';

// Carries out planReconcile: makes PM2 run what SQLite says, re-homing slot processes a dead
// PM2 daemon left behind. Used by crash recovery at start and by the PM2 watchdog, each holding
// the app's deploy lock.

/**
 * The rollout's own entry points that starting a slot and moving traffic go through (wired once,
 * in agent.ts): re-homing switches with the same include, reload and flip proofs as a rollout.
 */
export interface SlotActivation {
  startRelease(app: string, slot: Slot, releaseId: string): Promise<void>;
  switchTraffic(app: string, slot: Slot, releaseId: string, options?: { reapply?: boolean }): Promise<void>;
  /** The slot's recorded processes (SlotProcesses.layout). */
  layout(app: string, slot: Slot): SlotProcessRow[];
  /** Every process's health, as the slot's release's spec defines it (SlotProcesses.checkHealth). */
  checkHealth(app: string, slot: Slot, retries?: number): Promise<{ ok: boolean; attempts: number; seen: string; url: string }>;
  /** The request through nginx that reaches a release's first route (TrafficSwitch.probeOf). */
  probeOf(app: string, releaseId: string): { url: string; host: string; headers?: Record<string, string> } | null;
}

export interface ReconcileDeps {
  config: AgentConfig;
  state: StateStore;
  processes: {
    readonly pm2Home: string;
    list(): Promise<Pm2Process[]>;
    delete(name: string): Promise<void>;
    daemonHealth(): Promise<DaemonHealth>;
  };
  health: Pick<HealthChecker, 'waitHealthy'>;
  activation: SlotActivation;
  releaseDir: (app: string, releaseId: string) => string;
  logger: Logger;
}

/** One slot as SQLite records it, and what runs for it: PM2's process, orphans of a dead daemon. */
export interface ObservedSlot {
  slot: Slot;
  releaseId: string | null;
  state: SlotSnapshot['state'];
  pm2: SlotSnapshot['pm2'];
  orphans: SlotOrphan[];
}

/**
 * After a flip is proven no new request reaches the old slot; requests already inside it finish
 * within this (keep-alive connections idle in nginx's pool are closed by the app on SIGINT).
 */
const DRAIN_MS = 1_000;

function resolvedDir(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return path.resolve(dir);
  }
}

/** What runs for each slot of `app` now: PM2's list and the orphans, against SQLite's rows. */
export async function observeSlots(deps: ReconcileDeps, app: string): Promise<ObservedSlot[]> {
  const daemon = await deps.processes.daemonHealth();
  if (!daemon.up) throw pm2DaemonDown(deps.processes.pm2Home, daemon.reason);
  const listed = await deps.processes.list();
  const orphans = findSlotOrphans(deps.processes.pm2Home, daemon.pid).filter((o) => o.app === app);
  return deps.state.slots(app).map((row): ObservedSlot => {
    const names = deps.activation.layout(app, row.slot).map((p) => p.pm2Name);
    const procs = listed.filter((p) => names.includes(p.name));
    const expected = row.releaseId ? resolvedDir(deps.releaseDir(app, row.releaseId)) : null;
    const inRelease = (cwd: string) => expected !== null && (resolvedDir(cwd) === expected || resolvedDir(cwd).startsWith(expected + path.sep));
    // Every process of the layout runs (each instance online) in the slot's release.
    const runsRelease = names.length > 0 && names.every((name) => procs.some((p) => p.name === name))
      && procs.every((p) => p.status === 'online' && inRelease(p.pmCwd));
    return {
      slot: row.slot, releaseId: row.releaseId, state: row.state,
      pm2: runsRelease ? 'online' : procs.length > 0 ? 'other' : 'absent',
      orphans: orphans.filter((o) => o.slot === row.slot),
    };
  });
}

/**
 * Plans and carries out the reconciliation of one app. `live` is the slot that serves; slots in
 * `abandoned` belonged to a rollout a crash interrupted. If starting or switching to a slot fails
 * before traffic moved, that slot is stopped again and the error rethrown: whatever served before
 * (an orphan included) still serves.
 */
export async function reconcileApp(deps: ReconcileDeps, app: string, options: { live: Slot | null; abandoned?: Slot[] }): Promise<ReconcileAction[]> {
  const observed = await observeSlots(deps, app);
  const actions = planReconcile({
    live: options.live,
    slots: observed.map((o) => ({
      slot: o.slot, releaseId: o.releaseId, state: o.state, pm2: o.pm2,
      orphans: o.orphans.map((x) => x.pid), abandoned: options.abandoned?.includes(o.slot) ?? false,
    })),
  });
  const orphansOf = (slot: Slot, pids: number[]) => observed.find((o) => o.slot === slot)!.orphans.filter((o) => pids.includes(o.pid));
  for (const action of actions) {
    if (action.kind !== 'adopt') deps.logger.warn({ app, action }, `reconciling PM2: ${action.reason}`);
    try {
      await carryOut(deps, app, action, orphansOf);
    } catch (error) {
      // A slot started (or health-gated) for the switch never got traffic: stop it again.
      const undo = (action.kind === 'start' || action.kind === 'switch') && deps.state.app(app)?.liveSlot !== action.slot ? action.slot : null;
      if (undo !== null) {
        for (const p of deps.activation.layout(app, undo)) await deps.processes.delete(p.pm2Name).catch(() => undefined);
        deps.state.setSlotState(app, undo, 'stopped');
      }
      throw new SlipwayError('reconcile_failed', `reconciling ${app} with PM2 failed (${action.reason}): ${errorMessage(error)}`, {
        status: 500,
        cause: error,
        hint: undo !== null ? `traffic did not move; ${undo} was stopped again, and the agent tries again` : 'see the agent log; the agent tries again',
      });
    }
  }
  return actions;
}

async function carryOut(deps: ReconcileDeps, app: string, action: ReconcileAction, orphansOf: (slot: Slot, pids: number[]) => SlotOrphan[]): Promise<void> {
  switch (action.kind) {
    case 'adopt':
      return;
    case 'delete':
      for (const p of deps.activation.layout(app, action.slot)) await deps.processes.delete(p.pm2Name);
      return;
    case 'mark':
      return deps.state.setSlotState(app, action.slot, action.state);
    case 'stop-orphans':
      return stopOrphans(orphansOf(action.slot, action.pids), deps.processes.pm2Home);
    case 'start':
      return deps.activation.startRelease(app, action.slot, action.releaseId);
    case 'switch':
      await healthGate(deps, app, action.slot, action.releaseId);
      await deps.activation.switchTraffic(app, action.slot, action.releaseId);
      await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
      return;
  }
}

/** One slot's health: every process as its release's spec defines it; `retries` as configured unless given. */
export function checkSlotHealth(
  deps: Pick<ReconcileDeps, 'activation'>, app: string, slot: Slot, retries?: number,
): Promise<{ url: string; ok: boolean; attempts: number; seen: string }> {
  return deps.activation.checkHealth(app, slot, retries);
}

async function healthGate(deps: ReconcileDeps, app: string, slot: Slot, releaseId: string): Promise<void> {
  const result = await checkSlotHealth(deps, app, slot);
  if (!result.ok) {
    throw new SlipwayError('health_check_failed', `${app}/${slot}@${shortSha(releaseId)} failed its health check ${result.url} after ${result.attempts} attempt(s): last saw ${result.seen}`, {
      status: 502, hint: `read the app's log: PM2_HOME=${deps.processes.pm2Home} pm2 logs ${deps.activation.layout(app, slot).map((p) => p.pm2Name).join(' ')} --lines 50`,
    });
  }
}

/** The app's deploy lock, taken for re-homing; a rollout holding it is waited for. */
export interface AppLock { release(): void }

/**
 * Takes the app's deploy lock if it is free. With `takeReservation`, a controller's reservation
 * (taken before its upload; no rollout runs yet) is taken over: its rollout would otherwise start
 * against a new PM2 daemon while orphans still hold the slot ports. That push then fails before
 * anything changed, naming the holder.
 */
export function tryAppLock(
  state: StateStore, bootId: string, app: string, holder: string, options: { takeReservation?: boolean; logger?: Logger; action?: string } = {},
): AppLock | null {
  const held = state.lock(app);
  if (options.takeReservation && held && held.deploymentId === null && held.expiresAt !== null) {
    state.releaseLock(app, held.lockId);
    options.logger?.warn({ app, lock: held }, 'took over a deploy lock reservation to move the slots back under PM2');
  }
  const lockId = randomUUID();
  const taken = state.acquireLock({ app, lockId, holder, action: options.action ?? 'pm2-rehome', releaseId: null, expiresAt: null, bootId, deploymentId: null });
  return taken.ok ? { release: () => { state.releaseLock(app, lockId); } } : null;
}

export async function waitForAppLock(
  state: StateStore, bootId: string, app: string, holder: string, options: { timeoutMs: number; cancelled?: () => boolean; logger?: Logger },
): Promise<AppLock> {
  return waitFor(() => tryAppLock(state, bootId, app, holder, { takeReservation: true, ...(options.logger ? { logger: options.logger } : {}) }), {
    timeoutMs: options.timeoutMs,
    intervalMs: 250,
    ...(options.cancelled ? { cancelled: options.cancelled } : {}),
    onTimeout: () => {
      const held = state.lock(app);
      return new SlipwayError('app_locked', `${app} stayed locked by ${held?.holder ?? '?'} for ${held?.action ?? '?'}; its slots were not re-homed`, {
        status: 409, hint: 'the agent tries again; deploy lock status shows the holder',
      });
    },
  });
}
