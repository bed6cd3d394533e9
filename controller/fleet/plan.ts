import type { DeploymentResult } from '../../contract/api.js';
import { EXIT, type ExitCode } from '../errors.js';
import { batchSizeFor, type Rollout } from './target.js';

/** One batch of a fleet push: the hosts switched together, and how long they are watched. */
export interface Batch {
  hosts: string[];
  /** The batch's window: the bake for every batch but the last; null: the release's full window. */
  watchMs: number | null;
  /** The last batch: watched for the full window (rollout.window, else the release's). */
  last: boolean;
}

export interface PushPlan {
  /** Hosts already serving the release (with this environment's overrides): left alone. */
  unchanged: string[];
  batches: Batch[];
  /** The host that runs the release phase and the pre-deploy backup, or null when it already serves the release. */
  runOnceHost: string | null;
}

/**
 * Pure: the batches of a fleet push. Hosts already on the release are left out (a rerun after a
 * partial rollout goes on where it stopped); the primary goes first, in the first batch, the rest
 * follow in fleet order; every batch is `rollout.batch` hosts (the last may be smaller). Every batch
 * but the last is watched for the bake; the last for the full window.
 */
export function planPush(hosts: readonly string[], rollout: Pick<Rollout, 'batch' | 'bakeMs' | 'primary'> & Partial<Pick<Rollout, 'windowMs'>>, alreadyLive: ReadonlySet<string>): PushPlan {
  const unchanged = hosts.filter((h) => alreadyLive.has(h));
  const todo = hosts.filter((h) => !alreadyLive.has(h));
  const primaryTodo = todo.includes(rollout.primary);
  const ordered = primaryTodo ? [rollout.primary, ...todo.filter((h) => h !== rollout.primary)] : todo;
  const size = batchSizeFor(rollout.batch, Math.max(1, hosts.length));
  const batches: Batch[] = [];
  for (let i = 0; i < ordered.length; i += size) batches.push({ hosts: ordered.slice(i, i + size), watchMs: rollout.bakeMs, last: false });
  if (batches.length > 0) Object.assign(batches[batches.length - 1]!, { watchMs: rollout.windowMs ?? null, last: true });
  return { unchanged, batches, runOnceHost: primaryTodo ? rollout.primary : null };
}

/** Where one host's part of a fleet push ended. */
export type HostOutcome =
  | 'unchanged' // already on the release: nothing done
  | 'succeeded' // switched, its window passed
  | 'not_started' // a later batch, never started because an earlier host failed
  | 'failed' // refused or failed before its switch: still on the previous release
  | 'swapped_back' // switched, failed or was aborted, and its agent swapped it back
  | 'reverted' // switched, its window passed, then reverted by the fleet (one flip)
  | 'revert_failed' // switched and could not be reverted: serving the new release
  | 'failed_after_switch' // switched, failed, and its agent could not swap back
  | 'in_doubt' // the link was lost while its rollout ran: it finishes or swaps back on its own
  | 'skipped'; // unreachable before the rollout and left out (--skip-unreachable)

/** Pure: how one host's deployment result reads for the fleet. */
export function outcomeOfResult(result: Pick<DeploymentResult, 'outcome' | 'phase'>): HostOutcome {
  if (result.outcome === 'succeeded') return 'succeeded';
  if (result.outcome === 'rolled_back') return 'swapped_back';
  return result.phase === 'after_switch' ? 'failed_after_switch' : 'failed';
}

/**
 * Pure: the hosts a failed rollout must flip back itself: those whose part ended succeeded, and
 * those that already served the release before it (so the fleet ends on one release).
 */
export function hostsToRevert(outcomes: ReadonlyMap<string, HostOutcome>): string[] {
  return [...outcomes].filter(([, o]) => o === 'succeeded' || o === 'unchanged').map(([h]) => h);
}

/** Outcomes after which a failed rollout's host serves the release it served before (or is left to its agent). */
const BACK_ON_PREVIOUS: ReadonlySet<HostOutcome> = new Set(['not_started', 'failed', 'swapped_back', 'reverted', 'skipped', 'in_doubt']);

/** Pure: the fleet's verdict and exit code from every host's outcome. */
export function fleetVerdict(outcomes: ReadonlyMap<string, HostOutcome>): { outcome: 'succeeded' | 'rolled_back' | 'failed'; exitCode: ExitCode } {
  const all = [...outcomes.values()];
  if (all.every((o) => o === 'succeeded' || o === 'unchanged' || o === 'skipped')) return { outcome: 'succeeded', exitCode: EXIT.ok };
  const switched = all.some((o) => o === 'swapped_back' || o === 'reverted' || o === 'in_doubt');
  if (all.every((o) => BACK_ON_PREVIOUS.has(o))) {
    return { outcome: switched ? 'rolled_back' : 'failed', exitCode: switched ? EXIT.rolledBack : EXIT.failedBeforeSwitch };
  }
  return { outcome: 'failed', exitCode: EXIT.failedAfterSwitch };
}
