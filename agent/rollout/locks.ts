import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { LockRow, StateStore } from '../state/store.js';
import { isStaleLock } from '../state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { Clock } from './deps.js';

/** How long a lock reserved by a controller (before its upload) lasts if no rollout takes it over. */
export const LOCK_RESERVATION_MS = 15 * 60_000;

export interface LockReleaseRequest { lockId?: string; force: boolean; actor: string }

/**
 * Pure: why a lock may not be released without --force, or null when it may. Without force, a
 * stale lock (its agent restarted, or its reservation expired) or the caller's own reservation
 * (same actor, or the lock id it was given) that no rollout has taken over yet can be released; a
 * running rollout's lock and someone else's live reservation need force.
 */
export function lockReleaseRefusal(app: string, lock: LockRow, request: LockReleaseRequest, stale: boolean): SlipwayError | null {
  if (request.force || stale) return null;
  if (lock.deploymentId !== null) {
    return new SlipwayError('lock_in_use', `the lock of ${app} belongs to running deployment ${lock.deploymentId} (${lock.holder}, since ${lock.since})`, {
      hint: 'wait for it to finish (deploy history shows it), or pass --force if you know it is stuck', status: 409,
    });
  }
  const own = request.lockId === lock.lockId || (request.lockId === undefined && lock.holder === request.actor);
  if (own) return null;
  return new SlipwayError('lock_not_yours', `the lock of ${app} is held by ${lock.holder} since ${lock.since}; without --force only a stale lock or your own reservation can be released`, {
    hint: 'if you know its holder is gone: deploy lock release --force', status: 409,
  });
}

/** Pure: the action a reservation is held for: a plain push, or one fleet rollout. */
export function fleetLockAction(rolloutId: string | undefined): string {
  return rolloutId === undefined ? 'deploy' : `fleet:${rolloutId}`;
}

/**
 * The per-app deploy lock: reserved by a controller before its upload, taken over by the rollout
 * it starts, released when the rollout ends. SQLite keeps it, so it outlives the connection.
 */
export class DeployLocks {
  constructor(private readonly deps: {
    state: StateStore; bootId: string; clock: Clock; logger: Logger;
    /** Whether this agent process still runs the deployment (a lock tied to one it does not run is orphaned: see take()). */
    isRunning?: (deploymentId: number) => boolean;
  }) {}

  status(app: string): (LockRow & { stale: boolean }) | null {
    const lock = this.deps.state.lock(app);
    return lock ? { ...lock, stale: this.isStale(lock) } : null;
  }

  /**
   * Reserves the app for a rollout that starts with an upload; the rollout takes the lock over. A
   * fleet rollout reserves under its rollout id (action fleet:<id>), so only a retry of the same
   * rollout takes its reservation over, never another push by the same user.
   */
  reserve(input: { app: string; releaseId: string; actor: string; rolloutId?: string }): LockRow {
    const held = this.deps.state.lock(input.app);
    const action = fleetLockAction(input.rolloutId);
    if (held && held.deploymentId === null && held.holder === input.actor && held.action === action) {
      // The same controller retrying after a dropped connection: its old reservation never started
      // a rollout, so the retry takes it over instead of waiting out the lease.
      this.deps.state.releaseLock(input.app, held.lockId);
      this.deps.logger.info({ app: input.app, lock: held }, 'replaced this caller\'s own unused lock reservation');
    }
    return this.take({
      app: input.app, lockId: randomUUID(), holder: input.actor, action, releaseId: input.releaseId,
      expiresAt: new Date(this.deps.clock.now() + LOCK_RESERVATION_MS).toISOString(), bootId: this.deps.bootId, deploymentId: null,
    });
  }

  /**
   * Releases the app's lock on request. `overridden` says --force was what allowed it: someone
   * else's live lock (a running rollout's, or another controller's reservation) was taken away.
   */
  release(app: string, request: LockReleaseRequest): { released: boolean; lock: LockRow | null; overridden: boolean } {
    const lock = this.deps.state.lock(app) ?? null;
    if (!lock) return { released: false, lock: null, overridden: false };
    const stale = this.isStale(lock);
    const refusal = lockReleaseRefusal(app, lock, request, stale);
    if (refusal) throw refusal;
    const overridden = lockReleaseRefusal(app, lock, { ...request, force: false }, stale) !== null;
    this.deps.state.releaseLock(app, lock.lockId);
    this.deps.logger.warn({ app, lock, by: request.actor, force: request.force, stale, overridden }, 'deploy lock released by request');
    return { released: true, lock, overridden };
  }

  /** Takes the lock for a rollout (over the caller's reservation when `lockId` names it). */
  takeForRollout(input: { app: string; lockId?: string; actor: string; action: string; releaseId: string }): LockRow {
    return this.take({
      app: input.app, lockId: input.lockId ?? randomUUID(), holder: input.actor, action: input.action, releaseId: input.releaseId,
      expiresAt: null, bootId: this.deps.bootId, deploymentId: null,
    });
  }

  /** Ties a taken lock to the deployment that now runs under it: it no longer expires. */
  attach(lock: LockRow, deploymentId: number): void {
    this.deps.state.acquireLock({ ...lock, deploymentId }, new Date(this.deps.clock.now()));
  }

  /**
   * A fleet host's lock when its part of the rollout ends: kept, as a reservation of the same id
   * that expires like any reservation, so the fleet controller holds the host until the whole
   * rollout ends (and a crashed controller's hold lapses by the usual rule).
   */
  keepAsReservation(lock: LockRow, rolloutId: string | null): void {
    this.deps.state.acquireLock({
      ...lock, action: fleetLockAction(rolloutId ?? undefined), deploymentId: null, expiresAt: new Date(this.deps.clock.now() + LOCK_RESERVATION_MS).toISOString(),
    }, new Date(this.deps.clock.now()));
  }

  /** Releases the lock if `lockId` still holds it. */
  drop(app: string, lockId: string): void {
    this.deps.state.releaseLock(app, lockId);
  }

  /** Gives back a reservation a refused request named, so a refusal never leaves the app locked. */
  dropReservation(app: string, lockId: string | undefined): void {
    const lock = lockId === undefined ? undefined : this.deps.state.lock(app);
    if (lock && lock.lockId === lockId && lock.deploymentId === null) {
      this.deps.state.releaseLock(app, lockId);
      this.deps.logger.info({ app, lock }, 'released the lock reservation of a refused deployment');
    }
  }

  private take(lock: Omit<LockRow, 'since'>): LockRow {
    const result = this.deps.state.acquireLock(lock, new Date(this.deps.clock.now()));
    if (!result.ok) {
      const held = result.held;
      const what = `${lock.app} is locked by ${held.holder} since ${held.since} for ${held.action}${held.releaseId ? ` of ${shortSha(held.releaseId)}` : ''}`;
      if (this.isOrphaned(held)) {
        // Its rollout ended but the end could not be written (rollout.ts begin(): a full disk, say),
        // so neither the outcome nor the lock's release was recorded. Waiting would never end.
        throw new SlipwayError('app_locked', `${what}: deployment #${held.deploymentId} ended, but this agent could not record how, so its lock was never released`, {
          hint: 'the agent\'s log says why (e.g. a full disk): make room on the host, then restart the agent, which settles the deployment by what nginx serves and frees the lock; deploy lock release --force frees the lock alone',
          status: 409,
        });
      }
      throw new SlipwayError('app_locked', what, {
        hint: 'wait for it (deploy push --wait), or check it with: deploy lock status', status: 409,
      });
    }
    if (result.replaced) this.deps.logger.warn({ app: lock.app, stale: result.replaced }, 'took over a stale deploy lock');
    return result.lock;
  }

  /** Tied to a deployment of this agent process that no longer runs (its end could not be recorded). */
  private isOrphaned(lock: LockRow): boolean {
    return lock.deploymentId !== null && lock.bootId === this.deps.bootId && this.deps.isRunning !== undefined && !this.deps.isRunning(lock.deploymentId);
  }

  private isStale(lock: LockRow): boolean {
    return isStaleLock(lock, this.deps.bootId, new Date(this.deps.clock.now()));
  }
}
