/**
 * Multi-process slots under a real PM2 daemon: a Node web process in cluster mode (2 instances),
 * a Python FastAPI process run by uvicorn without a Node interpreter, and a worker without a port,
 * all from one release's deploy.spec.json. The rollout, SQLite state, PM2 and the health checks are
 * real; nginx is stood in for by a small HTTP router that serves the include's render input (both
 * slots' routes and ports, the flagged slot answering) with nginx's marker headers: the template
 * itself is tested with real nginx elsewhere.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { checkOnce, httpGet, waitHealthy } from '../../agent/health.js';
import { waitFor } from '../helpers/wait.js';
import { StatusService } from '../../agent/status.js';
import { recoverAfterRestart } from '../../agent/rollout/recovery.js';
import { SlotProbeCache } from '../../agent/slot-probe.js';
import { Pm2Adapter } from '../../agent/pm2.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { createRollouts, type RolloutService } from '../../agent/rollout/rollout.js';
import type { NginxRenderInput, TrafficSwitcher } from '../../agent/rollout/deps.js';
import type { SlotProcesses } from '../../agent/rollout/slot-process.js';
import type { ApplyRequest, FlipRequest } from '../../agent/nginx/controller.js';
import type { Slot } from '../../contract/names.js';
import { checkAppSpec, specDigest } from '../../contract/spec.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { createPm2Home, type Pm2Home } from '../helpers/pm2.js';
import { freePort } from '../helpers/ports.js';
import { REPO_ROOT } from '../helpers/agent-process.js';

const APP = 'shop';
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'multi-app');
const BASE_SPEC = JSON.parse(readFileSync(path.join(FIXTURE, 'deploy.spec.json'), 'utf8')) as Record<string, any>;

/** nginx as the rollout sees it, plus a router serving the rendered input on the public port. */
class RouterNginx implements TrafficSwitcher {
  flag: Slot | null = null;
  input: NginxRenderInput | null = null;
  config: string | null = null;
  private server: http.Server | null = null;

  async listen(port: number): Promise<void> {
    this.server = http.createServer((req, res) => this.route(req, res));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    const slot = this.flag;
    const input = this.input;
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    const slotInput = slot && input ? input.slots[slot] : null;
    const markers = { 'x-slipway-slot': slot ?? 'none', 'x-slipway-release': slotInput?.releaseId ?? 'none', 'x-slipway-switch': 'file', 'x-slipway-generation': String(input?.generation ?? 0) };
    const route = slotInput?.routes.filter((r) => r.serverNames.includes(host) && (req.url ?? '/').startsWith(r.path))
      .sort((a, b) => b.path.length - a.path.length)[0];
    const port = route ? slotInput!.ports[route.process] : undefined;
    if (!route || port === undefined) {
      res.writeHead(404, markers).end('no route');
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, { ...up.headers, ...markers });
      up.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502, markers).end('bad gateway'));
    req.pipe(upstream);
  }

  async checkMasterRunning(): Promise<unknown> { return {}; }
  async currentConfig(): Promise<string | null> { return this.config; }
  async apply(request: ApplyRequest): Promise<unknown> {
    this.config = request.config;
    this.input = JSON.parse(request.config) as NginxRenderInput;
    return {};
  }
  switchDirOf(app: string): string { return `/fake/switch/${app}`; }
  async ensureFlag(_app: string, slot: Slot): Promise<Slot> {
    this.flag ??= slot;
    return this.flag;
  }
  async flip(request: FlipRequest): Promise<unknown> {
    this.flag = request.slot;
    return {};
  }
}

interface Who { process: string; release: string; pid: number; instance?: string | null; port: string; portApi?: string | null; portWeb?: string | null }

describe('multi-process slots under PM2', () => {
  let root: string;
  let pm2: Pm2Home;
  let processes: Pm2Adapter;
  let db: Db;
  let state: StateStore;
  let config: AgentConfig;
  let nginx: RouterNginx;
  let rollouts: RolloutService;
  let slots: SlotProcesses;
  let traffic: ReturnType<typeof createRollouts>['traffic'];
  let publicPort: number;
  let range: { from: number; to: number };

  const releaseDir = (app: string, releaseId: string) => path.join(root, 'releases', app, releaseId);

  /** Puts the fixture on the "host" as a release whose manifest carries `spec` (patched from the fixture's). */
  const release = (tag: string, patch: (spec: Record<string, any>) => void = () => undefined): string => {
    const raw = structuredClone(BASE_SPEC);
    patch(raw);
    const checked = checkAppSpec(raw);
    if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
    const sha = tag.repeat(40).slice(0, 40);
    const releaseId = `${sha.slice(0, 12)}-${tag.repeat(12).slice(0, 12)}`;
    cpSync(FIXTURE, releaseDir(APP, releaseId), { recursive: true });
    const manifest: ReleaseManifest = {
      schemaVersion: 3, app: APP, releaseId, sha, shortSha: sha.slice(0, 7), contentDigest: 'c'.repeat(64), dirty: false, branch: 'main',
      author: { name: 'Test', email: 'test@example.com' }, commitTime: '2026-12-01T00:00:00Z', buildTime: '2026-12-01T00:00:00Z',
      controllerVersion: '0.1.0', spec: checked.spec, specDigest: specDigest(checked.spec),
    };
    state.recordRelease({ app: APP, releaseId, sha256: 'a'.repeat(64), bytes: 1, manifest });
    return releaseId;
  };

  const run = async (feed: { done: Promise<any> }) => feed.done as Promise<{ outcome: string; phase: string | null; reason: string | null; error: { error: string; message: string; details?: string[] } | null }>;
  const deploy = (releaseId: string) => run(rollouts.startDeploy({ app: APP, releaseId, actor: 'dev@test' }));

  const via = async (host: string, pathname = '/'): Promise<Who & { status: number; servedBy: string | undefined }> => {
    const r = await httpGet(`http://127.0.0.1:${publicPort}${pathname}`, { timeoutMs: 2000, headers: { host } });
    const body = r.headers['content-type']?.includes('json') ? JSON.parse(r.body) as Who : {} as Who;
    return { ...body, status: r.status, servedBy: r.headers['x-slipway-release'] };
  };

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'slipway-multi-'));
    pm2 = await createPm2Home();
    processes = await Pm2Adapter.connect({ pm2Home: pm2.pm2Home, callTimeoutMs: 20_000 });
    publicPort = await freePort();
    // A range of its own per run: helpers running in parallel must not hand out one port twice.
    const base = 21_000 + Math.floor(Math.random() * 400) * 20;
    range = { from: base, to: base + 19 };
    const envFile = path.join(root, 'shop.env');
    writeFileSync(envFile, 'SECRET_TOKEN=not-for-logs\n', { mode: 0o600 });
    config = parseAgentConfig({
      home: root,
      api: { port: await freePort(), tokenFile: path.join(root, 'token') },
      pm2: { home: pm2.pm2Home },
      nginx: { pidFile: '/run/nginx.pid', includeDir: path.join(root, 'nginx') },
      ports: range,
      apps: { [APP]: { envFile, listen: { ports: [publicPort] }, serverNames: ['shop.test', '*.shop.test'] } },
    });
    db = openDatabase(path.join(root, 'agent.db'));
    state = new StateStore(db);
    state.ensureApp(APP);
    nginx = new RouterNginx();
    await nginx.listen(publicPort);
    const built = createRollouts({
      config, state, bootId: 'boot-1', processes, nginx, health: { waitHealthy, httpGet },
      releaseDir, hasRelease: (app, releaseId) => state.release(app, releaseId) !== undefined,
      renderNginx: (input) => JSON.stringify(input),
      logger: pino({ level: 'silent' }),
    });
    rollouts = built.rollouts;
    slots = built.slots;
    traffic = built.traffic;
  }, 60_000);

  afterAll(async () => {
    await nginx?.close();
    await processes?.killDaemon().catch(() => undefined);
    await pm2?.cleanup();
    db?.close();
    rmSync(root, { recursive: true, force: true });
  });

  let a: string;

  it('starts every process of the spec: web in cluster mode, the Python API without Node, the worker without a port', async () => {
    a = release('a');
    const result = await deploy(a);
    expect(result.outcome, result.reason ?? '').toBe('succeeded');
    const layout = state.slotLayout(APP, 'blue');
    expect(layout.map((p) => [p.process, p.pm2Name, p.instances, p.port === null])).toEqual([
      ['api', 'shop-blue-api', 1, false], ['web', 'shop-blue-web', 2, false], ['worker', 'shop-blue-worker', 1, true],
    ]);
    const ports = Object.fromEntries(layout.map((p) => [p.process, p.port]));
    for (const port of [ports.api, ports.web]) expect(port).toBeGreaterThanOrEqual(range.from), expect(port).toBeLessThanOrEqual(range.to);

    // Routes as declared: each host reaches its process in the live slot, which know each other's ports.
    const web = await via('shop.test');
    expect(web).toMatchObject({ status: 200, process: 'web', release: a, port: String(ports.web), portApi: String(ports.api), servedBy: a });
    const api = await via('api.shop.test');
    expect(api).toMatchObject({ status: 200, process: 'api', release: a, port: String(ports.api), portWeb: String(ports.web) });

    const webProc = await processes.describe('shop-blue-web');
    expect(webProc).toMatchObject({ status: 'online', instances: 2, online: 2 });
    const instances = new Set<string>();
    for (let i = 0; i < 20 && instances.size < 2; i++) instances.add(String((await via('shop.test')).instance));
    expect(instances.size).toBe(2);
    const apiProc = (await processes.list()).find((p) => p.name === 'shop-blue-api')!;
    expect(apiProc.pmCwd).toBe(path.join(releaseDir(APP, a), 'api'));
    // Run without a Node interpreter: the process is python itself.
    expect(readFileSync(`/proc/${apiProc.pid}/cmdline`, 'utf8').split('\0').slice(0, 3)).toEqual(['/usr/bin/python3', '-m', 'uvicorn']);
    expect(await processes.describe('shop-blue-worker')).toMatchObject({ status: 'online', instances: 1 });
  }, 120_000);

  it('one process of three unhealthy: the gate fails, shows what the probe saw and the process\'s output, and stops only the new slot', async () => {
    const pidsBefore = await Promise.all(['shop-blue-web', 'shop-blue-api', 'shop-blue-worker'].map(async (n) => (await processes.describe(n))?.pid));
    const b = release('b', (spec) => {
      spec.processes.api.env.FAIL = '1';
      spec.processes.api.health.retries = 10;
    });
    const result = await deploy(b);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'health_check_failed' } });
    const message = result.error!.message;
    expect(message).toContain('process api failed its health check');
    expect(message).toContain('last saw HTTP 503 "api unhealthy: database unreachable (simulated)"');
    expect(message).toContain('health check refused, the database is unreachable (simulated)');
    expect(message).not.toContain('not-for-logs');
    expect(message).toMatch(/last \d+ line\(s\) of shop-green-api's output:\n  out\| /);
    expect(message).toContain('err| api: health check refused');
    // History keeps the same explanation.
    expect(state.deployments(APP, 1)[0]!.reason).toContain('database unreachable');

    // Every process of the new slot is gone; the live slot is untouched.
    for (const name of ['shop-green-web', 'shop-green-api', 'shop-green-worker']) expect(await processes.describe(name)).toBeNull();
    const pidsAfter = await Promise.all(['shop-blue-web', 'shop-blue-api', 'shop-blue-worker'].map(async (n) => (await processes.describe(n))?.pid));
    expect(pidsAfter).toEqual(pidsBefore);
    expect(state.app(APP)!.liveSlot).toBe('blue');
    expect(await via('shop.test')).toMatchObject({ status: 200, release: a });
    expect(await via('api.shop.test')).toMatchObject({ status: 200, release: a });
  }, 120_000);

  it('a release with another spec replaces the process set; a rollback brings the older spec back exactly', async () => {
    const c = release('c', (spec) => {
      // One web instance, no worker, the API moved under shop.test/api and a new name.
      spec.processes.web.instances = 1;
      delete spec.processes.worker;
      // A non-Node worker with two instances: two forks under one PM2 name.
      spec.processes.beat = { command: ['/usr/bin/python3', '-c', 'import time\nwhile True: time.sleep(1)'], instances: 2, health: { stableMs: 300 } };
      spec.routes = [
        { serverNames: ['shop.test'], process: 'web' },
        { serverNames: ['shop.test'], path: '/api', process: 'api' },
      ];
    });
    const pushed = await deploy(c);
    expect(pushed.outcome, pushed.reason ?? '').toBe('succeeded');
    expect(state.app(APP)!.liveSlot).toBe('green');
    expect(state.slotLayout(APP, 'green').map((p) => p.process)).toEqual(['api', 'beat', 'web']);
    expect(await processes.describe('shop-green-beat')).toMatchObject({ status: 'online', instances: 2, online: 2 });
    expect(await processes.describe('shop-green-web')).toMatchObject({ instances: 1 });
    expect(await processes.describe('shop-green-worker')).toBeNull();
    expect((await via('api.shop.test')).status).toBe(404);
    expect(await via('shop.test', '/api/')).toMatchObject({ status: 200, process: 'api', release: c });
    // The settle stopped every process of the slot it left, by its recorded layout.
    for (const name of ['shop-blue-web', 'shop-blue-api', 'shop-blue-worker']) expect(await processes.describe(name)).toBeNull();

    const back = await run(rollouts.startRollback({ app: APP, force: false, actor: 'dev@test' }));
    expect(back.outcome, back.reason ?? '').toBe('succeeded');
    expect(state.app(APP)!.liveSlot).toBe('blue');
    expect(state.slotLayout(APP, 'blue').map((p) => p.process)).toEqual(['api', 'web', 'worker']);
    expect(await processes.describe('shop-blue-web')).toMatchObject({ status: 'online', instances: 2, online: 2 });
    expect(await processes.describe('shop-blue-worker')).toMatchObject({ status: 'online' });
    expect(await via('api.shop.test')).toMatchObject({ status: 200, process: 'api', release: a });
    expect(await via('shop.test')).toMatchObject({ status: 200, process: 'web', release: a });
    // The include names both slots' routes: the older spec's for blue, the newer one's for green.
    expect(nginx.input!.slots.blue.routes.map((r) => r.serverNames[0])).toEqual(['shop.test', 'api.shop.test']);
    expect(nginx.input!.slots.green.routes.map((r) => r.path)).toEqual(['/', '/api']);
    for (const name of ['shop-green-web', 'shop-green-api', 'shop-green-beat']) expect(await processes.describe(name)).toBeNull();
  }, 120_000);

  it('status lists each slot\'s processes with port, instances online and restarts; the layout comes from SQLite', async () => {
    const layout = slots.layout(APP, 'blue');
    expect(layout.map((p) => p.pm2Name)).toEqual(['shop-blue-api', 'shop-blue-web', 'shop-blue-worker']);
    const status = new StatusService({ config, state, hasRelease: () => true, probes: new SlotProbeCache(processes, { checkOnce }) });
    const blue = (await status.app(APP)).slots.find((x) => x.slot === 'blue')!;
    expect(blue.processes!.map((p) => ({ name: p.name, port: p.port === null ? null : 'port', instances: p.instances, online: p.online, status: p.status, ok: p.health?.ok ?? null }))).toEqual([
      { name: 'api', port: 'port', instances: 1, online: 1, status: 'online', ok: true },
      { name: 'web', port: 'port', instances: 2, online: 2, status: 'online', ok: true },
      { name: 'worker', port: null, instances: 1, online: 1, status: 'online', ok: null },
    ]);
    expect(blue.processes!.every((p) => p.restarts === 0)).toBe(true);
    // Sticky: blue's processes kept the ports they had on the first push.
    expect(state.portAssignments().filter((p) => p.slot === 'blue').map((p) => p.process).sort()).toEqual(['api', 'web']);
  });

  it('a singleton worker: the live copy stops before the new slot starts, and runs again when the rollout fails before the switch', async () => {
    const s1 = release('d', (spec) => { spec.processes.worker.singleton = true; });
    const first = await deploy(s1);
    expect(first.outcome, first.reason ?? '').toBe('succeeded');
    const live = state.app(APP)!.liveSlot!;
    const worker = `shop-${live}-worker`;
    const before = (await processes.describe(worker))!;
    expect(before.status).toBe('online');

    const s2 = release('e', (spec) => {
      spec.processes.worker.singleton = true;
      spec.processes.api.env.FAIL = '1';
      spec.processes.api.health.retries = 5;
    });
    const feed = rollouts.startDeploy({ app: APP, releaseId: s2, actor: 'dev@test' });
    const lines: { type: string; step?: string; status?: string; message?: string | null }[] = [];
    feed.subscribe((line) => lines.push(line as never));
    const failed = await run(feed);
    expect(failed).toMatchObject({ outcome: 'failed', phase: 'before_switch' });
    const steps = lines.filter((l) => l.type === 'event' && l.status !== 'info').map((l) => `${l.step}:${l.status}`);
    expect(steps.indexOf('singletons:ok')).toBeGreaterThan(-1);
    expect(steps.indexOf('singletons:ok')).toBeLessThan(steps.indexOf('starting:started'));
    expect(lines.some((l) => l.step === 'compensate' && l.status === 'ok' && l.message?.includes(`start singleton worker of ${live} again`))).toBe(true);
    const after = (await processes.describe(worker))!;
    expect(after.status).toBe('online');
    expect(after.pid).not.toBe(before.pid);
    // The live slot's web and API were never touched; the failed slot runs nothing.
    expect(state.app(APP)!.liveSlot).toBe(live);
    const standby = live === 'blue' ? 'green' : 'blue';
    for (const name of ['web', 'api', 'worker']) expect(await processes.describe(`shop-${standby}-${name}`)).toBeNull();
  }, 120_000);

  it('a spec the host no longer allows is refused at rollout entry: nothing started, nothing moved', async () => {
    const live = state.app(APP)!.liveSlot!;
    const pidsBefore = (await processes.list()).map((p) => `${p.name}:${p.pid}`).sort();
    const evil = release('f', (spec) => { spec.routes[0].serverNames = ['evil.test']; });
    const result = await deploy(evil);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'spec_refused' } });
    expect(result.error!.details).toEqual(['routes/0/serverNames/0: "evil.test" is not allowed here (agent.json apps.shop.serverNames allows shop.test, *.shop.test)']);
    expect((await processes.list()).map((p) => `${p.name}:${p.pid}`).sort()).toEqual(pidsBefore);
    expect(state.app(APP)!.liveSlot).toBe(live);
  }, 60_000);

  it('crash recovery adopts a healthy multi-process live slot as it runs, and brings back a process PM2 lost', async () => {
    const live = state.app(APP)!.liveSlot!;
    const names = slots.layout(APP, live).map((p) => p.pm2Name);
    const pids = async () => Promise.all(names.map(async (n) => (await processes.describe(n))?.pid ?? null));
    const before = await pids();
    const recover = () => recoverAfterRestart({
      config, state, processes, health: { waitHealthy, httpGet }, bootId: 'boot-2', releaseDir, logger: pino({ level: 'silent' }),
      activation: {
        startRelease: (app, slot, releaseId) => slots.startRelease(app, slot, releaseId),
        switchTraffic: async (app, slot, releaseId, options) => { await traffic.switchTraffic(app, slot, releaseId, options); },
        layout: (app, slot) => slots.layout(app, slot),
        checkHealth: (app, slot, retries) => slots.checkHealth(app, slot, retries),
        probeOf: (app, releaseId) => traffic.probeOf(app, releaseId),
      },
    });
    expect(await recover()).toEqual([]);
    expect(await pids()).toEqual(before);
    expect(state.app(APP)!.liveSlot).toBe(live);

    // One process of the live slot gone from PM2: the slot's release is started again, whole.
    await processes.delete(`shop-${live}-api`);
    expect(await recover()).toEqual([]);
    expect(await processes.describe(`shop-${live}-api`)).toMatchObject({ status: 'online' });
    // Recovery restarts the process and returns; uvicorn takes a moment to bind under load.
    const answer = await waitFor(async () => {
      const r = await via('api.shop.test');
      return r.status === 200 ? r : null;
    }, { description: 'the restarted api answering through the router', timeoutMs: 30_000, intervalMs: 100 });
    expect(answer).toMatchObject({ status: 200, process: 'api' });
  }, 120_000);
});
