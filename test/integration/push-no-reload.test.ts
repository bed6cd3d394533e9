/**
 * Reload-free push (issue 16) through the whole agent, real nginx, PM2 and SQLite: nginx reads
 * the serving release from the switch flag, so a push whose release keeps its routes and ports
 * leaves the include byte for byte, sends nginx no signal (same worker pids, same generation, the
 * client's keep-alive connection carries on) and still shows the new release after the flip; a
 * push that changes the routes still goes through nginx -t, reload and the generation proof.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAppSpec, specDigest } from '../../contract/spec.js';
import type { DeploymentEvent, DeploymentStreamLine } from '../../contract/api.js';
import { gzip, tarball, type CraftEntry } from '../helpers/crafted-tar.js';
import { contentDigestOfEntries, randomCommit, releaseManifest } from '../helpers/release-content.js';
import { APP, SAMPLE_APP_DIR, startStack, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/** nginx retitles a worker of a replaced config "nginx: worker process is shutting down". */
async function isShuttingDown(pid: number): Promise<boolean> {
  return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('shutting down');
}

describe('a push that changes only the release reloads nothing', () => {
  let stack: Stack;
  let token: string;
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });

  beforeAll(async () => {
    stack = await startStack();
    token = readFileSync(path.join(stack.dir, 'agent.token'), 'utf8').trim();
  });
  afterAll(async () => {
    keepAlive.destroy();
    await stack?.stop();
  });

  const api = (pathname: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${stack.agentPort}${pathname}`, {
    ...init, headers: { authorization: `Bearer ${token}`, 'x-slipway-actor': 'dev@test', ...(init.headers as Record<string, string> ?? {}) },
  });

  const spec = (extraPaths: string[] = []) => ({
    processes: { web: { script: 'server.js', health: { path: '/health', intervalMs: 100, retries: 100 } } },
    routes: [{ serverNames: ['_'], process: 'web', listenPort: stack.publicPort }, ...extraPaths.map((p) => ({ serverNames: ['_'], process: 'web', listenPort: stack.publicPort, path: p }))],
    watch: { windowMs: 300, intervalMs: 100 },
  });

  /** Uploads the sample app as a new release (a fresh commit) carrying `rawSpec`, and deploys it. */
  const push = async (rawSpec: unknown): Promise<{ releaseId: string; result: DeploymentStreamLine; events: DeploymentEvent[] }> => {
    const files: CraftEntry[] = [];
    for (const name of ['server.js', 'message.txt', 'package.json']) files.push({ path: name, body: await fs.readFile(path.join(SAMPLE_APP_DIR, name)) });
    const manifest = releaseManifest(APP, randomCommit(), contentDigestOfEntries(files));
    const checked = checkAppSpec(rawSpec);
    if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
    Object.assign(manifest, { schemaVersion: 3, spec: checked.spec, specDigest: specDigest(checked.spec) });
    const body = gzip(tarball([{ path: 'manifest.json', body: JSON.stringify(manifest) }, ...files]));
    const uploaded = await api(`/apps/${APP}/releases/${manifest.releaseId}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': createHash('sha256').update(body).digest('hex') },
      body: new Uint8Array(body),
    });
    expect(uploaded.status).toBe(201);
    const response = await api(`/apps/${APP}/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ releaseId: manifest.releaseId }) });
    const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l) as DeploymentStreamLine);
    const result = lines.at(-1)!;
    expect(result, JSON.stringify(lines)).toMatchObject({ type: 'result', outcome: 'succeeded' });
    return { releaseId: manifest.releaseId, result, events: lines.filter((l): l is DeploymentEvent => l.type === 'event') };
  };

  const switched = (events: DeploymentEvent[]) => events.find((e) => e.step === 'switching' && e.status === 'ok')?.message ?? '';

  /** GET / through nginx on the one kept-alive client connection: its markers and the local port. */
  const ask = async () => { const probe = await stack.probeHeaders(); return new Promise<{ headers: http.IncomingHttpHeaders; release: string; socket: number }>((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port: stack.publicPort, path: '/', agent: keepAlive, headers: probe }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ headers: response.headers, release: (JSON.parse(body) as { release: string }).release, socket: request.socket?.localPort ?? 0 }));
    });
    request.setTimeout(5_000, () => request.destroy(new Error('request timed out')));
    request.on('error', reject);
  }); };

  /** The workers of the current config, once those of earlier configs are gone. */
  const settledWorkers = async () => {
    await waitFor(async () => (await Promise.all(stack.nginx.workerPids().map(isShuttingDown))).every((shutting) => !shutting),
      { timeoutMs: 60_000, description: 'workers of earlier nginx configs to exit' });
    return stack.nginx.workerPids().sort();
  };

  const include = () => fs.readFile(path.join(stack.nginx.includeDir, `${APP}.conf`), 'utf8');

  it('pushes with the same routes flip the flag only; the new release is served and named', async () => {
    await push(spec());
    // Green's first release gives it routes: that changes the include once.
    const second = await push(spec());
    expect(switched(second.events)).toContain('tested, reloaded and proven');

    const workers = await settledWorkers();
    const before = await ask();
    const config = await include();
    for (const expected of ['blue', 'green'] as const) {
      const next = await push(spec());
      expect(switched(next.events)).toContain('routes unchanged: no nginx reload');
      const after = await ask();
      expect(after.headers).toMatchObject({
        'x-slipway-release': next.releaseId, 'x-slipway-slot': expected, 'x-slipway-switch': 'file',
        'x-slipway-generation': before.headers['x-slipway-generation'],
      });
      expect(after.release).toBe(next.releaseId);
      // No reload: the same workers, the include untouched, and the client's connection kept.
      expect(after.socket).toBe(before.socket);
      expect(stack.nginx.workerPids().sort()).toEqual(workers);
      expect(await include()).toBe(config);
    }
    // Flag directories do not pile up: the live one and the one live just before.
    const flags = (await fs.readdir(path.join(`${stack.nginx.includeDir}-switch`, APP))).filter((name) => name.startsWith('on-')).sort();
    expect(flags).toHaveLength(2);
    expect(await fs.readlink(path.join(`${stack.nginx.includeDir}-switch`, APP, 'live'))).toMatch(/^on-green@/);
  });

  it('a push that changes the routes is tested, reloaded and proven by a new generation', async () => {
    const workers = await settledWorkers();
    const generation = Number((await ask()).headers['x-slipway-generation']);
    const next = await push(spec(['/extra/']));
    expect(switched(next.events)).toContain(`nginx config generation ${generation + 1} tested, reloaded and proven`);
    const after = await stack.get('/extra/thing');
    expect(after.headers).toMatchObject({ 'x-slipway-release': next.releaseId, 'x-slipway-generation': String(generation + 1), 'x-slipway-switch': 'file' });
    expect(await include()).toContain('location /extra/ {');
    const now = await settledWorkers();
    expect(now.some((pid) => workers.includes(pid))).toBe(false);
  });
});
