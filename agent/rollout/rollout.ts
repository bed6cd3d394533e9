import type { Logger } from 'pino';
import type { LockRow, DeploymentKind } from '../state/store.js';
import { otherSlot, type Slot } from '../../contract/names.js';
import { NO_FAULTS, systemClock, type Clock, type FaultInjection, type NginxRenderInput } from './deps.js';
import { checkSwitchTarget, EntryChecks } from './entry.js';
import { DeploymentFeed } from './feed.js';
import { RolloutStop, StepJournal, type Deployment, type FleetPart } from './journal.js';
import { SlipwayError } from '../../contract/errors.js';
import { DeployLocks } from './locks.js';
import { SlotProcesses } from './slot-process.js';
import { chooseTargetSlot } from './slots.js';
import { TrafficSwitch, type TrafficDeps } from './traffic.js';
import { planRollback, previousRelease } from './rollback-plan.js';
import { ActivationSteps, type ActivationDeps } from './activation.js';
import type { RolloutNotices } from '../notify/notices.js';
import type { SpecOverrides } from '../../contract/spec-overrides.js';
import type { PromotionInfo } from '../../contract/api.js';

/** Pure: only the target fields a request has. */
function targetOf(input: DeploymentTarget): DeploymentTarget {
  return {
    ...(input.env !== undefined ? { env: input.env } : {}),
    ...(input.specOverrides !== undefined ? { specOverrides: input.specOverrides } : {}),
    ...(input.tag !== undefined ? { tag: input.tag } : {}),
    ...(input.promotion !== undefined ? { promotion: input.promotion } : {}),
  };
}

// The rollout's surface for the rest of the agent.
export type { HealthChecker, NginxRenderInput, ProcessManager, TrafficSwitcher } from './deps.js';
export { probeHostOf, publicUrlOf } from './public-address.js';
export { LOCK_RESERVATION_MS } from './locks.js';

export interface RolloutDeps extends Omit<ActivationDeps, 'clock'> {
  /** Identifies this agent process; locks written by an earlier process are stale. */
  bootId: string;
  hasRelease: (app: string, releaseId: string) => boolean;
  logger: Logger;
  clock?: Clock;
  faults?: FaultInjection;
  /** Deploy notifications (agent/notify): queued in the transactions that record a rollout. */
  notices?: RolloutNotices;
  /** Refuses a release the box cannot run (native addons of another platform) before a rollout starts. */
  admitRelease?: (app: string, releaseId: string) => void;
}

/** What the agent hands the rollout; the slot processes and the traffic switch are built from it. */
export type RolloutWiring = Omit<RolloutDeps, 'slots' | 'traffic'> & {
  releaseDir: (app: string, releaseId: string) => string;
  renderNginx: (input: NginxRenderInput) => string;
  /** Request headers of the agent's probes through nginx (agent/nginx/probe-secret.ts). */
  probeHeaders?: Record<string, string>;
  portInUse?: (port: number) => Promise<boolean>;
  portWaitMs?: number;
  /** The app's HTTPS as its include renders it (agent/tls). */
  tls?: TrafficDeps['tls'];
};

/** What crash recovery uses of the rollout's parts: the traffic switch and starting a slot. */
export interface RecoveryActions {
  switchTraffic: TrafficSwitch['switchTraffic'];
  startRelease: SlotProcesses['startRelease'];
}

/** Builds the rollout and the two parts crash recovery shares with it. */
export function createRollouts(wiring: RolloutWiring): { rollouts: RolloutService; slots: SlotProcesses; traffic: TrafficSwitch } {
  const { releaseDir, renderNginx, portInUse, portWaitMs, tls, probeHeaders, ...rest } = wiring;
  const slots = new SlotProcesses({ ...rest, releaseDir, ...(portInUse ? { portInUse } : {}), ...(portWaitMs !== undefined ? { portWaitMs } : {}) });
  const traffic = new TrafficSwitch({ ...rest, renderNginx, slots, ...(tls ? { tls } : {}), ...(probeHeaders ? { probeHeaders } : {}) });
  return { rollouts: new RolloutService({ ...rest, slots, traffic }), slots, traffic };
}

/** What a request says of its environment: recorded on the deployment; the overrides become the app's. */
export interface DeploymentTarget { env?: string; specOverrides?: SpecOverrides; tag?: string; promotion?: PromotionInfo }

/**
 * What a fleet controller adds to a deploy or switch request (all optional; none for a single host):
 * the rollout id, whether this host runs the run-once work, the batch's window, keeping the
 * previous slot warm, and keeping the app's lock (as a reservation of the same id) when it ends.
 */
export interface FleetRequest {
  rolloutId?: string; runOnce?: boolean; watchMs?: number; keepPrevious?: boolean; keepLock?: boolean;
}

/** Pure: the fleet part of a deployment, or undefined when the request has no fleet field. */
export function fleetPartOf(request: FleetRequest): FleetPart | undefined {
  if (request.rolloutId === undefined && request.runOnce === undefined && request.watchMs === undefined && request.keepPrevious === undefined) return undefined;
  return { rolloutId: request.rolloutId ?? null, runOnce: request.runOnce ?? true, watchMs: request.watchMs ?? null, keepPrevious: request.keepPrevious ?? false };
}

interface DeploymentRequest extends DeploymentTarget {
  app: string; kind: DeploymentKind; slot: Slot; releaseId: string; actor: string; lockId?: string | undefined;
  note?: string | null; forced?: boolean; marksPrevious?: boolean; fleet?: FleetPart | undefined; keepLock?: boolean;
}

/**
 * The rollout orchestrator: one place that moves an app's traffic from one release to another,
 * with an explicit compensation for every step, so a failure leaves a healthy slot serving.
 */
export class RolloutService {
  private readonly feeds = new Map<number, DeploymentFeed>();
  /** Rollouts running in this process, by deployment id (what an abort reaches). */
  private readonly running = new Map<number, StepJournal>();
  private readonly locks: DeployLocks;
  private readonly entry: EntryChecks;
  private readonly clock: Clock;
  private readonly steps: ActivationSteps;

  constructor(private readonly deps: RolloutDeps) {
    this.clock = deps.clock ?? systemClock;
    this.steps = new ActivationSteps({ ...deps, clock: this.clock });
    this.locks = new DeployLocks({ state: deps.state, bootId: deps.bootId, clock: this.clock, logger: deps.logger, isRunning: (id) => this.running.has(id) });
    this.entry = new EntryChecks(deps);
  }

  feed(deploymentId: number): DeploymentFeed | undefined {
    return this.feeds.get(deploymentId);
  }

  lockStatus(app: string): (LockRow & { stale: boolean }) | null {
    return this.locks.status(this.entry.requireApp(app));
  }

  reserveLock(input: { app: string; releaseId: string; actor: string; rolloutId?: string }): LockRow {
    this.entry.requireApp(input.app);
    return this.locks.reserve(input);
  }

  releaseLock(input: { app: string; lockId?: string; force: boolean; actor: string }): { released: boolean; lock: LockRow | null } {
    const { released, lock, overridden } = this.locks.release(this.entry.requireApp(input.app), input);
    if (overridden && lock) this.notify(() => this.deps.notices?.lockOverridden?.(lock, input.actor));
    return { released, lock };
  }

  // ---- entry points: validate (nothing changes on a refusal), then start ---------------------

  startDeploy(input: { app: string; releaseId: string; slot?: Slot; actor: string; lockId?: string } & DeploymentTarget & FleetRequest): DeploymentFeed {
    const app = this.entry.requireApp(input.app);
    let slot: Slot;
    try {
      this.entry.requireRelease(app, input.releaseId);
      this.deps.admitRelease?.(app, input.releaseId);
      this.checkOverrides(app, input.releaseId, input.specOverrides);
      slot = chooseTargetSlot(app, this.deps.state.app(app)!.liveSlot, input.slot);
    } catch (error) {
      this.locks.dropReservation(app, input.lockId);
      throw error;
    }
    return this.begin({
      app, kind: 'deploy', slot, releaseId: input.releaseId, actor: input.actor, lockId: input.lockId, ...targetOf(input),
      fleet: fleetPartOf(input), keepLock: input.keepLock ?? false,
    },
      async (j) => {
        await this.steps.startAndSwitch(j);
        await this.steps.watchAndSettle(j);
      });
  }

  /** Points traffic at an already-running slot, after proving it healthy, then watches it; `reason` is recorded as its note. */
  startSwitch(input: { app: string; slot: Slot; actor: string; env?: string; reason?: string; lockId?: string } & FleetRequest): DeploymentFeed {
    const { state } = this.deps;
    const app = this.entry.requireApp(input.app);
    const target = state.slot(app, input.slot);
    const releaseId = checkSwitchTarget(app, input.slot, state.app(app)!.liveSlot, target, target.releaseId ? state.release(app, target.releaseId)?.state : undefined);
    return this.begin({
      app, kind: 'switch', slot: input.slot, releaseId, actor: input.actor, note: input.reason ?? null, ...(input.env ? { env: input.env } : {}),
      lockId: input.lockId, fleet: fleetPartOf(input), keepLock: input.keepLock ?? false,
    }, async (j) => {
      await this.steps.switchTo(j);
      await this.steps.watchAndSettle(j);
    });
  }

  /**
   * Goes back one release in deploy order (or to `to`): one switch when its slot is still warm
   * and healthy, otherwise a start + health gate in the standby slot first; then the watch
   * window, with swap-back, and the settle of a push. The release left is marked rolled back.
   */
  startRollback(input: { app: string; to?: string; force: boolean; reason?: string; actor: string } & DeploymentTarget & Pick<FleetRequest, 'rolloutId' | 'watchMs' | 'keepPrevious'>): DeploymentFeed {
    const { state } = this.deps;
    const app = this.entry.requireApp(input.app);
    const liveSlot = state.app(app)!.liveSlot;
    const liveRelease = liveSlot ? state.slot(app, liveSlot).releaseId : null;
    const plan = planRollback({ app, liveSlot, liveRelease, releases: this.entry.rollbackCandidates(app), to: input.to, force: input.force });
    const standby = liveSlot ? otherSlot(liveSlot) : 'blue';
    const warm = state.slot(app, standby);
    const reuseWarm = warm.releaseId === plan.target && warm.state === 'running';
    if (!reuseWarm) this.deps.admitRelease?.(app, plan.target);
    this.checkOverrides(app, plan.target, input.specOverrides);
    return this.begin({
      app, kind: 'rollback', slot: standby, releaseId: plan.target, actor: input.actor, note: input.reason ?? null, forced: plan.forced,
      marksPrevious: plan.marksLiveRolledBack, ...targetOf(input), fleet: fleetPartOf(input),
    }, async (j) => {
      if (reuseWarm && await this.deps.slots.isOnline(app, standby)) {
        await this.steps.switchTo(j);
      } else {
        if (reuseWarm) j.emit('preflight', 'info', `${this.deps.slots.layout(app, standby).map((p) => p.pm2Name).join(', ')} of ${standby} is not running in PM2 any more: starting it again`, null);
        await this.steps.startAndSwitch(j);
      }
      await this.steps.watchAndSettle(j);
    });
  }

  /** Refuses (nothing changed) overrides that do not fit the release's spec or ask for more than the host allows. */
  private checkOverrides(app: string, releaseId: string, overrides: SpecOverrides | undefined): void {
    if (overrides === undefined) return;
    this.deps.slots.allowedSpecOf(app, releaseId, overrides);
  }

  /**
   * Asks a running rollout of `app` to stop (a fleet controller, when another host failed): before
   * the switch it stops with rollout_aborted and its new slot is stopped; after it, its watch window
   * fails at once and traffic swaps back by one flip (rolled_back). Nothing to abort: deployment_not_found.
   */
  abort(input: { app: string; deploymentId: number; reason: string; actor: string }): { deploymentId: number; aborted: boolean } {
    const journal = this.running.get(input.deploymentId);
    if (!journal || journal.deployment.app !== input.app) {
      throw new SlipwayError('deployment_not_found', `${input.app} has no running deployment ${input.deploymentId}`, {
        hint: 'it may have ended already: see deploy history', status: 404,
      });
    }
    const first = journal.requestAbort(input.reason);
    if (first) {
      journal.emit('abort', 'info', `abort asked by ${input.actor}: ${input.reason}`, null);
      this.deps.logger.warn({ deploymentId: input.deploymentId, app: input.app, by: input.actor, reason: input.reason }, 'rollout abort asked');
    }
    return { deploymentId: input.deploymentId, aborted: first };
  }

  /** The target of a plain rollback (see previousRelease), or null. */
  previousGoodRelease(app: string, liveRelease: string | null): string | null {
    return previousRelease(this.entry.rollbackCandidates(app), liveRelease);
  }

  /**
   * Takes the lock, records the deployment and runs it in the background. The lock is released
   * before the result is published, so a caller that sees the result can start the next rollout.
   */
  private begin(input: DeploymentRequest, run: (journal: StepJournal) => Promise<void>): DeploymentFeed {
    const lock = this.locks.takeForRollout({ app: input.app, lockId: input.lockId, actor: input.actor, action: input.kind, releaseId: input.releaseId });
    let journal: StepJournal;
    try {
      journal = this.open(input);
      this.locks.attach(lock, journal.deployment.id);
      this.running.set(journal.deployment.id, journal);
    } catch (error) {
      this.locks.drop(input.app, lock.lockId);
      throw error;
    }
    const { deployment, feed } = journal;
    this.deps.logger.info({ deploymentId: deployment.id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, actor: input.actor }, 'rollout started');
    // The outcome and the lock's release are one transaction: whoever sees the rollout ended (a
    // client reading history, a --wait loop) finds the lock free.
    const end = (...args: Parameters<StepJournal['finish']>) => this.deps.state.transaction(() => {
      const result = journal.finish(...args);
      this.notify(() => this.deps.notices?.ended(deployment, result));
      this.running.delete(deployment.id);
      if (input.keepLock) this.locks.keepAsReservation(lock, input.fleet?.rolloutId ?? null);
      else this.releaseRolloutLock(input.app, lock.lockId);
      return result;
    });
    this.notify(() => this.deps.notices?.started(deployment));
    void run(journal)
      .then(() => end('succeeded', null, null), (error: unknown) => {
        const stop = error instanceof RolloutStop ? error : new RolloutStop('failed', 'before_switch', error);
        return end(stop.outcome, stop.phase, stop.cause);
      })
      .then((result) => feed.push(result))
      .catch((error: unknown) => {
        // The end is not recorded (e.g. SQLITE_FULL): the streams end without a result (the
        // outcome is unknown; clients say so), before anything here that writes and may fail again.
        // The deployment stays unfinished until the next agent start settles it (recovery.ts).
        feed.abandon();
        this.running.delete(deployment.id);
        this.deps.logger.error({ err: error, deploymentId: deployment.id }, 'could not record the end of a rollout');
        this.releaseRolloutLock(input.app, lock.lockId);
      })
      // Keep finished feeds briefly so a slow client can still read the result.
      .finally(() => setTimeout(() => this.feeds.delete(deployment.id), 60_000).unref());
    return feed;
  }

  /** Records the deployment with what it moves from and to, and opens its journal and feed. */
  private open(input: DeploymentRequest): StepJournal {
    const { state } = this.deps;
    const previousSlot = state.app(input.app)!.liveSlot;
    const previousRelease = previousSlot ? state.slot(input.app, previousSlot).releaseId : null;
    const targetState = state.release(input.app, input.releaseId)?.state ?? null;
    const note = input.note ?? null;
    const marksPrevious = input.marksPrevious ?? false;
    const env = input.env ?? null;
    const tag = input.tag ?? state.release(input.app, input.releaseId)?.manifest.tag ?? null;
    const id = state.transaction(() => {
      // The overrides become the app's (checked at entry): from now on every effective spec of it uses them.
      if (input.specOverrides !== undefined) state.setAppOverrides(input.app, env, input.specOverrides);
      return state.createDeployment({
        app: input.app, kind: input.kind, releaseId: input.releaseId, slot: input.slot, previousSlot, previousRelease, requestedBy: input.actor,
        note, forced: input.forced ?? false, targetState, marksPrevious, env, tag, promotion: input.promotion ?? null,
        rolloutId: input.fleet?.rolloutId ?? null,
      });
    });
    const deployment: Deployment = {
      id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, previousSlot, previousRelease, actor: input.actor,
      note, targetState, marksPrevious, env, tag, ...(input.fleet ? { fleet: input.fleet } : {}),
    };
    const feed = new DeploymentFeed(id);
    this.feeds.set(id, feed);
    return new StepJournal({ ...this.deps, clock: this.clock, faults: this.deps.faults ?? NO_FAULTS }, deployment, feed);
  }

  /** A notification that cannot be queued is logged; it never fails the rollout it reports. */
  private notify(queue: () => void): void {
    try {
      queue();
    } catch (error) {
      this.deps.logger.error({ err: error }, 'could not queue a deploy notification');
    }
  }

  private releaseRolloutLock(app: string, lockId: string): void {
    try {
      this.locks.drop(app, lockId);
    } catch (error) {
      // e.g. SQLITE_FULL: the lock stays until it is released by hand or the agent restarts.
      this.deps.logger.error({ err: error, app }, 'could not release the deploy lock');
    }
  }
}
