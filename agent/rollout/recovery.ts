import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import type { StateStore, DeploymentRow } from '../state/store.js';
import { errorMessage } from '../../contract/errors.js';
import { SLOTS, pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import { probeHostOf, publicUrlOf, type HealthChecker, type ProcessManager, type RecoveryActions as RolloutService } from './rollout.js';

export interface RecoveryDeps {
  config: AgentConfig;
  state: StateStore;
  processes: ProcessManager;
  health: HealthChecker;
  rollouts: Pick<RolloutService, 'switchTraffic' | 'startRelease'>;
  releaseDir: (app: string, releaseId: string) => string;
  bootId: string;
  logger: Logger;
}

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
 * SQLite (PM2's own dump is not trusted).
 */
export async function recoverAfterRestart(deps: RecoveryDeps): Promise<void> {
  const { state, logger } = deps;
  const unfinished = state.unfinishedDeployments();
  for (const app of Object.keys(deps.config.apps)) {
    state.ensureApp(app);
    const lock = state.lock(app);
    if (lock && lock.bootId !== deps.bootId) {
      state.releaseLock(app, lock.lockId);
      logger.warn({ app, lock }, 'released a deploy lock left by the previous agent process');
    }
    const interrupted = unfinished.filter((d) => d.app === app);
    try {
      await recoverApp(deps, app, interrupted);
    } catch (error) {
      logger.error({ err: error, app }, 'crash recovery of this app failed; it needs an operator');
      for (const d of interrupted) {
        state.addEvent({ deploymentId: d.id, step: 'recovery', status: 'failed', message: errorMessage(error) });
        state.finishDeployment(d.id, 'failed', `the agent stopped during "${d.state}"; recovery failed: ${errorMessage(error)}`);
      }
    }
  }
}

async function recoverApp(deps: RecoveryDeps, app: string, interrupted: DeploymentRow[]): Promise<void> {
  const { state, processes, logger } = deps;
  const appConfig = deps.config.apps[app]!;
  const served = await servedSlot(deps, app);
  const dbLive = state.app(app)!.liveSlot;

  const facts: SlotFacts[] = [];
  for (const row of state.slots(app)) {
    const proc = await processes.describe(pm2ProcessName(app, row.slot)).catch(() => null);
    const expectedCwd = row.releaseId ? path.resolve(deps.releaseDir(app, row.releaseId)) : null;
    const online = proc?.status === 'online' && proc.pmCwd !== null && expectedCwd !== null && path.resolve(proc.pmCwd) === expectedCwd;
    let healthy = false;
    if (online) {
      const h = appConfig.health;
      const result = await deps.health.waitHealthy(`http://127.0.0.1:${appConfig.slots[row.slot].port}${h.path}`, {
        timeoutMs: h.timeoutMs, intervalMs: h.intervalMs, retries: 5, expectStatus: h.expectStatus,
        ...(h.bodyContains ? { bodyContains: h.bodyContains } : {}),
      });
      healthy = result.ok;
    }
    facts.push({ slot: row.slot, releaseId: row.releaseId, processOnline: online, healthy });
  }

  // Nothing was interrupted and nginx agrees with SQLite: only PM2 may need reconciling.
  const plan = planRecovery(served ?? dbLive, facts);
  if (plan.live && (plan.switchNeeded || interrupted.length > 0 || served !== dbLive)) {
    // Re-applied even when the right slot already serves: a crash between writing the include and
    // reloading nginx leaves a file that the next reload (any app's) would otherwise put live.
    const target = facts.find((f) => f.slot === plan.live)!;
    logger.warn({ app, served, to: plan.live }, 'crash recovery: pointing nginx at the healthy slot');
    await deps.rollouts.switchTraffic(app, plan.live, target.releaseId!, { reapply: true });
  } else if (!plan.live && dbLive) {
    // The live slot's process is gone and nothing healthy remains: bring it back from SQLite.
    const row = state.slot(app, dbLive);
    if (row.releaseId) {
      logger.warn({ app, slot: dbLive }, 'crash recovery: restarting the live slot, whose process was gone');
      await deps.rollouts.startRelease(app, dbLive, row.releaseId);
    }
  }
  const live = plan.live ?? dbLive;

  for (const d of interrupted) {
    const { outcome, reason } = resolveInterrupted(d, live, served);
    if (outcome === 'succeeded' && d.releaseId) state.setReleaseState(app, d.releaseId, 'good');
    if (outcome !== 'succeeded' && d.releaseId && d.slot !== live) {
      state.setReleaseState(app, d.releaseId, outcome === 'rolled_back' ? 'bad' : 'failed');
    }
    state.addEvent({ deploymentId: d.id, step: 'recovery', status: 'info', message: reason });
    state.finishDeployment(d.id, outcome, reason);
    logger.warn({ app, deploymentId: d.id, outcome, reason }, 'crash recovery resolved an interrupted deployment');
  }

  // PM2 against SQLite: the standby slot of an interrupted rollout is an orphan; slots SQLite says
  // are not running must not have processes; a slot SQLite says runs must run its release.
  for (const f of facts) {
    const row = state.slot(app, f.slot);
    const isLive = f.slot === live;
    const orphan = !isLive && interrupted.some((d) => d.slot === f.slot);
    if (isLive) {
      if (row.state !== 'running') state.setSlotState(app, f.slot, 'running');
      continue;
    }
    if (orphan || row.state !== 'running' || !f.processOnline) {
      await processes.delete(pm2ProcessName(app, f.slot));
      if (row.state === 'running' || row.state === 'starting' || orphan) state.setSlotState(app, f.slot, 'stopped');
    }
  }
}

/** Which slot nginx serves right now, read from the marker headers through nginx itself. */
async function servedSlot(deps: RecoveryDeps, app: string): Promise<Slot | null> {
  const appConfig = deps.config.apps[app]!;
  try {
    const response = await deps.health.httpGet(`${publicUrlOf(deps.config, app)}${appConfig.health.path}`, {
      timeoutMs: 2000, headers: { host: probeHostOf(deps.config, app) },
    });
    const slot = response.headers['x-slipway-slot'];
    return slot === 'blue' || slot === 'green' ? slot : null;
  } catch {
    return null;
  }
}
