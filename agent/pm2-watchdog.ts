import type { Logger } from 'pino';
import type { Pm2DaemonStatus } from '../contract/api.js';
import { errorMessage } from '../contract/errors.js';
import { checkDaemonProcess, type DaemonHealth } from './pm2-daemon.js';
import type { AppLock } from './rollout/rehome.js';

// Keeps the agent's PM2 daemon alive. Every `intervalMs` (and at once when a caller finds the
// daemon gone) it checks the daemon; when it is down it takes every app's deploy lock (waiting for
// a running rollout to end: its PM2 calls fail fast, so it ends soon), starts a new daemon, then
// re-homes each app's slots under its lock. An app whose re-homing fails is retried with backoff.

export interface WatchdogDeps {
  daemon: {
    readonly pm2Home: string;
    daemonHealth(): Promise<DaemonHealth>;
    restartDaemon(): Promise<{ pid: number }>;
  };
  apps: string[];
  /** Re-homes one app's slots; called with the app's deploy lock held. */
  rehomeApp(app: string): Promise<void>;
  tryLock(app: string): AppLock | null;
  waitLock(app: string, cancelled: () => boolean): Promise<AppLock>;
  intervalMs: number;
  /** Apps whose slots crash recovery could not move under PM2: retried from the first tick. */
  unreconciled?: string[];
  logger: Logger;
}

const MAX_RETRY_MS = 60_000;

export class Pm2Watchdog {
  private current: Pm2DaemonStatus;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Apps whose slots still run outside PM2 (their last re-homing failed). */
  private readonly pending = new Set<string>();
  private retryAt = 0;
  private retryDelayMs: number;

  constructor(private readonly deps: WatchdogDeps) {
    this.retryDelayMs = deps.intervalMs;
    const health = checkDaemonProcess(deps.daemon.pm2Home);
    this.current = { state: 'up', pid: health.pid, since: new Date().toISOString(), message: null };
    for (const app of deps.unreconciled ?? []) this.pending.add(app);
    if (this.pending.size > 0) {
      this.set('recovering', health.pid, `crash recovery could not move the slots of ${[...this.pending].join(', ')} under PM2; retrying`);
    }
  }

  start(): void {
    this.timer = setInterval(() => { void this.check(); }, this.deps.intervalMs);
    this.timer.unref();
  }

  /**
   * The daemon's state for a status answer: a cheap check of the daemon's pid (no PM2 call), so it
   * answers at once even while PM2 is gone; finding it gone starts the recovery without waiting
   * for the next tick.
   */
  status(): Pm2DaemonStatus {
    if (this.current.state === 'up') {
      const health = checkDaemonProcess(this.deps.daemon.pm2Home);
      if (!health.up) this.noticeDown(health);
    }
    return { ...this.current };
  }

  /** Called when a PM2 call found the daemon gone. */
  noticeDown(health: DaemonHealth & { up: false }): void {
    if (this.current.state === 'up') this.set('down', health.pid, `PM2 daemon is down: ${health.reason}; the agent is restarting it`);
    void this.check();
  }

  /** One check (and recovery when needed); concurrent callers share the one running. */
  check(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.runCheck()
      .catch((error: unknown) => { this.deps.logger.error({ err: error }, 'PM2 watchdog check failed'); })
      .finally(() => { this.running = null; });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private async runCheck(): Promise<void> {
    const health = await this.deps.daemon.daemonHealth();
    if (!health.up) {
      await this.recover(health);
    } else if (this.pending.size > 0 && Date.now() >= this.retryAt) {
      await this.rehome([...this.pending], new Map());
    }
  }

  private async recover(health: DaemonHealth & { up: false }): Promise<void> {
    const down = `PM2 daemon is down: ${health.reason}`;
    if (this.current.state !== 'down') this.set('down', health.pid, `${down}; the agent is restarting it`);
    this.deps.logger.error({ pm2Home: this.deps.daemon.pm2Home, reason: health.reason }, 'the PM2 daemon is down: restarting it and re-homing the slots');
    const held = new Map<string, AppLock>();
    let pid: number;
    try {
      // Every app's lock before the new daemon: a rollout that runs on would otherwise start
      // processes under it while orphans still hold the slot ports.
      for (const app of this.deps.apps) {
        const lock = this.deps.tryLock(app);
        if (lock) held.set(app, lock);
      }
      const waiting = this.deps.apps.filter((app) => !held.has(app));
      if (waiting.length > 0) this.set('down', health.pid, `${down}; restarting it once the rollout of ${waiting.join(', ')} ends`);
      await Promise.all(waiting.map(async (app) => { held.set(app, await this.deps.waitLock(app, () => this.stopped)); }));
      ({ pid } = await this.deps.daemon.restartDaemon());
    } catch (error) {
      for (const lock of held.values()) lock.release();
      this.set('down', health.pid, `${down}; it could not be restarted yet (${errorMessage(error)}); retrying`);
      this.deps.logger.error({ err: error }, 'could not restart the PM2 daemon');
      return;
    }
    this.deps.logger.warn({ pid }, 'started a new PM2 daemon');
    for (const app of this.deps.apps) this.pending.add(app);
    this.set('recovering', pid, `PM2 daemon restarted (pid ${pid}); moving the slots of ${this.deps.apps.join(', ')} back under it`);
    await this.rehome(this.deps.apps, held);
  }

  /** Re-homes `apps` in parallel, each under its lock (already `held`, or waited for). */
  private async rehome(apps: string[], held: Map<string, AppLock>): Promise<void> {
    const failures: string[] = [];
    await Promise.all(apps.map(async (app) => {
      let lock = held.get(app) ?? null;
      try {
        lock ??= await this.deps.waitLock(app, () => this.stopped);
        await this.deps.rehomeApp(app);
        this.pending.delete(app);
      } catch (error) {
        failures.push(`${app}: ${errorMessage(error)}`);
        this.deps.logger.error({ err: error, app }, 'could not move the slots back under PM2');
      } finally {
        lock?.release();
      }
    }));
    const pid = checkDaemonProcess(this.deps.daemon.pm2Home).pid;
    if (this.pending.size === 0) {
      this.retryDelayMs = this.deps.intervalMs;
      this.set('up', pid, null);
      this.deps.logger.info({ pid }, 'every slot runs under PM2 again');
      return;
    }
    this.retryAt = Date.now() + this.retryDelayMs;
    this.set('recovering', pid, `slots still run outside PM2 (${failures.join('; ')}); retrying in ${Math.round(this.retryDelayMs / 1000)} s`);
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, MAX_RETRY_MS);
  }

  private set(state: Pm2DaemonStatus['state'], pid: number | null, message: string | null): void {
    this.current = { state, pid, since: new Date().toISOString(), message };
  }
}
