import type { DeploymentRow } from '../state/store.js';
import { errorMessage } from '../../contract/errors.js';
import { SLOTS, shortSha, type Slot } from '../../contract/names.js';
import type { HealthChecker } from './rollout.js';
import { checkSlotHealth, observeSlots, reconcileApp, tryAppLock, type ReconcileDeps } from './rehome.js';

export interface RecoveryDeps extends ReconcileDeps {
  health: HealthChecker;
  bootId: string;
}

/** Who holds an app's deploy lock while crash recovery works on it. */
const RECOVERY_HOLDER = 'crash-recovery@agent';

export interface SlotFacts { slot: Slot; releaseId: string | null; processOnline: boolean; healthy: boolean }

export interface RecoveryPlan {
  /** The slot that must serve after recovery, or null when no slot is healthy. */
  live: Slot | null;
  /** Whether nginx must be pointed at `live` (it serves something else, or nothing we can prove). */
  switchNeeded: boolean;
}

/**
 * Pure: after a crash, keep what nginx serves if that slot is healthy; otherwise move traffic to
 * the other slot if it is healthy; if neither is, leave nginx alone (there is nothing better).
 */
export function planRecovery(served: Slot | null, slots: SlotFacts[]): RecoveryPlan {
  const facts = (slot: Slot) => slots.find((s) => s.slot === slot);
  if (served && facts(served)?.healthy) return { live: served, switchNeeded: false };
  const candidates = SLOTS.filter((s) => s !== served && facts(s)?.healthy && facts(s)?.releaseId);
  const next = candidates[0];
  if (next) return { live: next, switchNeeded: true };
  return { live: served, switchNeeded: false };
}

/** Pure: the outcome and reason recorded for a deployment the crash interrupted. */
export function resolveInterrupted(d: DeploymentRow, live: Slot | null, servedBefore: Slot | null): { outcome: 'succeeded' | 'failed' | 'rolled_back'; reason: string } {
  const during = `the agent stopped during "${d.state}"`;
  if (live === d.slot) {
    return { outcome: 'succeeded', reason: `${during}; on restart ${d.slot} (${d.releaseId ? shortSha(d.releaseId) : '-'}) was serving and healthy, so it was kept` };
  }
  if (servedBefore === d.slot) {
    return { outcome: 'rolled_back', reason: `${during}; on restart ${d.slot} was serving but unhealthy, so traffic went back to ${live ?? 'nothing healthy'}` };
  }
  return { outcome: 'failed', reason: `${during}; traffic had not moved to ${d.slot}, which was stopped` };
}

/**
 * Runs once when the agent starts, before it serves the API: resolves every deployment a crash
 * left unfinished, makes exactly one healthy slot live where possible, and reconciles PM2 against
 * SQLite (PM2's own dump is not trusted). Returns the apps whose PM2 reconciliation failed, for
 * the PM2 watchdog to retry.
 */
export async function recoverAfterRestart(deps: RecoveryDeps): Promise<string[]> {
  const { state, logger } = deps;
  const unreconciled: string[] = [];
  const unfinished = state.unfinishedDeployments();
  for (const app of Object.keys(deps.config.apps)) {
    state.ensureApp(app);
    const lock = state.lock(app);
    if (lock && lock.bootId !== deps.bootId) {
      state.releaseLock(app, lock.lockId);
      logger.warn({ app, lock }, 'released a deploy lock left by the previous agent process');
    }
    const interrupted = unfinished.filter((d) => d.app === app);
    // Nothing else runs yet (the API is not listening); the lock says so to anything that looks.
    const held = tryAppLock(state, deps.bootId, app, RECOVERY_HOLDER);
    try {
      if (!await recoverApp(deps, app, interrupted)) unreconciled.push(app);
    } catch (error) {
      logger.error({ err: error, app }, 'crash recovery of this app failed; it needs an operator');
      for (const d of interrupted) {
        state.addEvent({ deploymentId: d.id, step: 'recovery', status: 'failed', message: errorMessage(error) });
        state.finishDeployment(d.id, 'failed', `the agent stopped during "${d.state}"; recovery failed: ${errorMessage(error)}`);
      }
    } finally {
      held?.release();
    }
  }
  return unreconciled;
}

/** False when only the final PM2 reconciliation failed (traffic and deployments are settled by then). */
async function recoverApp(deps: RecoveryDeps, app: string, interrupted: DeploymentRow[]): Promise<boolean> {
  const { state, logger } = deps;
  const served = await servedSlot(deps, app);
  const dbLive = state.app(app)!.liveSlot;

  const facts: SlotFacts[] = [];
  for (const slot of await observeSlots(deps, app)) {
    // A slot runs its release when PM2 runs it there, or when an orphan a dead PM2 daemon left
    // behind still does (it is re-homed below, after traffic is settled).
    const runs = slot.pm2 === 'online' || (slot.releaseId !== null && slot.orphans.some((o) => o.releaseId === slot.releaseId));
    const healthy = runs && (await checkSlotHealth(deps, app, slot.slot, 5)).ok;
    facts.push({ slot: slot.slot, releaseId: slot.releaseId, processOnline: runs, healthy });
  }

  // Nothing was interrupted and nginx agrees with SQLite: only PM2 may need reconciling.
  const plan = planRecovery(served ?? dbLive, facts);
  if (plan.live && (plan.switchNeeded || interrupted.length > 0 || served !== dbLive)) {
    // Re-applied even when the right slot already serves: a crash between writing the include and
    // reloading nginx leaves a file that the next reload (any app's) would otherwise put live.
    const target = facts.find((f) => f.slot === plan.live)!;
    logger.warn({ app, served, to: plan.live }, 'crash recovery: pointing nginx at the healthy slot');
    await deps.activation.switchTraffic(app, plan.live, target.releaseId!, { reapply: true });
  }
  const live = plan.live ?? dbLive;

  for (const d of interrupted) {
    const { outcome, reason } = resolveInterrupted(d, live, served);
    // A forced activation of a release marked bad keeps the mark: only a clean watch window clears it,
    // and an interrupted one never finished its window.
    if (outcome === 'succeeded' && d.releaseId && state.release(app, d.releaseId)?.state !== 'bad') {
      state.setReleaseState(app, d.releaseId, 'good');
    }
    if (outcome !== 'succeeded' && d.releaseId && d.slot !== live) {
      state.setReleaseState(app, d.releaseId, outcome === 'rolled_back' ? 'bad' : 'failed');
    }
    state.addEvent({ deploymentId: d.id, step: 'recovery', status: 'info', message: reason });
    state.finishDeployment(d.id, outcome, reason);
    logger.warn({ app, deploymentId: d.id, outcome, reason }, 'crash recovery resolved an interrupted deployment');
  }

  // PM2 against SQLite (reconcile-plan.ts): the standby slot of an interrupted rollout is
  // abandoned; a slot SQLite says runs must run its release under PM2; orphans of a dead daemon
  // are replaced and stopped, the serving one only after traffic moved off it.
  const abandoned = interrupted.filter((d) => d.slot !== live).map((d) => d.slot);
  try {
    await reconcileApp(deps, app, { live, abandoned });
    return true;
  } catch (error) {
    logger.error({ err: error, app }, 'crash recovery could not reconcile PM2 with SQLite; the PM2 watchdog retries');
    return false;
  }
}

/** Which slot nginx serves right now, read from the marker headers through nginx itself (on a route of either slot's release). */
async function servedSlot(deps: RecoveryDeps, app: string): Promise<Slot | null> {
  for (const row of deps.state.slots(app)) {
    const probe = row.releaseId ? deps.activation.probeOf(app, row.releaseId) : null;
    if (!probe) continue;
    try {
      const response = await deps.health.httpGet(probe.url, { timeoutMs: 2000, headers: { ...probe.headers, host: probe.host } });
      const slot = response.headers['x-slipway-slot'];
      return slot === 'blue' || slot === 'green' ? slot : null;
    } catch {
      return null;
    }
  }
  return null;
}
