import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import type { StateStore, LockRow, DeploymentKind } from '../state/store.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { otherSlot, pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import { NO_FAULTS, systemClock, type Clock, type FaultInjection, type HealthChecker, type NginxRenderInput, type ProcessManager, type TrafficSwitcher } from './deps.js';
import { checkSwitchTarget, EntryChecks } from './entry.js';
import { DeploymentFeed } from './feed.js';
import { RolloutStop, StepJournal, type Deployment } from './journal.js';
import { DeployLocks } from './locks.js';
import { SlotProcesses } from './slot-process.js';
import { chooseTargetSlot } from './slots.js';
import { TrafficSwitch } from './traffic.js';
import { watchChecks } from './watch-checks.js';
import { watchWindow } from './watch.js';

// The rollout's surface for the rest of the agent.
export type { HealthChecker, NginxRenderInput, ProcessManager, TrafficSwitcher } from './deps.js';
export { probeHostOf, publicUrlOf } from './public-address.js';
export { LOCK_RESERVATION_MS } from './locks.js';

export interface RolloutDeps {
  config: AgentConfig;
  state: StateStore;
  /** Identifies this agent process; locks written by an earlier process are stale. */
  bootId: string;
  hasRelease: (app: string, releaseId: string) => boolean;
  processes: ProcessManager;
  nginx: TrafficSwitcher;
  health: HealthChecker;
  slots: SlotProcesses;
  traffic: TrafficSwitch;
  /** Runs the app's pre-deploy backup job; throws unless the backup was written and verified. */
  runBackup?: (job: string, deploymentId: number, actor: string) => Promise<{ id: number }>;
  logger: Logger;
  clock?: Clock;
  faults?: FaultInjection;
}

/** What the agent hands the rollout; the slot processes and the traffic switch are built from it. */
export type RolloutWiring = Omit<RolloutDeps, 'slots' | 'traffic'> & {
  releaseDir: (app: string, releaseId: string) => string;
  renderNginx: (input: NginxRenderInput) => string;
  portInUse?: (port: number) => Promise<boolean>;
  portWaitMs?: number;
};

/** What crash recovery uses of the rollout's parts: the traffic switch and starting a slot. */
export interface RecoveryActions {
  switchTraffic: TrafficSwitch['switchTraffic'];
  startRelease: SlotProcesses['startRelease'];
}

/** Builds the rollout and the two parts crash recovery shares with it. */
export function createRollouts(wiring: RolloutWiring): { rollouts: RolloutService; slots: SlotProcesses; traffic: TrafficSwitch } {
  const { releaseDir, renderNginx, portInUse, portWaitMs, ...rest } = wiring;
  const slots = new SlotProcesses({ ...rest, releaseDir, ...(portInUse ? { portInUse } : {}), ...(portWaitMs !== undefined ? { portWaitMs } : {}) });
  const traffic = new TrafficSwitch({ ...rest, renderNginx });
  return { rollouts: new RolloutService({ ...rest, slots, traffic }), slots, traffic };
}

/**
 * The rollout orchestrator: one place that moves an app's traffic from one release to another,
 * with an explicit compensation for every step, so a failure leaves a healthy slot serving.
 */
export class RolloutService {
  private readonly feeds = new Map<number, DeploymentFeed>();
  private readonly locks: DeployLocks;
  private readonly entry: EntryChecks;
  private readonly clock: Clock;

  constructor(private readonly deps: RolloutDeps) {
    this.clock = deps.clock ?? systemClock;
    this.locks = new DeployLocks({ state: deps.state, bootId: deps.bootId, clock: this.clock, logger: deps.logger });
    this.entry = new EntryChecks(deps);
  }

  feed(deploymentId: number): DeploymentFeed | undefined {
    return this.feeds.get(deploymentId);
  }

  lockStatus(app: string): (LockRow & { stale: boolean }) | null {
    return this.locks.status(this.entry.requireApp(app));
  }

  reserveLock(input: { app: string; releaseId: string; actor: string }): LockRow {
    this.entry.requireApp(input.app);
    return this.locks.reserve(input);
  }

  releaseLock(input: { app: string; lockId?: string; force: boolean; actor: string }): { released: boolean; lock: LockRow | null } {
    return this.locks.release(this.entry.requireApp(input.app), input);
  }

  // ---- entry points: validate (nothing changes on a refusal), then start ---------------------

  startDeploy(input: { app: string; releaseId: string; slot?: Slot; actor: string; lockId?: string }): DeploymentFeed {
    const app = this.entry.requireApp(input.app);
    let slot: Slot;
    try {
      this.entry.requireRelease(app, input.releaseId);
      slot = chooseTargetSlot(app, this.deps.state.app(app)!.liveSlot, input.slot);
    } catch (error) {
      this.locks.dropReservation(app, input.lockId);
      throw error;
    }
    return this.begin({ app, kind: 'deploy', slot, releaseId: input.releaseId, actor: input.actor, lockId: input.lockId },
      (j) => this.runDeploy(j));
  }

  /** Points traffic at an already-running slot, after proving it healthy. */
  startSwitch(input: { app: string; slot: Slot; actor: string }): DeploymentFeed {
    const app = this.entry.requireApp(input.app);
    const releaseId = checkSwitchTarget(app, input.slot, this.deps.state.app(app)!.liveSlot, this.deps.state.slot(app, input.slot));
    return this.begin({ app, kind: 'switch', slot: input.slot, releaseId, actor: input.actor }, (j) => this.runSwitch(j, true));
  }

  /**
   * Goes back to the previous good release (or `to`): one switch when its slot is still warm and
   * healthy, otherwise a start + health gate in the standby slot first.
   */
  startRollback(input: { app: string; to?: string; force: boolean; reason?: string; actor: string }): DeploymentFeed {
    const { state } = this.deps;
    const app = this.entry.requireApp(input.app);
    const appRow = state.app(app)!;
    const liveRelease = appRow.liveSlot ? state.slot(app, appRow.liveSlot).releaseId : null;
    const target = input.to ?? this.previousGoodRelease(app, liveRelease);
    if (!target) {
      throw new SlipwayError('no_previous_release', `${app} has no previous good release to roll back to`, {
        hint: 'list releases with: deploy releases, then: deploy rollback --to <sha>', status: 409,
      });
    }
    const release = this.entry.requireRelease(app, target);
    if (target === liveRelease) {
      throw new SlipwayError('release_already_live', `${shortSha(target)} is already live on ${appRow.liveSlot}`, { hint: 'nothing to roll back', status: 409 });
    }
    if (release.state === 'bad' && !input.force) {
      throw new SlipwayError('release_bad', `release ${shortSha(target)} of ${app} is marked bad (it failed after going live)`, {
        hint: `pass --force to roll back to it anyway: deploy rollback --to ${target} --force`, status: 409,
      });
    }
    const standby = appRow.liveSlot ? otherSlot(appRow.liveSlot) : 'blue';
    const warm = state.slot(app, standby);
    const reuseWarm = warm.releaseId === target && warm.state === 'running';
    const feed = this.begin({ app, kind: 'rollback', slot: standby, releaseId: target, actor: input.actor }, async (j) => {
      if (reuseWarm && await this.deps.slots.isOnline(app, standby)) return this.runSwitch(j, false);
      if (reuseWarm) j.emit('preflight', 'info', `${pm2ProcessName(app, standby)} is not running in PM2 any more: starting it again`, null);
      return this.runStartAndSwitch(j);
    });
    state.setDeploymentNote(feed.deploymentId, input.reason ?? null);
    return feed;
  }

  /** The release that was live most recently before the current one, and is not marked bad. */
  previousGoodRelease(app: string, liveRelease: string | null): string | null {
    const candidates = this.entry.releasesOnHost(app)
      .filter((r) => r.releaseId !== liveRelease && r.state === 'good' && r.liveAt !== null)
      .sort((a, b) => (b.liveAt ?? '').localeCompare(a.liveAt ?? ''));
    return candidates[0]?.releaseId ?? null;
  }

  /**
   * Takes the lock, records the deployment and runs it in the background. The lock is released
   * before the result is published, so a caller that sees the result can start the next rollout.
   */
  private begin(
    input: { app: string; kind: DeploymentKind; slot: Slot; releaseId: string; actor: string; lockId?: string | undefined },
    run: (journal: StepJournal) => Promise<void>,
  ): DeploymentFeed {
    const { state, logger } = this.deps;
    const lock = this.locks.takeForRollout({ app: input.app, lockId: input.lockId, actor: input.actor, action: input.kind, releaseId: input.releaseId });
    let deployment: Deployment;
    let feed: DeploymentFeed;
    try {
      const previousSlot = state.app(input.app)!.liveSlot;
      const previousRelease = previousSlot ? state.slot(input.app, previousSlot).releaseId : null;
      const id = state.createDeployment({
        app: input.app, kind: input.kind, releaseId: input.releaseId, slot: input.slot, previousSlot, previousRelease, requestedBy: input.actor,
      });
      deployment = { id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, previousSlot, previousRelease, actor: input.actor };
      this.locks.attach(lock, id);
      feed = new DeploymentFeed(id);
      this.feeds.set(id, feed);
    } catch (error) {
      this.locks.drop(input.app, lock.lockId);
      throw error;
    }
    const journal = new StepJournal({ ...this.deps, clock: this.clock, faults: this.deps.faults ?? NO_FAULTS }, deployment, feed);
    logger.info({ deploymentId: deployment.id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, actor: input.actor }, 'rollout started');
    void run(journal)
      .then(() => journal.finish('succeeded', null, null), (error: unknown) => {
        const stop = error instanceof RolloutStop ? error : new RolloutStop('failed', 'before_switch', error);
        return journal.finish(stop.outcome, stop.phase, stop.cause);
      })
      .then((result) => {
        this.releaseRolloutLock(input.app, lock.lockId);
        feed.push(result);
      })
      .catch((error: unknown) => {
        logger.error({ err: error, deploymentId: deployment.id }, 'could not record the end of a rollout');
        this.releaseRolloutLock(input.app, lock.lockId);
      })
      // Keep finished feeds briefly so a slow client can still read the result.
      .finally(() => setTimeout(() => this.feeds.delete(deployment.id), 60_000).unref());
    return feed;
  }

  private releaseRolloutLock(app: string, lockId: string): void {
    try {
      this.locks.drop(app, lockId);
    } catch (error) {
      // e.g. SQLITE_FULL: the lock stays until it is released by hand or the agent restarts.
      this.deps.logger.error({ err: error, app }, 'could not release the deploy lock');
    }
  }

  // ---- rollout kinds -----------------------------------------------------------------------

  private async runDeploy(j: StepJournal): Promise<void> {
    await this.runStartAndSwitch(j);
    await this.watchAndSettle(j);
  }

  /** Start the release in the target slot, gate it on health, switch nginx to it. */
  private async runStartAndSwitch(j: StepJournal): Promise<void> {
    const d = j.deployment;
    const { slots, state } = this.deps;
    const appConfig = this.deps.config.apps[d.app]!;
    let slotTouched = false;
    try {
      const env = await j.step('preflight', async () => {
        // No PM2 change is made unless nginx can take the switch afterwards.
        await this.deps.nginx.checkMasterRunning();
        return slots.appEnv(d.app);
      }, () => 'nginx is running, env file read');
      const backupJob = appConfig.backupBeforeDeploy;
      if (backupJob && d.kind === 'deploy') {
        const runBackup = this.deps.runBackup;
        if (!runBackup) throw new SlipwayError('backups_unavailable', `${d.app} declares backupBeforeDeploy but backups are not set up`, { status: 500 });
        await j.step('backup', () => runBackup(backupJob, d.id, d.actor), (backup) => `backup ${backup.id} of ${backupJob} written and verified`);
      }
      slotTouched = true;
      await j.step('starting', () => slots.start(d, env), () => `${pm2ProcessName(d.app, d.slot)} started on port ${appConfig.slots[d.slot].port}`);
      await j.step('healthy', () => slots.healthGate(d), (attempts) => `healthy after ${attempts} check(s)`);
    } catch (error) {
      // A failure in preflight or the backup has touched nothing: the standby slot keeps running.
      if (slotTouched) {
        await j.compensate('stop the new slot', async () => {
          await slots.stop(d.app, d.slot);
          state.transaction(() => {
            state.setSlot(d.app, d.slot, d.releaseId, 'failed');
            state.setReleaseState(d.app, d.releaseId, 'failed');
          });
        });
      }
      throw new RolloutStop('failed', 'before_switch', error);
    }
    try {
      await this.switchStep(j);
    } catch (error) {
      // nginx restored its last good config itself; the new slot never got traffic.
      await j.compensate('stop the new slot', async () => {
        await slots.stop(d.app, d.slot);
        state.setSlot(d.app, d.slot, d.releaseId, 'stopped');
      });
      throw new RolloutStop('failed', 'before_switch', error);
    }
  }

  private async runSwitch(j: StepJournal, watch: boolean): Promise<void> {
    try {
      await j.step('preflight', () => this.deps.nginx.checkMasterRunning(), () => 'nginx is running');
      await j.step('healthy', () => this.deps.slots.healthGate(j.deployment), (attempts) => `healthy after ${attempts} check(s)`);
      await this.switchStep(j);
    } catch (error) {
      throw new RolloutStop('failed', 'before_switch', error);
    }
    if (watch) await this.watchAndSettle(j, { stopPrevious: false });
  }

  private switchStep(j: StepJournal): Promise<void> {
    const { app, slot, releaseId } = j.deployment;
    return j.step('switching', () => this.deps.traffic.switchTraffic(app, slot, releaseId, { faultPoint: (p) => j.faultPoint(p) }),
      () => `nginx serves ${slot} (${shortSha(releaseId)})`);
  }

  /**
   * The watch window: traffic through nginx, the slot's health endpoint and PM2's restart count,
   * checked until the window ends. A failure swaps nginx back to the previous (still running) slot.
   */
  private async watchAndSettle(j: StepJournal, options: { stopPrevious?: boolean } = {}): Promise<void> {
    const d = j.deployment;
    const watch = this.deps.config.apps[d.app]!.watch;
    if (watch.windowMs > 0) {
      const baselineRestarts = await this.deps.slots.restarts(d.app, d.slot);
      let lastReport = 0;
      const verdict = await j.step('watching', () => watchWindow({
        windowMs: watch.windowMs,
        intervalMs: watch.intervalMs,
        threshold: watch.failuresToRollback,
        clock: this.clock,
        runChecks: () => watchChecks(this.deps, d, baselineRestarts),
        onRound: (round, roundVerdict, elapsedMs) => {
          if (roundVerdict.failingRounds > 0) {
            j.emit('watching', 'info', `check failing: ${round.filter((c) => !c.ok).map((c) => `${c.name} ${c.detail}`).join('; ')}`, elapsedMs);
          } else if (elapsedMs - lastReport >= 5_000) {
            lastReport = elapsedMs;
            j.emit('watching', 'info', `${Math.round(elapsedMs / 1000)}/${Math.round(watch.windowMs / 1000)} s: traffic, health and process checks pass`, elapsedMs);
          }
        },
      }), (v) => (v.ok ? `${Math.round(watch.windowMs / 1000)} s window passed` : `failed: ${v.reason}`));
      if (!verdict.ok) await this.swapBackOrStop(j, verdict.reason ?? 'a watch check failed');
    }
    const previous = d.previousSlot;
    if ((options.stopPrevious ?? true) && !watch.keepPreviousWarm && previous && previous !== d.slot) {
      // The new release passed its window: a previous slot that cannot be stopped is recorded as
      // still running (the next rollout replaces it) and does not undo the rollout.
      await j.step('settle', async () => {
        await this.deps.slots.stop(d.app, previous);
        this.deps.state.setSlotState(d.app, previous, 'stopped');
      }, () => `stopped the previous slot ${previous}`).catch(() => undefined);
    }
  }

  /** A swap-back that fails leaves traffic where it was after the switch: never "before the switch". */
  private async swapBackOrStop(j: StepJournal, reason: string): Promise<never> {
    try {
      return await this.swapBack(j, reason);
    } catch (error) {
      if (error instanceof RolloutStop) throw error;
      const { app, slot, releaseId, previousSlot } = j.deployment;
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('swap_back_failed',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}), and moving traffic back to ${previousSlot} failed: ${errorMessage(error)}`, {
          hint: 'check what nginx serves with: deploy status; then deploy rollback --to <a good release>', status: 502, cause: error,
        }));
    }
  }

  private async swapBack(j: StepJournal, reason: string): Promise<never> {
    const { app, slot, releaseId, previousSlot, previousRelease } = j.deployment;
    const { state, slots } = this.deps;
    if (!previousSlot || !previousRelease || previousSlot === slot) {
      state.setReleaseState(app, releaseId, 'bad');
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('watch_failed_no_previous',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}) and there is no previous slot to swap back to`, {
          hint: 'fix the release and push again', status: 502,
        }));
    }
    // The proof after a switch reads nginx's own headers, which come even with a 502: check the
    // previous slot answers before sending traffic back to it.
    if (!await slots.answers(app, previousSlot)) {
      state.setReleaseState(app, releaseId, 'bad');
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('watch_failed_previous_unhealthy',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}), and the previous slot ${previousSlot} does not answer its health check either, so traffic stays`, {
          hint: 'fix the release and push again, or deploy a known good one: deploy rollback --to <sha>', status: 502,
        }));
    }
    try {
      // The step's duration is the time from the failed verdict to the old slot proven serving.
      await j.step('swap_back', () => this.deps.traffic.switchTraffic(app, previousSlot, previousRelease, { faultPoint: (p) => j.faultPoint(p) }),
        () => `nginx serves ${previousSlot} (${shortSha(previousRelease)}) again`);
    } finally {
      state.setReleaseState(app, releaseId, 'bad');
    }
    await j.compensate(`stop ${slot} and mark ${shortSha(releaseId)} bad`, async () => {
      await slots.stop(app, slot);
      state.setSlot(app, slot, releaseId, 'stopped');
    });
    throw new RolloutStop('rolled_back', 'after_switch', new SlipwayError('watch_failed', `${shortSha(releaseId)} was rolled back: ${reason}`, {
      hint: slots.logHint(app, slot), status: 502,
    }));
  }
}
