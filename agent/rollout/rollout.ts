import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import { envFileOf } from '../config.js';
import { readAppEnv } from '../envfile.js';
import type { StateStore, Outcome, LockRow, DeploymentKind } from '../state/store.js';
import { isStaleLock } from '../state/store.js';
import type { DeploymentResult, FailurePhase } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { NO_RELEASE, SLOTS, otherSlot, pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import { chooseTargetSlot } from './slots.js';
import { DeploymentFeed } from './feed.js';
import { watchWindow, type WatchCheck } from './watch.js';
import { waitFor } from '../wait.js';
// Types only: the rollout never loads nginx's modules (nunjucks) itself.
import type { ApplyRequest, FlipRequest, NginxProbe } from '../nginx/controller.js';
import type { AppConfigInput } from '../nginx/render.js';

/** What the rollout needs from PM2 (implemented by Pm2Adapter). */
export interface ProcessManager {
  start(spec: { name: string; script: string; cwd: string; args?: string[]; nodeArgs?: string[]; env: Record<string, string> }): Promise<{ pid: number }>;
  delete(name: string): Promise<void>;
  describe(name: string): Promise<{ status: string; pid: number | null; pmCwd: string | null; restarts: number } | null>;
}

/** What the rollout needs from nginx (implemented by NginxController). */
export interface TrafficSwitcher {
  checkMasterRunning(): Promise<unknown>;
  /** The include on disk (null before the first deploy). */
  currentConfig(app: string): Promise<string | null>;
  /** Writes, `nginx -t`s, reloads and proves an include; restores the previous one on failure. */
  apply(input: ApplyRequest): Promise<unknown>;
  switchDirOf(app: string): string;
  /** Creates the switch flag pointing at `slot` unless one exists; returns the slot it points at. */
  ensureFlag(app: string, slot: Slot): Promise<Slot>;
  /** Moves traffic to `slot` by the switch flag (no reload) and proves it; puts the flag back on failure. */
  flip(input: FlipRequest): Promise<unknown>;
}

/** What an app's nginx include is rendered from, besides the agent config's listen address and server names. */
export type NginxRenderInput = Pick<AppConfigInput, 'app' | 'slot' | 'slots' | 'switchDir' | 'generation'>;

export interface HealthChecker {
  waitHealthy(url: string, options: {
    timeoutMs: number; intervalMs: number; retries: number; expectStatus: number; bodyContains?: string;
  }): Promise<{ ok: boolean; attempts: number; last: { status?: number; error?: string } | undefined }>;
  httpGet(url: string, options: { timeoutMs: number; headers?: Record<string, string> }): Promise<{ status: number; headers: Record<string, string>; body: string }>;
}

export interface RolloutDeps {
  config: AgentConfig;
  state: StateStore;
  /** Identifies this agent process; locks written by an earlier process are stale. */
  bootId: string;
  releaseDir: (app: string, releaseId: string) => string;
  hasRelease: (app: string, releaseId: string) => boolean;
  processes: ProcessManager;
  nginx: TrafficSwitcher;
  health: HealthChecker;
  renderNginx: (input: NginxRenderInput) => string;
  /** Runs the app's pre-deploy backup job; throws unless the backup was written and verified. */
  runBackup?: (job: string, deploymentId: number, actor: string) => Promise<{ id: number }>;
  logger: Logger;
}

/** How long a lock reserved by a controller (before its upload) lasts if no rollout takes it over. */
export const LOCK_RESERVATION_MS = 15 * 60_000;

interface Context {
  id: number;
  app: string;
  kind: DeploymentKind;
  slot: Slot;
  releaseId: string;
  previousSlot: Slot | null;
  previousRelease: string | null;
  lockId: string;
  actor: string;
  /** Set once the target slot's process was replaced: from then on a failure must clean it up. */
  slotTouched?: boolean;
  durations: Record<string, number>;
  feed: DeploymentFeed;
}

/** Ends a rollout early, carrying its outcome and the phase it leaves the app in. */
class RolloutStop extends Error {
  constructor(readonly outcome: Exclude<Outcome, 'succeeded'>, readonly phase: FailurePhase, override readonly cause: unknown) {
    super(errorMessage(cause));
  }
}

export function publicUrlOf(config: AgentConfig, app: string): string {
  const pub = config.apps[app]!.public;
  const host = pub.listenHost === '*' || pub.listenHost === '0.0.0.0' ? '127.0.0.1' : pub.listenHost;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${pub.listenPort}`;
}

/** The Host header that makes nginx pick the app's server block when probing through it. */
export function probeHostOf(config: AgentConfig, app: string): string {
  const name = config.apps[app]!.public.serverNames[0] ?? '_';
  if (name === '_') return 'localhost';
  return name.startsWith('*') ? `probe${name.slice(1)}` : name;
}

/**
 * The rollout orchestrator: one place that moves an app's traffic from one release to another,
 * with an explicit compensation for every step, so a failure leaves a healthy slot serving.
 */
export class RolloutService {
  private readonly feeds = new Map<number, DeploymentFeed>();
  private readonly faultPause = process.env.SLIPWAY_FAULT_PAUSE_BEFORE ?? null;

  constructor(private readonly deps: RolloutDeps) {}

  feed(deploymentId: number): DeploymentFeed | undefined {
    return this.feeds.get(deploymentId);
  }

  // ---- locks -------------------------------------------------------------------------------

  lockStatus(app: string): (LockRow & { stale: boolean }) | null {
    this.requireApp(app);
    const lock = this.deps.state.lock(app);
    return lock ? { ...lock, stale: isStaleLock(lock, this.deps.bootId, new Date()) } : null;
  }

  /** Reserves the app for a rollout that starts with an upload; the rollout takes the lock over. */
  reserveLock(input: { app: string; releaseId: string; actor: string }): LockRow {
    this.requireApp(input.app);
    const held = this.deps.state.lock(input.app);
    if (held && held.deploymentId === null && held.holder === input.actor) {
      // The same controller retrying after a dropped connection: its old reservation never started
      // a rollout, so the retry takes it over instead of waiting out the lease.
      this.deps.state.releaseLock(input.app, held.lockId);
      this.deps.logger.info({ app: input.app, lock: held }, 'replaced this caller\'s own unused lock reservation');
    }
    return this.takeLock({
      app: input.app, lockId: randomUUID(), holder: input.actor, action: 'deploy', releaseId: input.releaseId,
      expiresAt: new Date(Date.now() + LOCK_RESERVATION_MS).toISOString(), bootId: this.deps.bootId, deploymentId: null,
    });
  }

  /**
   * Without `force`, a lock can be released when it is stale (its agent restarted, or its
   * reservation expired), or when it is the caller's own reservation (same actor, or the lock id
   * the caller was given) that no rollout has taken over yet. A running rollout's lock, or someone
   * else's live reservation, needs `force`.
   */
  releaseLock(input: { app: string; lockId?: string; force: boolean; actor: string }): { released: boolean; lock: LockRow | null } {
    this.requireApp(input.app);
    const lock = this.deps.state.lock(input.app) ?? null;
    if (!lock) return { released: false, lock: null };
    const stale = isStaleLock(lock, this.deps.bootId, new Date());
    if (!input.force && !stale) {
      if (lock.deploymentId !== null) {
        throw new SlipwayError('lock_in_use', `the lock of ${input.app} belongs to running deployment ${lock.deploymentId} (${lock.holder}, since ${lock.since})`, {
          hint: 'wait for it to finish (deploy history shows it), or pass --force if you know it is stuck', status: 409,
        });
      }
      const own = input.lockId === lock.lockId || (input.lockId === undefined && lock.holder === input.actor);
      if (!own) {
        throw new SlipwayError('lock_not_yours', `the lock of ${input.app} is held by ${lock.holder} since ${lock.since}; without --force only a stale lock or your own reservation can be released`, {
          hint: 'if you know its holder is gone: deploy lock release --force', status: 409,
        });
      }
    }
    this.deps.state.releaseLock(input.app, lock.lockId);
    this.deps.logger.warn({ app: input.app, lock, by: input.actor, force: input.force, stale }, 'deploy lock released by request');
    return { released: true, lock };
  }

  /** Gives back a reservation a refused request named, so a refusal never leaves the app locked. */
  private dropReservation(app: string, lockId: string | undefined): void {
    const lock = lockId === undefined ? undefined : this.deps.state.lock(app);
    if (lock && lock.lockId === lockId && lock.deploymentId === null) {
      this.deps.state.releaseLock(app, lockId);
      this.deps.logger.info({ app, lock }, 'released the lock reservation of a refused deployment');
    }
  }

  private takeLock(lock: Omit<LockRow, 'since'>): LockRow {
    const result = this.deps.state.acquireLock(lock);
    if (!result.ok) {
      const held = result.held;
      throw new SlipwayError('app_locked', `${lock.app} is locked by ${held.holder} since ${held.since} for ${held.action}${held.releaseId ? ` of ${shortSha(held.releaseId)}` : ''}`, {
        hint: 'wait for it (deploy push --wait), or check it with: deploy lock status', status: 409,
      });
    }
    if (result.replaced) this.deps.logger.warn({ app: lock.app, stale: result.replaced }, 'took over a stale deploy lock');
    return result.lock;
  }

  // ---- entry points ------------------------------------------------------------------------

  /** Validates and starts a deployment; throws (nothing changed) when it cannot start. */
  startDeploy(input: { app: string; releaseId: string; slot?: Slot; actor: string; lockId?: string }): DeploymentFeed {
    const { state } = this.deps;
    const app = this.requireApp(input.app);
    let slot: Slot;
    try {
      this.requireRelease(app, input.releaseId);
      slot = chooseTargetSlot(app, state.app(app)!.liveSlot, input.slot);
    } catch (error) {
      this.dropReservation(app, input.lockId);
      throw error;
    }
    return this.begin({ app, kind: 'deploy', slot, releaseId: input.releaseId, actor: input.actor, ...(input.lockId ? { lockId: input.lockId } : {}) },
      (ctx) => this.runDeploy(ctx));
  }

  /** Points traffic at an already-running slot, after proving it healthy. */
  startSwitch(input: { app: string; slot: Slot; actor: string }): DeploymentFeed {
    const app = this.requireApp(input.app);
    const target = this.deps.state.slot(app, input.slot);
    if (this.deps.state.app(app)!.liveSlot === input.slot) {
      throw new SlipwayError('slot_already_live', `${input.slot} is already the live slot of ${app}`, {
        hint: 'nothing to do; deploy status shows the slots', status: 409,
      });
    }
    if (!target.releaseId || target.state !== 'running') {
      throw new SlipwayError('slot_not_running', `${app}/${input.slot} is ${target.state}${target.releaseId ? ` (release ${shortSha(target.releaseId)})` : ''}; only a running slot can take traffic`, {
        hint: `deploy a release into it first: deploy push --slot ${input.slot}`, status: 409,
      });
    }
    return this.begin({ app, kind: 'switch', slot: input.slot, releaseId: target.releaseId, actor: input.actor }, (ctx) => this.runSwitch(ctx, true));
  }

  /**
   * Goes back to the previous good release (or `to`): one switch when its slot is still warm and
   * healthy, otherwise a start + health gate in the standby slot first.
   */
  startRollback(input: { app: string; to?: string; force: boolean; reason?: string; actor: string }): DeploymentFeed {
    const { state } = this.deps;
    const app = this.requireApp(input.app);
    const appRow = state.app(app)!;
    const liveRelease = appRow.liveSlot ? state.slot(app, appRow.liveSlot).releaseId : null;
    const target = input.to ?? this.previousGoodRelease(app, liveRelease);
    if (!target) {
      throw new SlipwayError('no_previous_release', `${app} has no previous good release to roll back to`, {
        hint: 'list releases with: deploy releases, then: deploy rollback --to <sha>', status: 409,
      });
    }
    const release = this.requireRelease(app, target);
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
    const feed = this.begin({ app, kind: 'rollback', slot: standby, releaseId: target, actor: input.actor }, async (ctx) => {
      if (reuseWarm && await this.isOnline(app, standby)) return this.runSwitch(ctx, false);
      if (reuseWarm) this.emit(ctx, 'preflight', 'info', `${pm2ProcessName(app, standby)} is not running in PM2 any more: starting it again`, null);
      return this.runStartAndSwitch(ctx);
    });
    state.setDeploymentNote(feed.deploymentId, input.reason ?? null);
    return feed;
  }

  /** Whether PM2 runs the slot's process (SQLite may still say "running" after it died or was stopped by hand). */
  private async isOnline(app: string, slot: Slot): Promise<boolean> {
    const proc = await this.deps.processes.describe(pm2ProcessName(app, slot)).catch(() => null);
    return proc?.status === 'online';
  }

  /** The release that was live most recently before the current one, and is not marked bad. */
  previousGoodRelease(app: string, liveRelease: string | null): string | null {
    const candidates = this.deps.state.releases(app)
      .filter((r) => r.releaseId !== liveRelease && r.state === 'good' && r.liveAt !== null && this.deps.hasRelease(app, r.releaseId))
      .sort((a, b) => (b.liveAt ?? '').localeCompare(a.liveAt ?? ''));
    return candidates[0]?.releaseId ?? null;
  }

  private requireApp(app: string): string {
    if (!this.deps.config.apps[app]) {
      throw new SlipwayError('app_not_found', `app ${app} is not configured on this host`, {
        hint: `add it under "apps" in the agent config (configured: ${Object.keys(this.deps.config.apps).join(', ')})`,
        status: 404,
      });
    }
    this.deps.state.ensureApp(app);
    return app;
  }

  private requireRelease(app: string, releaseId: string) {
    const row = this.deps.state.release(app, releaseId);
    if (!row || !this.deps.hasRelease(app, releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${app} is not on this host`, {
        hint: 'upload it first (deploy push does this); deploy releases lists what the host has', status: 404,
      });
    }
    return row;
  }

  private begin(
    input: { app: string; kind: DeploymentKind; slot: Slot; releaseId: string; actor: string; lockId?: string },
    run: (ctx: Context) => Promise<void>,
  ): DeploymentFeed {
    const { state } = this.deps;
    const lock = this.takeLock({
      app: input.app, lockId: input.lockId ?? randomUUID(), holder: input.actor, action: input.kind, releaseId: input.releaseId,
      expiresAt: null, bootId: this.deps.bootId, deploymentId: null,
    });
    let id: number;
    try {
      const appRow = state.app(input.app)!;
      const previousSlot = appRow.liveSlot;
      const previousRelease = previousSlot ? state.slot(input.app, previousSlot).releaseId : null;
      id = state.createDeployment({
        app: input.app, kind: input.kind, releaseId: input.releaseId, slot: input.slot, previousSlot, previousRelease,
        requestedBy: input.actor,
      });
      state.acquireLock({ ...lock, deploymentId: id });
      const feed = new DeploymentFeed(id);
      this.feeds.set(id, feed);
      const ctx: Context = {
        id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, previousSlot, previousRelease,
        lockId: lock.lockId, actor: input.actor, durations: {}, feed,
      };
      this.deps.logger.info({ deploymentId: id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, actor: input.actor }, 'rollout started');
      void run(ctx)
        .then(() => this.finish(ctx, 'succeeded', null, null))
        .catch((error: unknown) => {
          const stop = error instanceof RolloutStop ? error : new RolloutStop('failed', 'before_switch', error);
          return this.finish(ctx, stop.outcome, stop.phase, stop.cause);
        })
        .catch((error: unknown) => this.deps.logger.error({ err: error, deploymentId: id }, 'could not record the end of a rollout'))
        .finally(() => {
          try {
            state.releaseLock(input.app, lock.lockId);
          } catch (error) {
            // e.g. SQLITE_FULL: the lock stays until it is released by hand or the agent restarts.
            this.deps.logger.error({ err: error, app: input.app }, 'could not release the deploy lock');
          }
          // Keep finished feeds briefly so a slow client can still read the result.
          setTimeout(() => this.feeds.delete(id), 60_000).unref();
        });
      return feed;
    } catch (error) {
      state.releaseLock(input.app, lock.lockId);
      throw error;
    }
  }

  // ---- rollout kinds -----------------------------------------------------------------------

  private async runDeploy(ctx: Context): Promise<void> {
    await this.runStartAndSwitch(ctx);
    await this.watchAndSettle(ctx);
  }

  /** Start the release in the target slot, gate it on health, switch nginx to it. */
  private async runStartAndSwitch(ctx: Context): Promise<void> {
    const { app, slot, releaseId } = ctx;
    const appConfig = this.deps.config.apps[app]!;
    try {
      const env = await this.step(ctx, 'preflight', async () => {
        // No PM2 change is made unless nginx can take the switch afterwards.
        await this.deps.nginx.checkMasterRunning();
        return readAppEnv(envFileOf(this.deps.config, app), app, appConfig.requiredEnv);
      }, () => 'nginx is running, env file read');
      const backupJob = appConfig.backupBeforeDeploy;
      if (backupJob && ctx.kind === 'deploy') {
        if (!this.deps.runBackup) throw new SlipwayError('backups_unavailable', `${app} declares backupBeforeDeploy but backups are not set up`, { status: 500 });
        await this.step(ctx, 'backup', () => this.deps.runBackup!(backupJob, ctx.id, ctx.actor), (backup) => `backup ${backup.id} of ${backupJob} written and verified`);
      }
      ctx.slotTouched = true;
      await this.step(ctx, 'starting', () => this.startSlot(ctx, env), () => `${pm2ProcessName(app, slot)} started on port ${appConfig.slots[slot].port}`);
      await this.step(ctx, 'healthy', () => this.healthGate(ctx), (attempts) => `healthy after ${attempts} check(s)`);
    } catch (error) {
      // A failure in preflight or the backup has touched nothing: the standby slot keeps running.
      if (ctx.slotTouched) {
        await this.compensate(ctx, 'stop the new slot', async () => {
          await this.deps.processes.delete(pm2ProcessName(app, slot));
          this.deps.state.transaction(() => {
            this.deps.state.setSlot(app, slot, releaseId, 'failed');
            this.deps.state.setReleaseState(app, releaseId, 'failed');
          });
        });
      }
      throw new RolloutStop('failed', 'before_switch', error);
    }
    try {
      await this.step(ctx, 'switching', () => this.switchTraffic(ctx.app, slot, releaseId, { faultPoint: (p) => this.faultPoint(ctx, p) }),
        () => `nginx serves ${slot} (${shortSha(releaseId)})`);
    } catch (error) {
      // nginx restored its last good config itself; the new slot never got traffic.
      await this.compensate(ctx, 'stop the new slot', async () => {
        await this.deps.processes.delete(pm2ProcessName(app, slot));
        this.deps.state.setSlot(app, slot, releaseId, 'stopped');
      });
      throw new RolloutStop('failed', 'before_switch', error);
    }
  }

  private async runSwitch(ctx: Context, watch: boolean): Promise<void> {
    try {
      await this.step(ctx, 'preflight', () => this.deps.nginx.checkMasterRunning(), () => 'nginx is running');
      await this.step(ctx, 'healthy', () => this.healthGate(ctx), (attempts) => `healthy after ${attempts} check(s)`);
      await this.step(ctx, 'switching', () => this.switchTraffic(ctx.app, ctx.slot, ctx.releaseId, { faultPoint: (p) => this.faultPoint(ctx, p) }),
        () => `nginx serves ${ctx.slot} (${shortSha(ctx.releaseId)})`);
    } catch (error) {
      throw new RolloutStop('failed', 'before_switch', error);
    }
    if (watch) await this.watchAndSettle(ctx, { stopPrevious: false });
  }

  /**
   * The watch window: traffic through nginx, the slot's health endpoint and PM2's restart count,
   * checked until the window ends. A failure swaps nginx back to the previous (still running) slot.
   */
  private async watchAndSettle(ctx: Context, options: { stopPrevious?: boolean } = {}): Promise<void> {
    const { app, slot, releaseId } = ctx;
    const { config, state } = this.deps;
    const appConfig = config.apps[app]!;
    const watch = appConfig.watch;
    if (watch.windowMs > 0) {
      const baseline = await this.deps.processes.describe(pm2ProcessName(app, slot));
      let lastReport = 0;
      const verdict = await this.step(ctx, 'watching', () => watchWindow({
        windowMs: watch.windowMs,
        intervalMs: watch.intervalMs,
        threshold: watch.failuresToRollback,
        runChecks: () => this.watchChecks(app, slot, releaseId, baseline?.restarts ?? 0),
        onRound: (round, roundVerdict, elapsedMs) => {
          if (roundVerdict.failingRounds > 0) {
            this.emit(ctx, 'watching', 'info', `check failing: ${round.filter((c) => !c.ok).map((c) => `${c.name} ${c.detail}`).join('; ')}`, elapsedMs);
          } else if (elapsedMs - lastReport >= 5_000) {
            lastReport = elapsedMs;
            this.emit(ctx, 'watching', 'info', `${Math.round(elapsedMs / 1000)}/${Math.round(watch.windowMs / 1000)} s: traffic, health and process checks pass`, elapsedMs);
          }
        },
      }), (v) => (v.ok ? `${Math.round(watch.windowMs / 1000)} s window passed` : `failed: ${v.reason}`));
      if (!verdict.ok) await this.swapBack(ctx, verdict.reason ?? 'a watch check failed');
    }
    if ((options.stopPrevious ?? true) && !watch.keepPreviousWarm && ctx.previousSlot && ctx.previousSlot !== slot) {
      const previous = ctx.previousSlot;
      await this.step(ctx, 'settle', async () => {
        await this.deps.processes.delete(pm2ProcessName(app, previous));
        state.setSlotState(app, previous, 'stopped');
      }, () => `stopped the previous slot ${previous}`);
    }
  }

  private async watchChecks(app: string, slot: Slot, releaseId: string, baselineRestarts: number): Promise<WatchCheck[]> {
    const { config } = this.deps;
    const appConfig = config.apps[app]!;
    const health = appConfig.health;
    const timeoutMs = Math.min(health.timeoutMs, Math.max(200, appConfig.watch.intervalMs * 2));
    const viaNginx = this.deps.health.httpGet(`${publicUrlOf(config, app)}${health.path}`, { timeoutMs, headers: { host: probeHostOf(config, app) } })
      .then((r): WatchCheck => {
        if (r.status !== health.expectStatus) return { name: 'public', ok: false, detail: `HTTP ${r.status} through nginx` };
        if (r.headers['x-slipway-release'] !== releaseId) return { name: 'public', ok: false, detail: `nginx served release ${r.headers['x-slipway-release'] ?? 'none'}` };
        return { name: 'public', ok: true, detail: 'ok' };
      }, (error: unknown): WatchCheck => ({ name: 'public', ok: false, detail: errorMessage(error) }));
    const direct = this.deps.health.httpGet(`http://127.0.0.1:${appConfig.slots[slot].port}${health.path}`, { timeoutMs })
      .then((r): WatchCheck => ({ name: 'slot', ok: r.status === health.expectStatus, detail: `HTTP ${r.status}` }),
        (error: unknown): WatchCheck => ({ name: 'slot', ok: false, detail: errorMessage(error) }));
    const processCheck = this.deps.processes.describe(pm2ProcessName(app, slot)).then((p): WatchCheck => {
      if (!p) return { name: 'process', ok: false, detail: 'not in PM2' };
      if (p.status !== 'online') return { name: 'process', ok: false, detail: `PM2 status ${p.status}` };
      if (p.restarts > baselineRestarts) return { name: 'process', ok: false, detail: `restarted (restarts ${baselineRestarts} → ${p.restarts})` };
      return { name: 'process', ok: true, detail: 'online' };
    }, (error: unknown): WatchCheck => ({ name: 'process', ok: false, detail: errorMessage(error) }));
    return Promise.all([viaNginx, direct, processCheck]);
  }

  private async swapBack(ctx: Context, reason: string): Promise<never> {
    const { app, slot, releaseId, previousSlot, previousRelease } = ctx;
    const { state } = this.deps;
    if (!previousSlot || !previousRelease || previousSlot === slot) {
      state.setReleaseState(app, releaseId, 'bad');
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('watch_failed_no_previous',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}) and there is no previous slot to swap back to`, {
          hint: 'fix the release and push again', status: 502,
        }));
    }
    // The proof after a switch reads nginx's own headers, which come even with a 502: check the
    // previous slot answers before sending traffic back to it.
    const previousPort = this.deps.config.apps[app]!.slots[previousSlot].port;
    const health = this.deps.config.apps[app]!.health;
    const previousHealthy = await this.deps.health.waitHealthy(`http://127.0.0.1:${previousPort}${health.path}`, {
      timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: 3, expectStatus: health.expectStatus,
    });
    if (!previousHealthy.ok) {
      state.setReleaseState(app, releaseId, 'bad');
      throw new RolloutStop('failed', 'after_switch', new SlipwayError('watch_failed_previous_unhealthy',
        `${app}/${slot}@${shortSha(releaseId)} failed after going live (${reason}), and the previous slot ${previousSlot} does not answer its health check either, so traffic stays`, {
          hint: 'fix the release and push again, or deploy a known good one: deploy rollback --to <sha>', status: 502,
        }));
    }
    // The step's duration is the time from the failed verdict to the old slot proven serving.
    await this.step(ctx, 'swap_back', () => this.switchTraffic(app, previousSlot, previousRelease, { faultPoint: (p) => this.faultPoint(ctx, p) }),
      () => `nginx serves ${previousSlot} (${shortSha(previousRelease)}) again`);
    state.setReleaseState(app, releaseId, 'bad');
    await this.compensate(ctx, `stop ${slot} and mark ${shortSha(releaseId)} bad`, async () => {
      await this.deps.processes.delete(pm2ProcessName(app, slot));
      state.setSlot(app, slot, releaseId, 'stopped');
    });
    throw new RolloutStop('rolled_back', 'after_switch', new SlipwayError('watch_failed', `${shortSha(releaseId)} was rolled back: ${reason}`, {
      hint: `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${pm2ProcessName(app, slot)} --lines 50`, status: 502,
    }));
  }

  // ---- steps -------------------------------------------------------------------------------

  /** Starts a release in a slot outside any rollout (crash recovery restores the live slot this way). */
  async startRelease(app: string, slot: Slot, releaseId: string): Promise<void> {
    const appConfig = this.deps.config.apps[app]!;
    const env = await readAppEnv(envFileOf(this.deps.config, app), app, appConfig.requiredEnv);
    await this.startSlot({ app, slot, releaseId }, env);
  }

  private async startSlot(ctx: Pick<Context, 'app' | 'slot' | 'releaseId'>, appEnv: Record<string, string>): Promise<void> {
    const { app, slot, releaseId } = ctx;
    const appConfig = this.deps.config.apps[app]!;
    const port = appConfig.slots[slot].port;
    const name = pm2ProcessName(app, slot);
    // PM2 resolves a symlinked cwd once; give it the real release dir so pm_cwd names the release.
    const dir = await fs.realpath(this.deps.releaseDir(app, releaseId));
    const script = path.resolve(dir, appConfig.start.script);
    if (!script.startsWith(dir + path.sep)) {
      throw new SlipwayError('start_script_invalid', `start script of ${app} leaves the release dir`, { hint: `fix apps.${app}.start.script`, status: 400 });
    }
    try {
      await fs.access(script);
    } catch {
      throw new SlipwayError('start_script_missing', `release ${shortSha(releaseId)} of ${app} has no ${appConfig.start.script}`, {
        hint: `check apps.${app}.start.script in the agent config, and that the file is committed (or listed in the controller's "include")`,
        status: 409,
      });
    }
    this.deps.state.setSlot(app, slot, releaseId, 'starting');
    await this.deps.processes.delete(name);
    await waitFor(async () => !(await portAnswers(port)), {
      timeoutMs: 10_000,
      intervalMs: 100,
      onTimeout: () => new SlipwayError('port_in_use', `port ${port} of ${app}/${slot} is held by a process Slipway did not start`, {
        hint: `find it with: ss -ltnp 'sport = :${port}', stop it, or change apps.${app}.slots.${slot}.port`,
        status: 409,
      }),
    });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      NODE_ENV: 'production',
      ...appEnv,
      PORT: String(port),
      SLIPWAY_APP: app,
      SLIPWAY_SLOT: slot,
      SLIPWAY_RELEASE: releaseId,
    };
    await this.deps.processes.start({ name, script, cwd: dir, args: appConfig.start.args, nodeArgs: appConfig.start.nodeArgs, env });
    this.deps.state.setSlotState(app, slot, 'running');
  }

  private async healthGate(ctx: Context): Promise<number> {
    const { app, slot, releaseId } = ctx;
    const appConfig = this.deps.config.apps[app]!;
    const health = appConfig.health;
    const url = `http://127.0.0.1:${appConfig.slots[slot].port}${health.path}`;
    const result = await this.deps.health.waitHealthy(url, {
      timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: health.retries,
      expectStatus: health.expectStatus, ...(health.bodyContains ? { bodyContains: health.bodyContains } : {}),
    });
    if (!result.ok) {
      const seen = result.last?.status !== undefined ? `HTTP ${result.last.status}` : (result.last?.error ?? 'no answer');
      const proc = await this.deps.processes.describe(pm2ProcessName(app, slot)).catch(() => null);
      const procNote = proc ? `; PM2 reports ${proc.status}, ${proc.restarts} restart(s)` : '; not running in PM2';
      throw new SlipwayError('health_check_failed', `${app}/${slot}@${shortSha(releaseId)} failed its health check ${url} after ${result.attempts} attempt(s): last saw ${seen} (expected ${health.expectStatus})${procNote}`, {
        hint: `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${pm2ProcessName(app, slot)} --lines 50`,
        status: 502,
      });
    }
    return result.attempts;
  }

  /**
   * Points nginx at `slot` running `releaseId`, then records it as live. Both slots are upstreams
   * of the app's include and a flag picks one per request, so traffic moves with one atomic
   * rename and no reload (which would close every idle client connection). The include is
   * re-rendered first; only when it changed (a new release in a slot, new ports, an edited
   * template) is it tested, reloaded and proven, while traffic still goes to the serving slot.
   * `reapply` forces that step: crash recovery uses it, since a crash between writing the include
   * and reloading leaves a file nginx has not loaded yet.
   */
  async switchTraffic(app: string, slot: Slot, releaseId: string,
    options: { reapply?: boolean; faultPoint?: (point: 'flip' | 'record') => Promise<void> } = {}): Promise<void> {
    const { state, config, nginx } = this.deps;
    const appConfig = config.apps[app]!;
    // The slot serving now: the flag's, else (no flag yet) what SQLite recorded, else the target.
    const serving = await nginx.ensureFlag(app, state.app(app)!.liveSlot ?? slot);
    const releaseOf = (s: Slot) => (s === slot ? releaseId : state.slot(app, s).releaseId);
    const slots = {
      blue: { port: appConfig.slots.blue.port, releaseId: releaseOf('blue') },
      green: { port: appConfig.slots.green.port, releaseId: releaseOf('green') },
    };
    const render = (generation: number, fallback: Slot = serving) => this.deps.renderNginx({ app, slot: fallback, slots, switchDir: nginx.switchDirOf(app), generation });
    const probe = (expectHeaders: Record<string, string>): NginxProbe => ({
      url: `${publicUrlOf(config, app)}${appConfig.health.path}`,
      hostHeader: probeHostOf(config, app),
      expectHeaders: { ...expectHeaders, 'x-slipway-switch': 'file' },
    });
    const onDisk = await nginx.currentConfig(app);
    const generationNow = state.app(app)!.generation;
    // The include's fallback slot (served only if nginx cannot see the flag, which every flip's
    // proof rules out) may name either slot: a flip alone must not cost a reload.
    const unchanged = onDisk !== null && generationNow >= 1
      && SLOTS.some((fallback) => render(generationNow, fallback) === onDisk);
    if (options.reapply || !unchanged) {
      const generation = state.nextGeneration(app);
      await nginx.apply({
        app,
        config: render(generation),
        probe: probe({ 'x-slipway-generation': String(generation), 'x-slipway-slot': serving, 'x-slipway-release': releaseOf(serving) ?? NO_RELEASE }),
      });
    }
    await options.faultPoint?.('flip');
    if (serving !== slot) {
      await nginx.flip({ app, slot, probe: probe({ 'x-slipway-slot': slot, 'x-slipway-release': releaseId }) });
    }
    await options.faultPoint?.('record');
    state.transaction(() => {
      state.setLiveSlot(app, slot);
      state.setSlotState(app, slot, 'running');
      state.setReleaseState(app, releaseId, 'good');
      state.markReleaseLive(app, releaseId);
    });
  }

  private async step<T>(ctx: Context, step: string, fn: () => Promise<T>, okMessage: (value: T) => string): Promise<T> {
    await this.faultPoint(ctx, step);
    const started = Date.now();
    this.deps.state.setDeploymentState(ctx.id, step);
    this.emit(ctx, step, 'started', null, null);
    try {
      const value = await fn();
      const elapsed = Date.now() - started;
      ctx.durations[step] = elapsed;
      this.emit(ctx, step, 'ok', okMessage(value), elapsed);
      return value;
    } catch (error) {
      const elapsed = Date.now() - started;
      ctx.durations[step] = elapsed;
      this.emit(ctx, step, 'failed', errorMessage(error), elapsed);
      throw error;
    }
  }

  /**
   * Test-only fault injection (SLIPWAY_FAULT_PAUSE_BEFORE=<point>): parks the rollout here so a
   * test can kill -9 the agent exactly at this point. Never set in production.
   */
  private async faultPoint(ctx: Context, point: string): Promise<void> {
    if (this.faultPause !== point) return;
    this.emit(ctx, point, 'info', `paused before ${point} (SLIPWAY_FAULT_PAUSE_BEFORE)`, null);
    await new Promise(() => undefined);
  }

  private async compensate(ctx: Context, what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
      this.emit(ctx, 'compensate', 'ok', what, null);
    } catch (error) {
      this.deps.logger.error({ err: error, deploymentId: ctx.id, app: ctx.app, slot: ctx.slot }, `compensation failed: ${what}`);
      this.emit(ctx, 'compensate', 'failed', `${what}: ${errorMessage(error)}`, null);
    }
  }

  private emit(ctx: Context, step: string, status: 'started' | 'ok' | 'failed' | 'info', message: string | null, elapsedMs: number | null): void {
    const row = this.deps.state.addEvent({ deploymentId: ctx.id, step, status, message, elapsedMs });
    ctx.feed.push({ type: 'event', deploymentId: ctx.id, step, status, message, at: row.at, elapsedMs });
  }

  private finish(ctx: Context, outcome: Outcome, phase: FailurePhase | null, cause: unknown): void {
    const { state, config } = this.deps;
    const reason = cause === null ? null : errorMessage(cause);
    state.finishDeployment(ctx.id, outcome, reason);
    const appRow = state.app(ctx.app)!;
    const liveReleaseId = appRow.liveSlot ? state.slot(ctx.app, appRow.liveSlot).releaseId : null;
    const result: DeploymentResult = {
      type: 'result',
      deploymentId: ctx.id,
      app: ctx.app,
      kind: ctx.kind,
      outcome,
      phase,
      slot: ctx.slot,
      releaseId: ctx.releaseId,
      liveSlot: appRow.liveSlot,
      liveReleaseId,
      publicUrl: publicUrlOf(config, ctx.app),
      reason,
      error: cause === null ? null : cause instanceof SlipwayError ? cause.toBody() : { error: 'internal_error', message: errorMessage(cause) },
      stepDurationsMs: ctx.durations,
    };
    this.deps.logger.info({ deploymentId: ctx.id, app: ctx.app, outcome, phase, reason }, 'rollout finished');
    ctx.feed.push(result);
  }
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
