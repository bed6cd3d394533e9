// The multi-process fixture of issue 12 (test/fixtures/multi-app-full) run directly under a
// private PM2, the way a slot would run it, without Slipway: proves the fixture itself before the
// end-to-end tests (real-apps.test.ts) rely on it. Runs on main as it is.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAppSpec } from '../../contract/spec.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { createPm2Home, type Pm2Home } from '../helpers/pm2.js';
import { freePort } from '../helpers/ports.js';
import { httpGet } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { openWebSocket } from '../helpers/ws-client.js';

const run = promisify(execFile);
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'multi-app-full');
const PM2_BIN = path.join(REPO_ROOT, 'node_modules', 'pm2', 'bin', 'pm2');

describe('multi-app-full fixture under PM2 directly (no Slipway)', () => {
  let pm2: Pm2Home;
  let dir: string;
  let stateDir: string;
  let webPort: number;
  let apiPort: number;
  const release = 'aaaaaaaaaaaa-bbbbbbbbbbbb';

  const pm2Cli = (args: string[]) => run(process.execPath, [PM2_BIN, ...args], { env: { ...process.env, PM2_HOME: pm2.pm2Home }, timeout: 60_000 });

  beforeAll(async () => {
    pm2 = await createPm2Home();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-multi-fixture-'));
    // As a release dir holds it: a copy outside this repository.
    await fs.cp(FIXTURE, path.join(dir, 'release'), { recursive: true });
    stateDir = path.join(dir, 'state');
    await fs.mkdir(stateDir);
    webPort = await freePort();
    apiPort = await freePort();
    const common = { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_ENV: 'production', MULTI_STATE_DIR: stateDir, MULTI_GREETING: 'hello',
      PORT_WEB: String(webPort), PORT_API: String(apiPort), SLIPWAY_APP: 'multi', SLIPWAY_SLOT: 'blue', SLIPWAY_RELEASE: release };
    const releaseDir = path.join(dir, 'release');
    const ecosystem = {
      apps: [
        { name: 'multi-blue-web', script: 'server.js', cwd: path.join(releaseDir, 'web'), exec_mode: 'cluster', instances: 2,
          env: { ...common, PORT: String(webPort), SLIPWAY_PROCESS: 'web', WEB_ROLE: 'frontend' } },
        // Argv as the spec gives it, $PORT replaced, no Node interpreter.
        { name: 'multi-blue-api', script: '/usr/bin/python3', args: ['-m', 'uvicorn', 'main:app', '--host', '127.0.0.1', '--port', String(apiPort)],
          interpreter: 'none', exec_mode: 'fork', cwd: path.join(releaseDir, 'api'), env: { ...common, PORT: String(apiPort), SLIPWAY_PROCESS: 'api' } },
        { name: 'multi-blue-worker', script: 'worker.js', cwd: path.join(releaseDir, 'worker'), env: { ...common, SLIPWAY_PROCESS: 'worker' } },
      ],
    };
    const file = path.join(dir, 'ecosystem.json');
    await fs.writeFile(file, JSON.stringify(ecosystem));
    await pm2Cli(['start', file]);
  });
  afterAll(async () => {
    await pm2?.cleanup();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('its deploy.spec.json passes the spec contract (three processes, three routes, smoke checks, release phase)', async () => {
    const checked = checkAppSpec(JSON.parse(await fs.readFile(path.join(FIXTURE, 'deploy.spec.json'), 'utf8')));
    expect(checked.ok, JSON.stringify(checked)).toBe(true);
    if (!checked.ok) return;
    expect(Object.keys(checked.spec.processes).sort()).toEqual(['api', 'web', 'worker']);
    expect(checked.spec.processes.worker!.port).toBe(false);
    expect(checked.spec.routes.map((r) => `${r.serverNames.join(',')}${r.path} -> ${r.process}`)).toEqual(['web.test/ -> web', 'web.test/api/ -> api', 'api.test/ -> api']);
    expect(checked.spec.release).toEqual([['node', 'release/migrate.js']]);
  });

  it('web answers from two cluster instances and finds the API through PORT_API', async () => {
    const pids = new Set<number>();
    await waitFor(async () => {
      const answer = await httpGet(`http://127.0.0.1:${webPort}/`);
      if (answer.status === 200) pids.add((JSON.parse(answer.body) as { pid: number }).pid);
      return pids.size >= 2;
    }, { timeoutMs: 30_000, intervalMs: 20, description: 'answers from two web instances' });
    const check = await waitFor(async () => {
      const answer = await httpGet(`http://127.0.0.1:${webPort}/api-check`);
      return answer.status === 200 ? JSON.parse(answer.body) as { apiOk: boolean; release: string; api: { body: { process: string } } } : null;
    }, { timeoutMs: 30_000, intervalMs: 100, description: 'web /api-check to reach the API' });
    expect(check).toMatchObject({ apiOk: true, release, slot: 'blue', api: { body: { process: 'api' } } });
  });

  it('FastAPI (Debian python3-fastapi + uvicorn) answers on every path under PM2 without a Node interpreter', async () => {
    const health = await waitFor(async () => {
      const answer = await httpGet(`http://127.0.0.1:${apiPort}/health`).catch(() => null);
      return answer?.status === 200 ? JSON.parse(answer.body) as Record<string, unknown> : null;
    }, { timeoutMs: 30_000, intervalMs: 100, description: 'the API health check' });
    expect(health).toMatchObject({ ok: true, process: 'api', release, slot: 'blue' });
    const nested = JSON.parse((await httpGet(`http://127.0.0.1:${apiPort}/api/ping`)).body) as Record<string, unknown>;
    expect(nested).toMatchObject({ process: 'api', path: '/api/ping' });
    const { stdout } = await pm2Cli(['jlist']);
    const api = (JSON.parse(stdout) as { name: string; pm2_env: { exec_interpreter?: string; status: string } }[]).find((p) => p.name === 'multi-blue-api');
    expect(api?.pm2_env.status).toBe('online');
    expect(api?.pm2_env.exec_interpreter).toBe('none');
  });

  it('the worker prints heartbeats and counts in a file under MULTI_STATE_DIR', async () => {
    const counted = await waitFor(async () => {
      const files = (await fs.readdir(stateDir)).filter((f) => f.startsWith('worker-blue-'));
      if (files.length !== 1) return null;
      const count = Number((await fs.readFile(path.join(stateDir, files[0]!), 'utf8')).split(' ')[0]);
      return count >= 3 ? count : null;
    }, { timeoutMs: 20_000, intervalMs: 100, description: 'the worker to count to 3' });
    expect(counted).toBeGreaterThanOrEqual(3);
    const log = await fs.readFile(path.join(pm2.pm2Home, 'logs', 'multi-blue-worker-out.log'), 'utf8');
    expect(log).toMatch(new RegExp(`worker heartbeat \\d+ release=${release} slot=blue`));
  });

  it('the WebSocket endpoint echoes text frames with the answering process', async () => {
    const ws = await openWebSocket(webPort, { host: 'web.test' });
    try {
      const first = JSON.parse(await ws.request('hello')) as { echo: string; release: string; pid: number };
      expect(first).toMatchObject({ echo: 'hello', release, process: 'web' });
      const long = 'x'.repeat(70_000);
      const second = JSON.parse(await ws.request(long)) as { echo: string; pid: number };
      expect(second.echo).toBe(long);
      expect(second.pid).toBe(first.pid);
    } finally {
      await ws.close();
    }
  });

  it('the release phase writes its marker, and fails with output when FAIL_RELEASE is present', async () => {
    const releaseDir = path.join(dir, 'release');
    await fs.writeFile(path.join(releaseDir, 'DEPLOYMENT_INFO.json'), JSON.stringify({ sha: 'c'.repeat(40) }));
    const ok = await run(process.execPath, ['release/migrate.js'], { cwd: releaseDir, env: { ...process.env, MULTI_STATE_DIR: stateDir } });
    expect(ok.stdout).toContain('migrate: done');
    expect(await fs.readFile(path.join(stateDir, 'release-phase.log'), 'utf8')).toMatch(new RegExp(`^${'c'.repeat(40)} release `));
    await fs.writeFile(path.join(releaseDir, 'FAIL_RELEASE'), '');
    const failed = await run(process.execPath, ['release/migrate.js'], { cwd: releaseDir, env: { ...process.env, MULTI_STATE_DIR: stateDir } }).then(() => null, (e: { code: number; stderr: string }) => e);
    expect(failed?.code).toBe(3);
    expect(failed?.stderr).toContain('migration 0002 failed');
  });
});
