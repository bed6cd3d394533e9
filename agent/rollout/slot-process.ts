import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AgentConfig } from '../config.js';
import { envFileOf } from '../config.js';
import { readAppEnv } from '../envfile.js';
import type { StateStore } from '../state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import { pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import { waitFor } from '../../lib/wait.js';
import type { HealthChecker, ProcessManager } from './deps.js';
import { slotHealthUrlOf } from './public-address.js';

export interface SlotTarget { app: string; slot: Slot; releaseId: string }

export interface SlotProcessDeps {
  config: AgentConfig;
  state: StateStore;
  processes: ProcessManager;
  health: HealthChecker;
  releaseDir: (app: string, releaseId: string) => string;
  /** Whether something answers on the port (a process Slipway did not start, or one still exiting). */
  portInUse?: (port: number) => Promise<boolean>;
  /** How long a start waits for the slot's port to be free (a previous process exiting). */
  portWaitMs?: number;
}

/**
 * A slot's process under PM2: started from the release's real directory with a clean env,
 * recorded in SQLite, gated on its own health check, stopped. PM2's "online" is never taken for
 * health.
 */
export class SlotProcesses {
  private readonly portInUse: (port: number) => Promise<boolean>;

  constructor(private readonly deps: SlotProcessDeps) {
    this.portInUse = deps.portInUse ?? portAnswers;
  }

  /** Reads the app's env file: a missing file or variable stops a rollout before any change. */
  appEnv(app: string): Promise<Record<string, string>> {
    return readAppEnv(envFileOf(this.deps.config, app), app, this.deps.config.apps[app]!.requiredEnv);
  }

  /** Starts a release in a slot outside any rollout (crash recovery restores the live slot this way). */
  async startRelease(app: string, slot: Slot, releaseId: string): Promise<void> {
    await this.start({ app, slot, releaseId }, await this.appEnv(app));
  }

  async start(target: SlotTarget, appEnv: Record<string, string>): Promise<void> {
    const { app, slot, releaseId } = target;
    const appConfig = this.deps.config.apps[app]!;
    const port = appConfig.slots[slot].port;
    const name = pm2ProcessName(app, slot);
    const { dir, script } = await this.entryPoint(target);
    // PM2 first: when its daemon is down this fails at once and SQLite keeps what the slot runs.
    await this.deps.processes.delete(name);
    this.deps.state.setSlot(app, slot, releaseId, 'starting');
    await waitFor(async () => !(await this.portInUse(port)), {
      timeoutMs: this.deps.portWaitMs ?? 10_000,
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

  /** Waits for the slot's own health check; throws with what it last saw and PM2's view. */
  async healthGate(target: SlotTarget): Promise<number> {
    const { app, slot, releaseId } = target;
    const health = this.deps.config.apps[app]!.health;
    const url = slotHealthUrlOf(this.deps.config, app, slot);
    const result = await this.deps.health.waitHealthy(url, {
      timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: health.retries,
      expectStatus: health.expectStatus, ...(health.bodyContains ? { bodyContains: health.bodyContains } : {}),
    });
    if (!result.ok) {
      const seen = result.last?.status !== undefined ? `HTTP ${result.last.status}` : (result.last?.error ?? 'no answer');
      const proc = await this.deps.processes.describe(pm2ProcessName(app, slot)).catch(() => null);
      const procNote = proc ? `; PM2 reports ${proc.status}, ${proc.restarts} restart(s)` : '; not running in PM2';
      throw new SlipwayError('health_check_failed', `${app}/${slot}@${shortSha(releaseId)} failed its health check ${url} after ${result.attempts} attempt(s): last saw ${seen} (expected ${health.expectStatus})${procNote}`, {
        hint: this.logHint(app, slot),
        status: 502,
      });
    }
    return result.attempts;
  }

  /** A short health check (a few tries), for a slot that should already be serving. */
  async answers(app: string, slot: Slot): Promise<boolean> {
    const health = this.deps.config.apps[app]!.health;
    const result = await this.deps.health.waitHealthy(slotHealthUrlOf(this.deps.config, app, slot), {
      timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: 3, expectStatus: health.expectStatus,
    });
    return result.ok;
  }

  /** Whether PM2 runs the slot's process (SQLite may still say "running" after it died or was stopped by hand). */
  async isOnline(app: string, slot: Slot): Promise<boolean> {
    const proc = await this.deps.processes.describe(pm2ProcessName(app, slot)).catch(() => null);
    return proc?.status === 'online';
  }

  async restarts(app: string, slot: Slot): Promise<number> {
    return (await this.deps.processes.describe(pm2ProcessName(app, slot)))?.restarts ?? 0;
  }

  async stop(app: string, slot: Slot): Promise<void> {
    await this.deps.processes.delete(pm2ProcessName(app, slot));
  }

  /** Where to read why a slot's process failed. */
  logHint(app: string, slot: Slot): string {
    return `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${pm2ProcessName(app, slot)} --lines 50`;
  }

  private async entryPoint({ app, releaseId }: SlotTarget): Promise<{ dir: string; script: string }> {
    const appConfig = this.deps.config.apps[app]!;
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
    return { dir, script };
  }
}

export function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
