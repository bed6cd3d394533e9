import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import type { StateStore, Outcome, DeploymentKind, EventStatus, ReleaseState } from '../state/store.js';
import type { DeploymentResult, FailurePhase } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { Slot } from '../../contract/names.js';
import type { Clock, FaultInjection } from './deps.js';
import type { DeploymentFeed } from './feed.js';
import { publicUrlOf } from './public-address.js';

/** One rollout: what it moves where, and from where. */
export interface Deployment {
  id: number;
  app: string;
  kind: DeploymentKind;
  slot: Slot;
  releaseId: string;
  previousSlot: Slot | null;
  previousRelease: string | null;
  actor: string;
  /** The operator's reason (deploy rollback --reason). */
  note: string | null;
  /** The environment the controller named (null: none). */
  env?: string | null;
  /** The deployment's tag, else the release's manifest tag. */
  tag?: string | null;
  /** The target release's recorded state when the deployment started. */
  targetState: ReleaseState | null;
  /** A rollback back in deploy order marks the release it leaves as rolled back. */
  marksPrevious: boolean;
  /** What a fleet rollout (controller/fleet) asks of this host's part; absent for a single host. */
  fleet?: FleetPart;
}

/** A host's part in a fleet rollout. */
export interface FleetPart {
  rolloutId: string | null;
  /** false: another host of the fleet runs the release phase and the pre-deploy backup. */
  runOnce: boolean;
  /** The watch window's length (a batch's bake), instead of the spec's; null: the spec's. */
  watchMs: number | null;
  /** Keep the previous slot running after a clean window, so the fleet can revert this host by one flip. */
  keepPrevious: boolean;
}

/** Ends a rollout early, carrying its outcome and the phase it leaves the app in. */
export class RolloutStop extends Error {
  constructor(readonly outcome: Exclude<Outcome, 'succeeded'>, readonly phase: FailurePhase, override readonly cause: unknown) {
    super(errorMessage(cause));
  }
}

export interface JournalDeps {
  config: AgentConfig;
  state: StateStore;
  clock: Clock;
  faults: FaultInjection;
  logger: Logger;
}

/**
 * The record of one rollout as it runs: each step's start, end and duration in SQLite and on the
 * progress feed, compensations (which never throw: a failed compensation is recorded and the
 * original failure stands), the test-only fault points, and the final result.
 */
export class StepJournal {
  readonly durations: Record<string, number> = {};

  constructor(private readonly deps: JournalDeps, readonly deployment: Deployment, readonly feed: DeploymentFeed) {}

  /** Aborted, with the reason as a string, when a fleet controller asks this rollout to stop (another host failed). */
  private readonly aborter = new AbortController();

  /** Fires on an abort: wakes the watch window at once (watch.ts). */
  get abortSignal(): AbortSignal {
    return this.aborter.signal;
  }

  /** Why a fleet controller asked this rollout to stop, or null. */
  get abortReason(): string | null {
    return this.aborter.signal.aborted ? String(this.aborter.signal.reason) : null;
  }

  /** Asks this rollout to stop; false when it was asked already (the first reason stands). */
  requestAbort(reason: string): boolean {
    if (this.aborter.signal.aborted) return false;
    this.aborter.abort(reason);
    return true;
  }

  /** Throws rollout_aborted once an abort was asked for (checked before traffic moves). */
  throwIfAborted(): void {
    if (this.abortReason === null) return;
    throw this.abortedError();
  }

  /** The error of a rollout stopped by an abort before traffic moved. */
  abortedError(): SlipwayError {
    return new SlipwayError('rollout_aborted', `${this.deployment.app}: the rollout was aborted before traffic moved: ${this.abortReason ?? 'no reason given'}`, {
      hint: 'the fleet controller reverts every host of the rollout; see deploy history', status: 409,
    });
  }

  /** What a health gate needs to stop at once on an abort (slot-process.ts healthGate). */
  get gateAbort(): { signal: AbortSignal; error: () => Error } {
    return { signal: this.aborter.signal, error: () => this.abortedError() };
  }

  async step<T>(step: string, fn: () => Promise<T>, okMessage: (value: T) => string): Promise<T> {
    await this.faultPoint(step);
    const started = this.deps.clock.now();
    this.deps.state.setDeploymentState(this.deployment.id, step);
    this.emit(step, 'started', null, null);
    try {
      const value = await fn();
      this.durations[step] = this.deps.clock.now() - started;
      this.emit(step, 'ok', okMessage(value), this.durations[step]);
      return value;
    } catch (error) {
      this.durations[step] = this.deps.clock.now() - started;
      this.emit(step, 'failed', errorMessage(error), this.durations[step]);
      throw error;
    }
  }

  /** Parks the rollout forever when fault injection names this point (see FaultInjection). */
  async faultPoint(point: string): Promise<void> {
    if (this.deps.faults.pauseBefore !== point) return;
    this.emit(point, 'info', `paused before ${point} (SLIPWAY_FAULT_PAUSE_BEFORE)`, null);
    await new Promise(() => undefined);
  }

  async compensate(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
      this.emit('compensate', 'ok', what, null);
    } catch (error) {
      const { id, app, slot } = this.deployment;
      this.deps.logger.error({ err: error, deploymentId: id, app, slot }, `compensation failed: ${what}`);
      this.emit('compensate', 'failed', `${what}: ${errorMessage(error)}`, null);
    }
  }

  emit(step: string, status: EventStatus, message: string | null, elapsedMs: number | null): void {
    const row = this.deps.state.addEvent({ deploymentId: this.deployment.id, step, status, message, elapsedMs });
    this.feed.push({ type: 'event', deploymentId: this.deployment.id, step, status, message, at: row.at, elapsedMs });
  }

  /** Records the outcome and returns the result line; the caller publishes it once the lock is free. */
  finish(outcome: Outcome, phase: FailurePhase | null, cause: unknown): DeploymentResult {
    const { state, config } = this.deps;
    const d = this.deployment;
    const reason = cause === null ? null : errorMessage(cause);
    state.finishDeployment(d.id, outcome, reason);
    const appRow = state.app(d.app)!;
    const liveReleaseId = appRow.liveSlot ? state.slot(d.app, appRow.liveSlot).releaseId : null;
    this.deps.logger.info({ deploymentId: d.id, app: d.app, outcome, phase, reason }, 'rollout finished');
    return {
      type: 'result',
      deploymentId: d.id,
      app: d.app,
      kind: d.kind,
      outcome,
      phase,
      slot: d.slot,
      releaseId: d.releaseId,
      liveSlot: appRow.liveSlot,
      liveReleaseId,
      publicUrl: publicUrlOf(config, d.app),
      reason,
      error: cause === null ? null : cause instanceof SlipwayError ? cause.toBody() : { error: 'internal_error', message: errorMessage(cause) },
      stepDurationsMs: this.durations,
    };
  }
}
