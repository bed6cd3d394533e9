import type { WatchSpec } from '../../contract/spec.js';
import type { DeploymentKind, ReleaseState } from '../state/store.js';

/** The watch window of a rollback or switch unless `watch.activationWindowMs` says otherwise. */
export const ACTIVATION_WINDOW_CAP_MS = 15_000;

export interface ActivationPlan {
  /** How long traffic on the new slot is watched (0: not at all). */
  windowMs: number;
  /** After a clean window, stop the previous slot (unless keepPreviousWarm). */
  settle: boolean;
  /** The target is marked bad: only a clean window may clear the mark. */
  clearsBadMark: boolean;
}

/**
 * Pure: how an activation that moved traffic is watched and settled. Every kind gets the watch
 * window with swap-back. A rollback or switch goes to a release that already passed a window, so
 * it gets a shorter one (`activationWindowMs`, default the push window capped at 15 s); a release
 * marked bad failed a window before, so going back to it gets the full push window. A switch
 * never stops the slot it leaves (switching back and forth is its use); a push and a rollback do.
 */
export function planActivation(kind: DeploymentKind, targetState: ReleaseState | null, watch: WatchSpec): ActivationPlan {
  const shorter = watch.activationWindowMs ?? Math.min(watch.windowMs, ACTIVATION_WINDOW_CAP_MS);
  const windowMs = kind === 'deploy' || targetState === 'bad' ? watch.windowMs : shorter;
  return { windowMs, settle: kind !== 'switch', clearsBadMark: targetState === 'bad' && windowMs > 0 };
}

/**
 * Pure: a fleet host's activation: its window is the batch's (a bake, or the full window after the
 * last batch), and with keepPrevious it never stops the slot it left, so the fleet can revert it by
 * one flip until the next rollout replaces that slot.
 */
export function fleetActivation(plan: ActivationPlan, fleet: { watchMs: number | null; keepPrevious: boolean } | undefined): ActivationPlan {
  if (!fleet) return plan;
  const windowMs = fleet.watchMs ?? plan.windowMs;
  return { windowMs, settle: plan.settle && !fleet.keepPrevious, clearsBadMark: plan.clearsBadMark && windowMs > 0 };
}

/**
 * Pure: the state a release is recorded with once traffic reaches it. Going live makes a release
 * good, except one marked bad: a forced activation keeps the mark, which only a clean watch
 * window clears.
 */
export function releaseStateAfterSwitch(current: ReleaseState | undefined): ReleaseState {
  return current === 'bad' ? 'bad' : 'good';
}
