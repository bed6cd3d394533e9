import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import { envFileOf } from '../config.js';
import { readAppEnv } from '../envfile.js';
import type { StateStore, Outcome } from '../state/store.js';
import type { DeploymentResult, FailurePhase } from '../shared/api.js';
import { SlipwayError, errorMessage } from '../shared/errors.js';
import { pm2ProcessName, shortSha, type Slot } from '../shared/names.js';
import { chooseTargetSlot } from '../shared/slots.js';
import { DeploymentFeed } from './feed.js';
import { waitFor } from '../wait.js';

/** What the rollout needs from PM2 (implemented by Pm2Adapter). */
export interface ProcessManager {
  start(spec: { name: string; script: string; cwd: string; args?: string[]; nodeArgs?: string[]; env: Record<string, string> }): Promise<{ pid: number }>;
  delete(name: string): Promise<void>;
  describe(name: string): Promise<{ status: string; pid: number | null; pmCwd: string | null; restarts: number } | null>;
}

/** What the rollout needs from nginx (implemented by NginxController). */
export interface TrafficSwitcher {
  checkMasterRunning(): Promise<unknown>;
  apply(input: { app: string; config: string; probe: { url: string; hostHeader: string; expectHeaders: Record<string, string> } }): Promise<unknown>;
}

export interface HealthChecker {
  waitHealthy(url: string, options: {
    timeoutMs: number; intervalMs: number; retries: number; expectStatus: number; bodyContains?: string;
  }): Promise<{ ok: boolean; attempts: number; last: { status?: number; error?: string } | undefined }>;
}

export interface RolloutDeps {
  config: AgentConfig;
  state: StateStore;
  releaseDir: (app: string, releaseId: string) => string;
  hasRelease: (app: string, releaseId: string) => boolean;
  processes: ProcessManager;
  nginx: TrafficSwitcher;
  health: HealthChecker;
  renderNginx: (input: { app: string; slot: Slot; upstreamPort: number; releaseId: string; generation: number }) => string;
  logger: Logger;
}

interface Lock { actor: string; since: string; releaseId: string | null; action: string }

interface Context {
  id: number;
  app: string;
  kind: 'deploy' | 'switch';
  slot: Slot;
  releaseId: string;
  previousSlot: Slot | null;
  durations: Record<string, number>;
  feed: DeploymentFeed;
}

/** Raised inside a rollout to stop it, carrying the phase the failure leaves the app in. */
class RolloutFailure extends Error {
  constructor(readonly phase: FailurePhase, override readonly cause: unknown) {
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
 * The rollout orchestrator: one place that moves an app from one release to another, with an
 * explicit compensation for every step, so a failure leaves the live slot serving.
 */
export class RolloutService {
  private readonly locks = new Map<string, Lock>();
  private readonly feeds = new Map<number, DeploymentFeed>();

  constructor(private readonly deps: RolloutDeps) {}

  feed(deploymentId: number): DeploymentFeed | undefined {
    return this.feeds.get(deploymentId);
  }

  lockOf(app: string): Lock | undefined {
    return this.locks.get(app);
  }

  /** Validates and starts a deployment; throws (nothing changed) when it cannot start. */
  startDeploy(input: { app: string; releaseId: string; slot?: Slot; actor: string }): DeploymentFeed {
    const { state } = this.deps;
    const app = this.requireApp(input.app);
    if (!this.deps.hasRelease(app, input.releaseId) || !state.release(app, input.releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(input.releaseId)} of ${app} is not on this host`, {
        hint: 'upload it first (deploy push does this)', status: 404,
      });
    }
    const appRow = state.app(app)!;
    const slot = chooseTargetSlot(app, appRow.liveSlot, input.slot);
    return this.begin({ app, kind: 'deploy', slot, releaseId: input.releaseId, actor: input.actor }, (ctx) => this.runDeploy(ctx));
  }

  /** Points traffic at an already-running slot, after proving it healthy. */
  startSwitch(input: { app: string; slot: Slot; actor: string }): DeploymentFeed {
    const app = this.requireApp(input.app);
    const target = this.deps.state.slot(app, input.slot);
    const appRow = this.deps.state.app(app)!;
    if (appRow.liveSlot === input.slot) {
      throw new SlipwayError('slot_already_live', `${input.slot} is already the live slot of ${app}`, {
        hint: 'nothing to do; deploy status shows the slots', status: 409,
      });
    }
    if (!target.releaseId || target.state !== 'running') {
      throw new SlipwayError('slot_not_running', `${app}/${input.slot} is ${target.state}${target.releaseId ? ` (release ${shortSha(target.releaseId)})` : ''}; only a running slot can take traffic`, {
        hint: `deploy a release into it first: deploy push --slot ${input.slot}`, status: 409,
      });
    }
    return this.begin({ app, kind: 'switch', slot: input.slot, releaseId: target.releaseId, actor: input.actor }, (ctx) => this.runSwitch(ctx));
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

  private begin(
    input: { app: string; kind: 'deploy' | 'switch'; slot: Slot; releaseId: string; actor: string },
    run: (ctx: Context) => Promise<void>,
  ): DeploymentFeed {
    const held = this.locks.get(input.app);
    if (held) {
      throw new SlipwayError('app_locked', `${input.app} is locked by ${held.actor} since ${held.since} for ${held.action}${held.releaseId ? ` of ${shortSha(held.releaseId)}` : ''}`, {
        hint: 'wait for that rollout to finish (deploy status shows it)', status: 409,
      });
    }
    const { state } = this.deps;
    const appRow = state.app(input.app)!;
    const previousSlot = appRow.liveSlot;
    const previousRelease = previousSlot ? state.slot(input.app, previousSlot).releaseId : null;
    const id = state.createDeployment({
      app: input.app, kind: input.kind, releaseId: input.releaseId, slot: input.slot, previousSlot, previousRelease,
      requestedBy: input.actor,
    });
    const feed = new DeploymentFeed(id);
    this.feeds.set(id, feed);
    this.locks.set(input.app, { actor: input.actor, since: new Date().toISOString(), releaseId: input.releaseId, action: input.kind });
    const ctx: Context = { id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, previousSlot, durations: {}, feed };
    this.deps.logger.info({ deploymentId: id, app: input.app, kind: input.kind, slot: input.slot, releaseId: input.releaseId, actor: input.actor }, 'rollout started');
    void run(ctx)
      .then(() => this.finish(ctx, 'succeeded', null, null))
      .catch((error: unknown) => {
        const failure = error instanceof RolloutFailure ? error : new RolloutFailure('before_switch', error);
        return this.finish(ctx, 'failed', failure.phase, failure.cause);
      })
      .catch((error: unknown) => this.deps.logger.error({ err: error, deploymentId: id }, 'could not record the end of a rollout'))
      .finally(() => {
        this.locks.delete(input.app);
        // Keep finished feeds briefly so a slow client can still read the result.
        setTimeout(() => this.feeds.delete(id), 60_000).unref();
      });
    return feed;
  }

  private async runDeploy(ctx: Context): Promise<void> {
    const { app, slot, releaseId } = ctx;
    const appConfig = this.deps.config.apps[app]!;
    try {
      const env = await this.step(ctx, 'preflight', async () => {
        // No PM2 change is made unless nginx can take the switch afterwards.
        await this.deps.nginx.checkMasterRunning();
        return readAppEnv(envFileOf(this.deps.config, app), app, appConfig.requiredEnv);
      }, () => 'nginx is running, env file read');
      await this.step(ctx, 'starting', () => this.startSlot(ctx, env), () => `${pm2ProcessName(app, slot)} started on port ${appConfig.slots[slot].port}`);
      await this.step(ctx, 'healthy', () => this.healthGate(ctx), (attempts) => `healthy after ${attempts} check(s)`);
    } catch (error) {
      await this.compensate(ctx, 'stop the new slot', async () => {
        await this.deps.processes.delete(pm2ProcessName(app, slot));
        this.deps.state.transaction(() => {
          this.deps.state.setSlot(app, slot, releaseId, 'failed');
          this.deps.state.setReleaseState(app, releaseId, 'failed');
        });
      });
      throw new RolloutFailure('before_switch', error);
    }
    try {
      await this.step(ctx, 'switching', () => this.switchTraffic(ctx), () => `nginx serves ${slot} (${shortSha(releaseId)})`);
    } catch (error) {
      // nginx restored its last good config itself; the new slot never got traffic.
      await this.compensate(ctx, 'stop the new slot', async () => {
        await this.deps.processes.delete(pm2ProcessName(app, slot));
        this.deps.state.setSlot(app, slot, releaseId, 'stopped');
      });
      throw new RolloutFailure('before_switch', error);
    }
  }

  private async runSwitch(ctx: Context): Promise<void> {
    try {
      await this.step(ctx, 'preflight', () => this.deps.nginx.checkMasterRunning(), () => 'nginx is running');
      await this.step(ctx, 'healthy', () => this.healthGate(ctx), (attempts) => `healthy after ${attempts} check(s)`);
      await this.step(ctx, 'switching', () => this.switchTraffic(ctx), () => `nginx serves ${ctx.slot} (${shortSha(ctx.releaseId)})`);
    } catch (error) {
      throw new RolloutFailure('before_switch', error);
    }
  }

  private async startSlot(ctx: Context, appEnv: Record<string, string>): Promise<void> {
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
      const procNote = proc ? `; PM2 reports ${proc.status}, ${proc.restarts} restart(s)` : '';
      throw new SlipwayError('health_check_failed', `${app}/${slot}@${shortSha(releaseId)} failed its health check ${url} after ${result.attempts} attempt(s): last saw ${seen} (expected ${health.expectStatus})${procNote}`, {
        hint: `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${pm2ProcessName(app, slot)} --lines 50`,
        status: 502,
      });
    }
    return result.attempts;
  }

  private async switchTraffic(ctx: Context): Promise<void> {
    const { app, slot, releaseId } = ctx;
    const { state, config } = this.deps;
    const generation = state.nextGeneration(app);
    const rendered = this.deps.renderNginx({ app, slot, upstreamPort: config.apps[app]!.slots[slot].port, releaseId, generation });
    await this.deps.nginx.apply({
      app,
      config: rendered,
      probe: {
        url: `${publicUrlOf(config, app)}${config.apps[app]!.health.path}`,
        hostHeader: probeHostOf(config, app),
        expectHeaders: { 'x-slipway-generation': String(generation), 'x-slipway-release': releaseId },
      },
    });
    state.transaction(() => {
      state.setLiveSlot(app, slot);
      state.setSlotState(app, slot, 'running');
      state.setReleaseState(app, releaseId, 'good');
    });
  }

  private async step<T>(ctx: Context, step: string, fn: () => Promise<T>, okMessage: (value: T) => string): Promise<T> {
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
