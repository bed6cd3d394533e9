import type { AgentConfig } from '../config.js';
import type { StateStore } from '../state/store.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { Clock, HealthChecker, ProcessManager, TrafficSwitcher } from './deps.js';
import { fleetActivation, planActivation } from './activation-plan.js';
import { RolloutStop, type StepJournal } from './journal.js';
import type { SlotProcesses } from './slot-process.js';
import type { TrafficSwitch } from './traffic.js';
import { watchChecks, type SmokeChecks } from './watch-checks.js';
import { watchWindow, type WatchVerdict } from './watch.js';
import type { PrepareRelease } from './release-preparation.js';

export interface ActivationDeps {
  config: AgentConfig;
  state: StateStore;
  processes: ProcessManager;
  nginx: TrafficSwitcher;
  health: HealthChecker;
  slots: SlotProcesses;
  traffic: TrafficSwitch;
  /** Runs the app's pre-deploy backup job; throws unless the backup was written and verified. */
  runBackup?: (job: string, deploymentId: number, actor: string) => Promise<{ id: number }>;
  /** Host build and release phase of a release with a spec (release-preparation.ts); after the backup, before any start. */
  prepareRelease?: PrepareRelease;
  /** The release's smoke checks, run in every watch round (smoke.ts). */
  smokeChecks?: SmokeChecks;
  clock: Clock;
}

/**
 * The steps that move an app's traffic, each with its compensation: start and health-gate a
 * slot, switch to it, watch it, swap back or settle. A failure before the switch leaves the live
 * slot untouched; after it, traffic goes back to the previous slot when that slot still answers.
 */
export class ActivationSteps {
  constructor(private readonly deps: ActivationDeps) {}

  /** Start the release in the target slot, gate it on health, switch nginx to it. */
  async startAndSwitch(j: StepJournal): Promise<void> {
    const d = j.deployment;
    const { slots } = this.deps;
    let slotTouched = false;
    let singletons: { slot: Slot; releaseId: string; processes: string[] } | null = null;
    try {
      const env = await this.prepare(j);
      slotTouched = true;
      singletons = await this.stopLiveSingletons(j);
      await j.step('starting', () => slots.start(d, env), (layout) => `started ${layout.map((p) => `${p.pm2Name}${p.port !== null ? ` on port ${p.port}` : ''}${p.instances > 1 ? ` (${p.instances} instances)` : ''}`).join(', ')}`);
      await j.step('healthy', () => slots.healthGate(d, j.gateAbort), (attempts) => `healthy after ${attempts} check(s)`);
      j.throwIfAborted();
    } catch (error) {
      // A failure in preflight or the backup has touched nothing: the standby slot keeps running.
      if (slotTouched) await this.stopNewSlot(j, 'failed');
      if (singletons) await this.restartSingletons(j, singletons);
      throw new RolloutStop('failed', 'before_switch', error);
    }
    try {
      await this.switchStep(j);
    } catch (error) {
      // nginx restored its last good config itself; the new slot never got traffic.
      await this.stopNewSlot(j, 'stopped');
      if (singletons) await this.restartSingletons(j, singletons);
      throw new RolloutStop('failed', 'before_switch', error);
    }
  }

  /**
   * Singleton workers run once: the live slot's copies stop before the new slot starts (the
   * trade-off: no copy runs until the new one is up). Nothing to do, and no step, without any.
   */
  private async stopLiveSingletons(j: StepJournal): Promise<{ slot: Slot; releaseId: string; processes: string[] } | null> {
    const d = j.deployment;
    const { state, slots } = this.deps;
    const live = state.app(d.app)!.liveSlot;
    if (!live || live === d.slot) return null;
    const liveRelease = state.slot(d.app, live).releaseId;
    if (!liveRelease || !slots.layout(d.app, live).some((p) => p.singleton)) return null;
    const processes = await j.step('singletons', () => slots.stopSingletons(d.app, live), (names) => `stopped singleton ${names.join(', ')} of live ${live}`);
    return { slot: live, releaseId: liveRelease, processes };
  }

  /** Compensation: the live slot's singletons run again when the new slot did not take over. */
  private restartSingletons(j: StepJournal, stopped: { slot: Slot; releaseId: string; processes: string[] }): Promise<void> {
    const { app } = j.deployment;
    return j.compensate(`start singleton ${stopped.processes.join(', ')} of ${stopped.slot} again`, async () => {
      const env = await this.deps.slots.appEnv(app, stopped.releaseId);
      await this.deps.slots.start({ app, slot: stopped.slot, releaseId: stopped.releaseId }, env, { only: stopped.processes });
    });
  }

  /** Preflight (nginx runs, the env file reads) and the pre-deploy backup: no change made yet. */
  private async prepare(j: StepJournal): Promise<Record<string, string>> {
    const d = j.deployment;
    const env = await j.step('preflight', async () => {
      // The release's spec against the host's policy, as at upload: the policy may have changed since.
      this.deps.slots.allowedSpecOf(d.app, d.releaseId);
      // No PM2 change is made unless nginx can take the switch afterwards.
      await this.deps.nginx.checkMasterRunning();
      return this.deps.slots.appEnv(d.app, d.releaseId);
    }, () => 'nginx is running, env file read');
    const backupJob = this.deps.config.apps[d.app]!.backupBeforeDeploy;
    // In a fleet, only the primary host runs the run-once work (the backup here, the release phase in prepareRelease).
    if (backupJob && d.kind === 'deploy' && d.fleet?.runOnce === false) {
      j.emit('backup', 'info', `the fleet's primary host runs the pre-deploy backup (${backupJob}): not here`, null);
    } else if (backupJob && d.kind === 'deploy') {
      const runBackup = this.deps.runBackup;
      if (!runBackup) throw new SlipwayError('backups_unavailable', `${d.app} declares backupBeforeDeploy but backups are not set up`, { status: 500 });
      await j.step('backup', () => runBackup(backupJob, d.id, d.actor), (backup) => `backup ${backup.id} of ${backupJob} written and verified`);
    }
    if (this.deps.prepareRelease) await this.deps.prepareRelease(j, env);
    return env;
  }

  /** Compensation: the new slot never served; a slot that failed to start or pass health marks its release failed. */
  private stopNewSlot(j: StepJournal, as: 'failed' | 'stopped'): Promise<void> {
    const { app, slot, releaseId } = j.deployment;
    const { state } = this.deps;
    return j.compensate('stop the new slot', async () => {
      await this.deps.slots.stop(app, slot);
      state.transaction(() => {
        state.setSlot(app, slot, releaseId, as);
        if (as === 'failed') state.setReleaseState(app, releaseId, 'failed');
      });
    });
  }

  /** Moves traffic to a slot that already runs its release, after a fresh health check. */
  async switchTo(j: StepJournal): Promise<void> {
    try {
      await j.step('preflight', async () => {
      this.deps.slots.allowedSpecOf(j.deployment.app, j.deployment.releaseId);
      await this.deps.nginx.checkMasterRunning();
    }, () => 'nginx is running');
      await j.step('healthy', () => this.deps.slots.healthGate(j.deployment, j.gateAbort), (attempts) => `healthy after ${attempts} check(s)`);
      j.throwIfAborted();
      await this.switchStep(j);
    } catch (error) {
      throw new RolloutStop('failed', 'before_switch', error);
    }
  }

  private async switchStep(j: StepJournal): Promise<void> {
    const d = j.deployment;
    const { state } = this.deps;
    // Recorded with the new live slot, in one transaction: a user's activation ends a rolled-back
    // mark; a push sets the deploy order; a rollback back in deploy order marks the release it leaves.
    const record = () => {
      state.clearRolledBack(d.app, d.releaseId);
      if (d.kind === 'deploy') state.markReleaseDeployed(d.app, d.releaseId, d.id);
      if (d.marksPrevious && d.previousRelease && d.previousRelease !== d.releaseId) {
        state.markRolledBack(d.app, d.previousRelease, { by: d.actor, reason: d.note });
      }
    };
    await j.step('switching', () => this.deps.traffic.switchTraffic(d.app, d.slot, d.releaseId, { faultPoint: (p) => j.faultPoint(p), record }),
      ({ provenOverHttp, appliedGeneration }) => `nginx serves ${d.slot} (${shortSha(d.releaseId)})${provenOverHttp ? '' : '; the release has no routes, so nothing was proven over HTTP'}`
        + (!provenOverHttp ? '' : appliedGeneration === null ? '; routes unchanged: no nginx reload' : `; routes changed: nginx config generation ${appliedGeneration} tested, reloaded and proven`));
  }

  /**
   * The watch window: traffic through nginx, the slot's health endpoint and PM2's restart count,
   * checked until the window ends. A failure swaps nginx back to the previous (still running)
   * slot; a clean window settles (stops the previous slot) and may clear a bad mark.
   */
  async watchAndSettle(j: StepJournal): Promise<void> {
    const d = j.deployment;
    const { state } = this.deps;
    const watch = this.deps.slots.specOf(d.app, d.releaseId).spec.watch;
    const plan = fleetActivation(planActivation(d.kind, d.targetState, watch), d.fleet);
    if (d.targetState === 'bad') state.setBadMark(d.id, 'kept');
    // An abort that came after the switch, with no window to cut short, still swaps back.
    if (plan.windowMs > 0 || j.abortReason !== null) {
      // An abort makes the swap-back certain: the previous slot's health check starts as it comes,
      // beside the window's wind-down, not after it (a fleet's revert time, issue 15).
      let previousCheck: Promise<boolean> | null = null;
      const startCheck = () => { previousCheck ??= this.previousAnswers(j); };
      j.abortSignal.addEventListener('abort', startCheck, { once: true });
      if (j.abortSignal.aborted) startCheck();
      let verdict: WatchVerdict;
      try {
        verdict = await this.watchStep(j, plan.windowMs);
      } finally {
        j.abortSignal.removeEventListener('abort', startCheck);
      }
      if (!verdict.ok) await this.swapBackOrStop(j, verdict.reason ?? 'a watch check failed', previousCheck);
    }
    if (plan.clearsBadMark) {
      state.transaction(() => {
        state.setReleaseState(d.app, d.releaseId, 'good');
        state.setBadMark(d.id, 'cleared');
      });
      j.emit('watching', 'info', `${shortSha(d.releaseId)} was marked bad; a clean ${Math.round(plan.windowMs / 1000)} s window after going live again clears the mark`, null);
    }
    const previous = d.previousSlot;
    if (plan.settle && !watch.keepPreviousWarm && previous && previous !== d.slot) {
      // The new release passed its window: a previous slot that cannot be stopped is recorded as
      // still running (the next rollout replaces it) and does not undo the rollout.
      await j.step('settle', async () => {
        await this.deps.slots.stop(d.app, previous);
        state.setSlotState(d.app, previous, 'stopped');
      }, () => `stopped the previous slot ${previous}`).catch(() => undefined);
    }
  }

  private async watchStep(j: StepJournal, windowMs: number): Promise<WatchVerdict> {
    const d = j.deployment;
    const watch = this.deps.slots.specOf(d.app, d.releaseId).spec.watch;
    const baselineRestarts = await this.deps.slots.restarts(d.app, d.slot);
    let lastReport = 0;
    return j.step('watching', () => watchWindow({
      windowMs,
      intervalMs: watch.intervalMs,
      threshold: watch.failuresToRollback,
      clock: this.deps.clock,
      runChecks: () => watchChecks(this.deps, d, baselineRestarts),
      signal: j.abortSignal,
      onRound: (round, roundVerdict, elapsedMs) => {
        if (roundVerdict.failingRounds > 0) {
          j.emit('watching', 'info', `check failing: ${round.filter((c) => !c.ok).map((c) => `${c.name} ${c.detail}`).join('; ')}`, elapsedMs);
        } else if (elapsedMs - lastReport >= 5_000) {
          lastReport = elapsedMs;
          j.emit('watching', 'info', `${Math.round(elapsedMs / 1000)}/${Math.round(windowMs / 1000)} s: traffic, health and process checks pass`, elapsedMs);
        }
      },
    }), (v) => (v.ok ? `${Math.round(windowMs / 1000)} s window passed` : `failed: ${v.reason}`));
  }

  /** Whether the slot a swap-back would go to answers its health check (false when there is none). */
  private previousAnswers(j: StepJournal): Promise<boolean> {
    const { app, slot, previousSlot, previousRelease } = j.deployment;
    if (!previousSlot || !previousRelease || previousSlot === slot) return Promise.resolve(false);
    const check = this.deps.slots.answers(app, previousSlot);
    // Awaited by the swap-back, which reports a failure; unused when the window passes after all.
    check.catch(() => undefined);
    return check;
  }

  /** A swap-back that fails leaves traffic where it was after the switch: never "before the switch". */
  private async swapBackOrStop(j: StepJournal, reason: string, previousCheck: Promise<boolean> | null): Promise<never> {
    try {
      return await this.swapBack(j, reason, previousCheck);
    } catch (error) {
      if (error instanceof RolloutStop) throw error;
      const { app, slot, releaseId, previousSlot } = j.deployment;
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('swap_back_failed',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}), and moving traffic back to ${previousSlot} failed: ${errorMessage(error)}`, {
          hint: 'check what nginx serves with: deploy status; then deploy rollback --to <a good release>', status: 502, cause: error,
        }));
    }
  }

  /** `previousCheck`: the previous slot's health check, already started (an abort); null: checked here. */
  private async swapBack(j: StepJournal, reason: string, previousCheck: Promise<boolean> | null): Promise<never> {
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
    if (!await (previousCheck ?? slots.answers(app, previousSlot))) {
      state.setReleaseState(app, releaseId, 'bad');
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('watch_failed_previous_unhealthy',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}), and the previous slot ${previousSlot} does not answer its health check either, so traffic stays`, {
          hint: 'fix the release and push again, or deploy a known good one: deploy rollback --to <sha>', status: 502,
        }));
    }
    try {
      // The step's duration is the time from the failed verdict to the old slot proven serving.
      await j.step('swap_back', () => this.deps.traffic.switchTraffic(app, previousSlot, previousRelease, { faultPoint: (p) => j.faultPoint(p) }),
        ({ provenOverHttp }) => `nginx serves ${previousSlot} (${shortSha(previousRelease)}) again${provenOverHttp ? '' : '; the release has no routes, so nothing was proven over HTTP'}`);
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
