/**
 * A fast harness for the rollout: the real RolloutService and StateStore (SQLite in memory) with
 * fakes for PM2, nginx, health checks and the clock, so every refusal and compensation path runs
 * in milliseconds. What the fakes model, and nothing more:
 * - processes: online/stopped per PM2 name, the env and cwd they were started with, restarts;
 * - nginx: one include and one flag per app; apply/flip can be told to fail;
 * - health: a slot answers by what its release was told to do (fail at once, after N ms, never);
 *   a GET through nginx answers from the flagged slot with its marker headers;
 * - clock: virtual time; sleeping advances it at once, so a 60 s watch window takes no time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { migrate } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import type { DeploymentResult, DeploymentStreamLine } from '../../contract/api.js';
import type { Slot } from '../../contract/names.js';
import type { ApplyRequest, FlipRequest } from '../../agent/nginx/controller.js';
import { createRollouts } from '../../agent/rollout/rollout.js';
import type { Clock, HealthChecker, NginxRenderInput, ProcessManager, TrafficSwitcher } from '../../agent/rollout/deps.js';
import type { DeploymentFeed } from '../../agent/rollout/feed.js';

export const APP = 'shop';
export const ACTOR = 'dev@laptop';
const PUBLIC_PORT = 8080;
const PORTS: Record<Slot, number> = { blue: 3001, green: 3002 };

/** A release id for tests: a recognisable 40-hex sha. */
export const rel = (c: string): string => c.repeat(40).slice(0, 40);

export class FakeClock implements Clock {
  private t = Date.parse('2026-12-01T00:00:00Z');
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  async sleep(ms: number): Promise<void> {
    this.t += Math.max(0, ms);
    // Yield so other promises (a feed's subscribers, concurrent checks) run between rounds.
  }
}

/** How a release behaves once started: healthy, unhealthy at once, or unhealthy after some time. */
export interface ReleaseBehaviour {
  failHealth?: boolean; failHealthAfterMs?: number; crashAfterMs?: number; failStart?: boolean;
  /** The health gate's checks get no answer until they are aborted (a gate that would run out its retries). */
  healthHangs?: boolean;
}

interface FakeProcess { status: string; pid: number; pmCwd: string; restarts: number; port: number; releaseId: string; startedAt: number }

export class FakeProcesses implements ProcessManager {
  readonly procs = new Map<string, FakeProcess>();
  readonly calls: string[] = [];
  private nextPid = 1000;
  /** As if PM2's daemon died: describe() fails the way the adapter reports it (the apps live on). */
  daemonDown = false;
  constructor(private readonly clock: FakeClock, private readonly behaviour: (releaseId: string) => ReleaseBehaviour) {}

  async start(spec: Parameters<ProcessManager['start']>[0]): Promise<{ pid: number }> {
    this.calls.push(`start ${spec.name}`);
    const releaseId = spec.env.SLIPWAY_RELEASE!;
    if (this.behaviour(releaseId).failStart) throw new SlipwayError('pm2_start_failed', `PM2 could not start ${spec.name}`, { status: 500 });
    const pid = this.nextPid++;
    this.procs.set(spec.name, { status: 'online', pid, pmCwd: spec.cwd, restarts: 0, port: Number(spec.env.PORT), releaseId, startedAt: this.clock.now() });
    return { pid };
  }
  async delete(name: string): Promise<void> {
    this.calls.push(`delete ${name}`);
    this.procs.delete(name);
  }
  async describe(name: string) {
    if (this.daemonDown) throw new SlipwayError('pm2_daemon_down', 'the PM2 daemon is down', { status: 503 });
    const p = this.procs.get(name);
    if (!p) return null;
    const b = this.behaviour(p.releaseId);
    // A crash shows as PM2 restarting the process: the restart count goes up.
    const restarts = b.crashAfterMs !== undefined && this.clock.now() - p.startedAt > b.crashAfterMs ? p.restarts + 1 : p.restarts;
    return { status: p.status, pid: p.pid, pmCwd: p.pmCwd, restarts };
  }
  /** As if the process died or was stopped outside Slipway. */
  kill(name: string): void {
    this.procs.delete(name);
  }
}

export class FakeNginx implements TrafficSwitcher {
  flag: Slot | null = null;
  config: string | null = null;
  running = true;
  applies = 0;
  flips = 0;
  failApply: Error | null = null;
  failFlip: Error | null = null;

  async checkMasterRunning(): Promise<unknown> {
    if (!this.running) throw new SlipwayError('nginx_not_running', 'the nginx master is not running (pid file /run/nginx.pid)', { status: 503 });
    return {};
  }
  async currentConfig(): Promise<string | null> {
    return this.config;
  }
  async apply(input: ApplyRequest): Promise<unknown> {
    if (this.failApply) throw this.failApply;
    this.config = input.config;
    this.applies += 1;
    return {};
  }
  switchDirOf(app: string): string {
    return `/fake/switch/${app}`;
  }
  async ensureFlag(_app: string, slot: Slot): Promise<Slot> {
    this.flag ??= slot;
    return this.flag;
  }
  async flip(input: FlipRequest): Promise<unknown> {
    if (this.failFlip) throw this.failFlip;
    this.flag = input.slot;
    this.flips += 1;
    return {};
  }
}

export interface HarnessOptions {
  /** Patch of the app's config (watch, health, ...). */
  app?: Record<string, unknown>;
  bootId?: string;
  faultPauseBefore?: string;
  runBackup?: (job: string, deploymentId: number, actor: string) => Promise<{ id: number }>;
}

export type Harness = Awaited<ReturnType<typeof createHarness>>;

export function createHarness(options: HarnessOptions = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'slipway-rollout-harness-'));
  const envFile = path.join(root, 'shop.env');
  writeFileSync(envFile, 'GREETING=hi\n', { mode: 0o600 });
  const config: AgentConfig = parseAgentConfig({
    home: root,
    api: { port: 7070, tokenFile: path.join(root, 'token') },
    nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
    apps: {
      [APP]: {
        slots: { blue: { port: PORTS.blue }, green: { port: PORTS.green } },
        start: { script: 'server.js' },
        envFile,
        health: { path: '/health', timeoutMs: 100, intervalMs: 10, retries: 3 },
        public: { listenHost: '127.0.0.1', listenPort: PUBLIC_PORT, serverNames: ['shop.example.com'] },
        watch: { windowMs: 60_000, intervalMs: 1_000, failuresToRollback: 3, keepPreviousWarm: false },
        ...options.app,
      },
    },
  });
  const db = new Database(':memory:');
  migrate(db);
  const state = new StateStore(db);
  state.ensureApp(APP);
  const clock = new FakeClock();
  const behaviours = new Map<string, ReleaseBehaviour>();
  const behaviour = (releaseId: string) => behaviours.get(releaseId) ?? {};
  const processes = new FakeProcesses(clock, behaviour);
  const nginx = new FakeNginx();
  const portOf = (slot: Slot) => PORTS[slot];
  const slotAt = (port: number): Slot | null => (port === PORTS.blue ? 'blue' : port === PORTS.green ? 'green' : null);

  /** What a slot's port answers now: its process's release decides, by the virtual clock. */
  const slotAnswer = (slot: Slot): { status: number; releaseId: string } | null => {
    const proc = [...processes.procs.values()].find((p) => p.port === portOf(slot) && p.status === 'online');
    if (!proc) return null;
    const b = behaviour(proc.releaseId);
    const age = clock.now() - proc.startedAt;
    const failing = b.failHealth || (b.failHealthAfterMs !== undefined && age > b.failHealthAfterMs);
    return { status: failing ? 503 : 200, releaseId: proc.releaseId };
  };

  const health: HealthChecker = {
    async waitHealthy(url, opts) {
      const slot = slotAt(Number(new URL(url).port));
      const answer = slot ? slotAnswer(slot) : null;
      const proc = [...processes.procs.values()].find((p) => p.port === Number(new URL(url).port) && p.status === 'online');
      if (proc && behaviour(proc.releaseId).healthHangs) {
        await new Promise<void>((resolve) => {
          if (opts.signal?.aborted) resolve();
          opts.signal?.addEventListener('abort', () => resolve(), { once: true });
        });
        return { ok: false, attempts: 1, last: { error: 'aborted' } };
      }
      if (answer?.status === opts.expectStatus) return { ok: true, attempts: 1, last: { status: answer.status } };
      return { ok: false, attempts: opts.retries, last: answer ? { status: answer.status } : { error: 'connect ECONNREFUSED' } };
    },
    async httpGet(url): Promise<{ status: number; headers: Record<string, string>; body: string }> {
      const port = Number(new URL(url).port);
      const slot = port === PUBLIC_PORT ? nginx.flag : slotAt(port);
      const answer = slot ? slotAnswer(slot) : null;
      if (!answer) {
        if (port === PUBLIC_PORT) return { status: 502, headers: slot ? { 'x-slipway-slot': slot } : {}, body: '' };
        throw new Error('connect ECONNREFUSED');
      }
      return { status: answer.status, headers: { 'x-slipway-slot': slot!, 'x-slipway-release': answer.releaseId, 'x-slipway-switch': 'file' }, body: '' };
    },
  };

  const bootId = options.bootId ?? 'boot-1';
  const releaseDir = (app: string, releaseId: string) => path.join(root, 'releases', app, releaseId);
  const hasRelease = (app: string, releaseId: string) => state.release(app, releaseId) !== undefined && !removed.has(releaseId);
  const removed = new Set<string>();
  /** Ports held by something Slipway did not start. */
  const portHeld = new Set<number>();
  const renderNginx = (input: NginxRenderInput) => JSON.stringify(input);
  const { rollouts, traffic, slots } = createRollouts({
    config, state, bootId, releaseDir, hasRelease, processes, nginx, health, renderNginx, clock,
    logger: pino({ level: 'silent' }),
    faults: { pauseBefore: options.faultPauseBefore ?? null },
    portInUse: async (port) => portHeld.has(port),
    portWaitMs: 20,
    ...(options.runBackup ? { runBackup: options.runBackup } : {}),
  });

  /** Puts a release on the "host": its dir with the start script, and its row. */
  const upload = (releaseId: string, how: ReleaseBehaviour = {}, sha = releaseId.slice(0, 40)) => {
    const dir = releaseDir(APP, releaseId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'server.js'), '// fake\n');
    state.recordRelease({
      app: APP, releaseId, sha256: 'a'.repeat(64), bytes: 100,
      manifest: {
        schemaVersion: 2, app: APP, releaseId, sha, shortSha: sha.slice(0, 12), contentDigest: 'c'.repeat(64), dirty: false, branch: 'main',
        author: { name: 'Dev', email: 'dev@example.com' }, commitTime: '2026-11-30T00:00:00Z', buildTime: '2026-11-30T00:00:00Z', controllerVersion: '0.1.0',
      },
    });
    behaviours.set(releaseId, how);
    // Uploads happen one after another in real life; a distinct creation time keeps the order.
    clock.advance(1000);
    return releaseId;
  };

  /** Runs a feed to its result, collecting every line. */
  const run = async (feed: DeploymentFeed): Promise<DeploymentResult & { lines: DeploymentStreamLine[] }> => {
    const lines: DeploymentStreamLine[] = [];
    feed.subscribe((line) => lines.push(line));
    const result = await feed.done;
    if (!result) throw new Error(`deployment ${feed.deploymentId} ended without a result (its feed was abandoned)`);
    return { ...result, lines };
  };

  /** Uploads and pushes releases one after another; each push must succeed. */
  const pushAll = async (...releaseIds: string[]): Promise<string[]> => {
    for (const releaseId of releaseIds) {
      upload(releaseId);
      const result = await run(rollouts.startDeploy({ app: APP, releaseId, actor: ACTOR }));
      if (result.outcome !== 'succeeded') throw new Error(`push of ${releaseId} ended ${result.outcome}: ${result.reason}`);
    }
    return releaseIds;
  };

  return {
    config, state, clock, processes, nginx, health, rollouts, traffic, slots, root, bootId, portHeld,
    behave: (releaseId: string, how: ReleaseBehaviour) => behaviours.set(releaseId, how),
    remove: (releaseId: string) => removed.add(releaseId),
    upload,
    run,
    pushAll,
    push: (releaseId: string, opts: { slot?: Slot; lockId?: string; actor?: string } = {}) =>
      run(rollouts.startDeploy({ app: APP, releaseId, actor: opts.actor ?? ACTOR, ...(opts.slot ? { slot: opts.slot } : {}), ...(opts.lockId ? { lockId: opts.lockId } : {}) })),
    switchTo: (slot: Slot, opts: { actor?: string } = {}) => run(rollouts.startSwitch({ app: APP, slot, actor: opts.actor ?? ACTOR })),
    rollback: (opts: { to?: string; force?: boolean; reason?: string; actor?: string } = {}) =>
      run(rollouts.startRollback({ app: APP, force: opts.force ?? false, actor: opts.actor ?? ACTOR, ...(opts.to ? { to: opts.to } : {}), ...(opts.reason ? { reason: opts.reason } : {}) })),
    /** What nginx serves now (flag and the process behind it) and what SQLite records. */
    served() {
      const slot = nginx.flag;
      const answer = slot ? slotAnswer(slot) : null;
      const appRow = state.app(APP)!;
      return { slot, releaseId: answer?.releaseId ?? null, status: answer?.status ?? null, liveSlot: appRow.liveSlot };
    },
    releaseState: (releaseId: string) => state.release(APP, releaseId)?.state,
    slotRow: (slot: Slot) => state.slot(APP, slot),
    steps: (result: { lines: DeploymentStreamLine[] }) => result.lines.filter((l) => l.type === 'event' && l.status !== 'info').map((l) => (l.type === 'event' ? `${l.step}:${l.status}` : '')),
    cleanup: () => {
      db.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Calls something that must refuse synchronously with a SlipwayError, and returns the error. */
export function refusal(fn: () => unknown): SlipwayError {
  try {
    fn();
  } catch (error) {
    if (error instanceof SlipwayError) return error;
    throw error;
  }
  throw new Error('expected a refusal, but the call went through');
}
