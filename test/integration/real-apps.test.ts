// Issue 12 end to end, against the design in DESIGN-12 (deploy.spec.json in the repo, host policy
// in agent.json, multi-process slots, routes, release phase, smoke checks): the multi-process
// fixture (test/fixtures/multi-app-full) pushed through the real CLI, sshd, nginx, PM2 and SQLite.
//
// "real apps e2e" blocks need the whole of issue 12 (spec, runtime, nginx routes, release phase,
// smoke checks) merged; they are written against the designed behaviour and are expected to fail
// on a tree that lacks any of it. The fixture's own test (real-apps-fixture.test.ts) runs anywhere.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { MULTI_APP_DIR } from '../helpers/real-apps.js';
import { httpGet, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';
import { openWebSocket } from '../helpers/ws-client.js';

const run = promisify(execFile);
const PM2_BIN = path.join(REPO_ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const APP = 'multi';

interface Answer { status: number; process?: string; release?: string; slot?: string; pid?: number; path?: string; apiOk?: boolean }

/** What nginx serves for Host `host` and `pathname`, on a fresh connection. */
async function view(stack: Stack, host: string, pathname = '/'): Promise<Answer> {
  const answer = await stack.getHost(host, pathname);
  let body: Omit<Answer, 'status'> = {};
  try {
    body = JSON.parse(answer.body) as Omit<Answer, 'status'>;
  } catch {
    body = {};
  }
  return { status: answer.status, ...body };
}

interface Pm2Entry { name: string; pid: number; status: string; release: string | null }

/** PM2's process list of the stack's daemon (the CLI's jlist). */
async function pm2List(stack: Stack): Promise<Pm2Entry[]> {
  const { stdout } = await run(process.execPath, [PM2_BIN, 'jlist'], { env: { ...process.env, PM2_HOME: stack.pm2.pm2Home }, timeout: 30_000, maxBuffer: 64 * 2 ** 20 });
  const list = JSON.parse(stdout.slice(stdout.indexOf('['))) as { name: string; pid: number; pm2_env: { status: string; env?: Record<string, string>; SLIPWAY_RELEASE?: string } }[];
  return list.map((p) => ({ name: p.name, pid: p.pid, status: p.pm2_env.status, release: p.pm2_env.SLIPWAY_RELEASE ?? p.pm2_env.env?.SLIPWAY_RELEASE ?? null }));
}

/** Online instances per process of one slot: { web: 2, api: 1, worker: 1 }. */
async function slotProcesses(stack: Stack, slot: string): Promise<Record<string, number>> {
  const prefix = `${APP}-${slot}-`;
  const counts: Record<string, number> = {};
  for (const p of await pm2List(stack)) {
    if (!p.name.startsWith(prefix) || p.status !== 'online') continue;
    const name = p.name.slice(prefix.length);
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

function fingerprint(stack: Stack) {
  const state = readState(stack.home, APP);
  return {
    liveSlot: state.app?.liveSlot ?? null,
    slots: state.slots.map((s) => `${s.slot} ${s.releaseId ?? '-'} ${s.state}`),
    releases: state.releases.map((r) => `${r.releaseId} ${r.state}`).sort(),
    lock: state.lock ? `${state.lock.holder} ${state.lock.action}` : null,
  };
}

/** The routes of the fixture as nginx serves them now: host+path → process and release. */
async function routeView(stack: Stack): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [host, pathname] of [['web.test', '/'], ['web.test', '/api/ping'], ['api.test', '/'], ['web.test', '/backend/ping'], ['web.test', '/admin/']] as const) {
    const a = await view(stack, host, pathname);
    out[`${host}${pathname}`] = a.status === 200 ? `${a.process} ${a.release}` : `HTTP ${a.status}`;
  }
  return out;
}

async function baseSpec(): Promise<Record<string, unknown>> {
  return JSON.parse(await fs.readFile(path.join(MULTI_APP_DIR, 'deploy.spec.json'), 'utf8')) as Record<string, unknown>;
}

const ADMIN_SERVER = `'use strict';
// Added by the spec-change commit of real-apps.test.ts: a fourth process with its own route.
const http = require('node:http');
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ process: 'admin', release: process.env.SLIPWAY_RELEASE, slot: process.env.SLIPWAY_SLOT, pid: process.pid, path: req.url }));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

async function startMultiStack(): Promise<{ stack: Stack; stateDir: string }> {
  // Writable by the apps (they run as the agent's user), named by the host's env file.
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-multi-state-'));
  const stack = await startStack({
    app: APP,
    appDir: MULTI_APP_DIR,
    envFileContent: `MULTI_GREETING=hello\nMULTI_STATE_DIR=${stateDir}\n`,
    policy: { serverNames: ['web.test', 'api.test'], extraListenPorts: 1 },
  });
  return { stack, stateDir };
}

describe('real apps e2e: multi-process app (web ×2, FastAPI, worker): push, spec change, rollback, WebSocket across a flip', () => {
  let stack: Stack;
  let stateDir: string;
  const releases: { a?: string; b?: string } = {};

  beforeAll(async () => {
    ({ stack, stateDir } = await startMultiStack());
  });
  afterAll(async () => {
    await stack?.stop();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('push: every route serves the new release, web runs 2 instances, one worker, the release phase ran once', async () => {
    const sha = await stack.repo.head();
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const a = releaseOfCommit(stack.home, APP, sha);
    releases.a = a;
    const liveSlot = readState(stack.home, APP).app!.liveSlot!;

    expect(await view(stack, 'web.test', '/')).toMatchObject({ status: 200, process: 'web', release: a, slot: liveSlot });
    expect(await view(stack, 'web.test', '/api/ping')).toMatchObject({ status: 200, process: 'api', release: a, slot: liveSlot, path: '/api/ping' });
    expect(await view(stack, 'api.test', '/')).toMatchObject({ status: 200, process: 'api', release: a, slot: liveSlot });
    // The web process found its slot's API through PORT_API.
    expect(await view(stack, 'web.test', '/api-check')).toMatchObject({ status: 200, apiOk: true, release: a });
    // Two cluster instances answer behind one port (asked on the port itself: nginx's upstream
    // keep-alive connection would always reach the same instance).
    const env = JSON.parse((await stack.getHost('web.test', '/env')).body) as { ports: Record<string, string> };
    expect(Object.keys(env.ports).sort()).toEqual(['PORT', 'PORT_API', 'PORT_WEB']);
    expect(env.ports.PORT).toBe(env.ports.PORT_WEB);
    const pids = new Set<number>();
    await waitFor(async () => {
      const answer = await httpGet(`http://127.0.0.1:${env.ports.PORT}/`);
      if (answer.status === 200) pids.add((JSON.parse(answer.body) as { pid: number }).pid);
      return pids.size >= 2;
    }, { timeoutMs: 10_000, intervalMs: 10, description: 'answers from both web instances on the web port' });
    expect(await slotProcesses(stack, liveSlot)).toEqual({ web: 2, api: 1, worker: 1 });
    // The worker of the live slot runs and counts.
    const workerFiles = (await fs.readdir(stateDir)).filter((f) => f.startsWith(`worker-${liveSlot}-`));
    expect(workerFiles.length).toBeGreaterThanOrEqual(1);
    // The release phase ran exactly once for this rollout, in the release dir, with the app env.
    const phaseLog = (await fs.readFile(path.join(stateDir, 'release-phase.log'), 'utf8')).trim().split('\n');
    expect(phaseLog.filter((line) => line.startsWith(sha))).toHaveLength(1);
    // DEPLOYMENT_INFO.json in the release dir, readable by the app.
    const info = JSON.parse(await fs.readFile(path.join(stack.home, 'releases', APP, a, 'DEPLOYMENT_INFO.json'), 'utf8')) as Record<string, unknown>;
    expect(info).toMatchObject({ sha, branch: 'main' });
    expect(typeof info.specDigest).toBe('string');
  });

  it('a second commit adds a process and moves a route: all of it goes live in one flip', async () => {
    const spec = await baseSpec() as { processes: Record<string, unknown>; routes: { serverNames: string[]; path: string; process: string }[]; smoke: { path: string }[] };
    spec.processes.admin = { script: 'server.js', cwd: 'admin', health: { path: '/', intervalMs: 100, timeoutMs: 1000, retries: 300 } };
    // /api/ of web.test moves to /backend/; /admin/ is new.
    spec.routes = spec.routes.map((r) => (r.path === '/api/' ? { ...r, path: '/backend/' } : r));
    spec.routes.push({ serverNames: ['web.test'], path: '/admin/', process: 'admin' });
    spec.smoke = spec.smoke.map((s) => (s.path === '/api/ping' ? { ...s, path: '/backend/ping' } : s));
    const sha = await stack.repo.commit({ 'deploy.spec.json': `${JSON.stringify(spec, null, 2)}\n`, 'admin/server.js': ADMIN_SERVER }, 'add admin, move the API route');
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const b = releaseOfCommit(stack.home, APP, sha);
    releases.b = b;
    const liveSlot = readState(stack.home, APP).app!.liveSlot!;
    expect(await routeView(stack)).toEqual({
      'web.test/': `web ${b}`,
      // No /api/ route in this release: its own "/" (web) answers, as its spec alone would route it,
      // although the other slot's /api/ location is still in the include.
      'web.test/api/ping': `web ${b}`,
      'api.test/': `api ${b}`,
      'web.test/backend/ping': `api ${b}`,
      'web.test/admin/': `admin ${b}`,
    });
    expect(await slotProcesses(stack, liveSlot)).toEqual({ web: 2, api: 1, worker: 1, admin: 1 });
  });

  it('rollback restores the earlier process set and routes (the spec rolls back with the code)', async () => {
    const rolled = await stack.deploy(['rollback', '--reason', 'admin broke checkout']);
    expect(rolled.code, rolled.stderr + rolled.stdout).toBe(0);
    const a = releases.a!;
    const liveSlot = readState(stack.home, APP).app!.liveSlot!;
    expect(await routeView(stack)).toEqual({
      'web.test/': `web ${a}`,
      'web.test/api/ping': `api ${a}`,
      'api.test/': `api ${a}`,
      // The moved and the added routes are gone with their release: this release's "/" answers
      // them, exactly as its own spec routes them (the standby slot still has those locations).
      'web.test/backend/ping': `web ${a}`,
      'web.test/admin/': `web ${a}`,
    });
    expect(await slotProcesses(stack, liveSlot)).toEqual({ web: 2, api: 1, worker: 1 });
    // At most one worker per slot, never more than the two slots' worth.
    const workers = (await pm2List(stack)).filter((p) => p.name.endsWith('-worker') && p.status === 'online');
    expect(workers.length).toBeLessThanOrEqual(2);
    expect(new Set(workers.map((w) => w.name)).size).toBe(workers.length);
  });

  it('a WebSocket opened before a flip keeps working on its slot; new ones reach the new slot', async () => {
    const before = readState(stack.home, APP).app!.liveSlot!;
    const oldSocket = await openWebSocket(stack.publicPort, { host: 'web.test' });
    try {
      const first = JSON.parse(await oldSocket.request('before the flip')) as { release: string; slot: string; pid: number };
      expect(first).toMatchObject({ slot: before });
      const sha = await stack.repo.commit({ 'web/message.txt': 'after the flip\n' }, 'flip with a socket open');
      const pushed = await stack.deploy(['push']);
      expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
      const c = releaseOfCommit(stack.home, APP, sha);
      const after = readState(stack.home, APP).app!.liveSlot!;
      expect(after).not.toBe(before);
      // The established socket still talks to the process it was opened to.
      expect(oldSocket.isOpen()).toBe(true);
      const again = JSON.parse(await oldSocket.request('after the flip')) as { echo: string; release: string; slot: string; pid: number };
      expect(again).toMatchObject({ echo: 'after the flip', release: first.release, slot: before, pid: first.pid });
      const newSocket = await openWebSocket(stack.publicPort, { host: 'web.test' });
      try {
        expect(JSON.parse(await newSocket.request('new')) as Record<string, unknown>).toMatchObject({ release: c, slot: after });
      } finally {
        await newSocket.close();
      }
      // Plain requests still get keep-alive semantics (Connection "" for non-upgrades): a normal GET works.
      expect(await view(stack, 'web.test', '/')).toMatchObject({ status: 200, release: c });
    } finally {
      await oldSocket.close();
    }
  });
});

describe('real apps e2e: multi-process failure paths leave the live slot, routes and state untouched', () => {
  let stack: Stack;
  let stateDir: string;
  let live: string;
  let liveRoutes: Record<string, string>;

  beforeAll(async () => {
    ({ stack, stateDir } = await startMultiStack());
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    live = releaseOfCommit(stack.home, APP, await stack.repo.head());
    liveRoutes = await routeView(stack);
    expect(liveRoutes['web.test/']).toBe(`web ${live}`);
  });
  afterAll(async () => {
    await stack?.stop();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true });
  });

  /** The live slot's processes by name and pid, which a failure before the switch must not touch. */
  async function liveProcesses(): Promise<string[]> {
    const slot = readState(stack.home, APP).app!.liveSlot!;
    return (await pm2List(stack)).filter((p) => p.name.startsWith(`${APP}-${slot}-`)).map((p) => `${p.name} ${p.pid} ${p.status}`).sort();
  }

  async function expectUntouched(before: { state: ReturnType<typeof fingerprint>; processes: string[] }, options: { newReleaseStored: boolean }): Promise<void> {
    expect(await routeView(stack)).toEqual(liveRoutes);
    expect(await liveProcesses()).toEqual(before.processes);
    const now = fingerprint(stack);
    expect(now.liveSlot).toBe(before.state.liveSlot);
    expect(now.lock).toBeNull();
    if (!options.newReleaseStored) expect(now.releases).toEqual(before.state.releases);
  }

  async function snapshot() {
    return { state: fingerprint(stack), processes: await liveProcesses() };
  }

  /** Online processes of the standby slot: a failure before the switch stops every one of the new slot's. */
  async function standbyOnline(): Promise<Record<string, number>> {
    const liveSlot = readState(stack.home, APP).app!.liveSlot!;
    return slotProcesses(stack, liveSlot === 'blue' ? 'green' : 'blue');
  }

  it('a failing release command stops the rollout before any process starts, and shows its output', async () => {
    const before = await snapshot();
    const phaseLog = () => fs.readFile(path.join(stateDir, 'release-phase.log'), 'utf8').catch(() => '');
    const phaseLines = (await phaseLog()).trim().split('\n').length;
    await stack.repo.commit({ FAIL_RELEASE: 'the migration breaks\n' }, 'failing migration');
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    const output = result.stdout + result.stderr;
    expect(output).toContain('migration 0002 failed');
    expect(output).toMatch(/exit(ed)?( with)?( code)? 3|code 3/);
    await expectUntouched(before, { newReleaseStored: true });
    // No marker: the release phase failed; nothing of the new release started.
    expect((await phaseLog()).trim().split('\n')).toHaveLength(phaseLines);
    const sha = await stack.repo.head();
    const started = (await pm2List(stack)).filter((p) => p.release?.startsWith(sha.slice(0, 12)));
    expect(started).toEqual([]);
    await stack.repo.commit({ FAIL_RELEASE: null }, 'fix the migration');
  });

  it('one of three processes unhealthy (the API answers 503): the new slot is stopped, the error shows what the probe and the logs said', async () => {
    const before = await snapshot();
    const spec = await baseSpec() as { processes: Record<string, { health?: Record<string, unknown> }> };
    spec.processes.api!.health = { path: '/health', intervalMs: 100, timeoutMs: 1000, retries: 15 };
    await stack.repo.commit({ 'api/FAIL_HEALTH': 'x\n', 'deploy.spec.json': `${JSON.stringify(spec, null, 2)}\n` }, 'api unhealthy');
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    const output = result.stdout + result.stderr;
    expect(output).toMatch(/\bapi\b/);
    expect(output).toContain('503');
    // The first bytes of the probe's body and the process's own log lines.
    expect(output).toContain('api/FAIL_HEALTH is in this release');
    expect(output).toContain('health check failing');
    await expectUntouched(before, { newReleaseStored: true });
    expect(await standbyOnline()).toEqual({});
    await stack.repo.commit({ 'api/FAIL_HEALTH': null, 'deploy.spec.json': `${JSON.stringify(await baseSpec(), null, 2)}\n` }, 'api healthy again');
  });

  it('a smoke check failing after the switch swaps back to the previous slot', async () => {
    const before = await snapshot();
    const sha = await stack.repo.commit({ 'web/FAIL_SMOKE': 'x\n' }, 'smoke fails');
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(4);
    expect(result.stdout + result.stderr).toContain('web answers');
    expect(await routeView(stack)).toEqual(liveRoutes);
    expect(fingerprint(stack).liveSlot).toBe(before.state.liveSlot);
    const bad = releaseOfCommit(stack.home, APP, sha);
    expect(readState(stack.home, APP).releases.find((r) => r.releaseId === bad)?.state).not.toBe('good');
    await stack.repo.commit({ 'web/FAIL_SMOKE': null }, 'smoke fixed');
  });

  it('a spec asking for a listen port the host does not allow is refused, naming the field and the host setting; nothing changes', async () => {
    const before = await snapshot();
    const spec = await baseSpec() as { routes: Record<string, unknown>[] };
    const notAllowed = stack.publicPort === 1 ? 2 : 1;
    spec.routes[0] = { ...spec.routes[0], listenPort: notAllowed };
    await stack.repo.commit({ 'deploy.spec.json': `${JSON.stringify(spec, null, 2)}\n` }, 'listen where we may not');
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    const output = result.stdout + result.stderr;
    expect(output).toContain('routes/0/listenPort');
    expect(output).toContain(`apps.${APP}.listen.ports`);
    await expectUntouched(before, { newReleaseStored: false });
  });

  it('a spec claiming a server name the host does not allow is refused, naming the field and the host setting; nothing changes', async () => {
    const before = await snapshot();
    const spec = await baseSpec() as { routes: { serverNames: string[] }[] };
    spec.routes[2]!.serverNames = ['api.test', 'evil.test'];
    await stack.repo.commit({ 'deploy.spec.json': `${JSON.stringify(spec, null, 2)}\n` }, 'claim a name we do not own');
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    const output = result.stdout + result.stderr;
    expect(output).toContain('routes/2/serverNames/1');
    expect(output).toContain('evil.test');
    expect(output).toContain(`apps.${APP}.serverNames`);
    await expectUntouched(before, { newReleaseStored: false });
    expect(await view(stack, 'evil.test', '/')).not.toMatchObject({ status: 200, process: 'api' });
  });
});
