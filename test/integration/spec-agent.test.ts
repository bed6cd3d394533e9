/**
 * The whole agent (its process, real nginx, PM2, SQLite) with a legacy app config taking releases
 * that carry their own spec: refused at upload when the spec asks for more than the host allows
 * (422, nothing stored), served when it fits (its process under its own PM2 name, on the pinned
 * legacy port, through nginx), and a legacy release after it brings the legacy process back.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAppSpec, specDigest } from '../../contract/spec.js';
import type { DeploymentStreamLine } from '../../contract/api.js';
import { gzip, tarball, type CraftEntry } from '../helpers/crafted-tar.js';
import { contentDigestOfEntries, randomCommit, releaseManifest } from '../helpers/release-content.js';
import { APP, SAMPLE_APP_DIR, startStack, type Stack } from '../helpers/stack.js';

describe('a legacy-configured agent taking releases with a spec', () => {
  let stack: Stack;
  let token: string;

  beforeAll(async () => {
    stack = await startStack();
    token = readFileSync(path.join(stack.dir, 'agent.token'), 'utf8').trim();
  });
  afterAll(async () => { await stack?.stop(); });

  const api = (pathname: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${stack.agentPort}${pathname}`, {
    ...init, headers: { authorization: `Bearer ${token}`, 'x-slipway-actor': 'dev@test', ...(init.headers as Record<string, string> ?? {}) },
  });

  /** The sample app's files plus manifest.json (with `rawSpec` when given), uploaded through the API. */
  const upload = async (rawSpec: unknown | null) => {
    const files: CraftEntry[] = [];
    for (const name of ['server.js', 'message.txt', 'package.json']) files.push({ path: name, body: await fs.readFile(path.join(SAMPLE_APP_DIR, name)) });
    const manifest = releaseManifest(APP, randomCommit(), contentDigestOfEntries(files));
    if (rawSpec !== null) {
      const checked = checkAppSpec(rawSpec);
      if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
      Object.assign(manifest, { schemaVersion: 3, spec: checked.spec, specDigest: specDigest(checked.spec) });
    }
    const body = gzip(tarball([{ path: 'manifest.json', body: JSON.stringify(manifest) }, ...files]));
    const response = await api(`/apps/${APP}/releases/${manifest.releaseId}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': createHash('sha256').update(body).digest('hex') },
      body: new Uint8Array(body),
    });
    return { releaseId: manifest.releaseId, response };
  };

  const deploy = async (releaseId: string) => {
    const response = await api(`/apps/${APP}/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ releaseId }) });
    const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l) as DeploymentStreamLine);
    return lines.at(-1)!;
  };

  const spec = (serverNames: string[]) => ({
    processes: { web: { script: 'server.js', env: { SAMPLE_GREETING: 'from the spec' }, health: { path: '/health', intervalMs: 100, retries: 100 } } },
    routes: [{ serverNames, process: 'web', listenPort: stack.publicPort }],
    watch: { windowMs: 500, intervalMs: 100 },
  });

  it('logs once at start which legacy fields it translated and where they belong', async () => {
    const log = await fs.readFile(path.join(stack.dir, 'agent.log'), 'utf8');
    expect(log).toContain('agent.json uses legacy app fields');
    expect(log).toContain(`apps.${APP}.start → deploy.spec.json processes.web`);
  });

  it('refuses at upload a spec asking for a server name the host does not allow: 422, nothing stored', async () => {
    const { releaseId, response } = await upload(spec(['evil.test']));
    expect(response.status).toBe(422);
    const error = await response.json() as { error: string; details: string[] };
    expect(error.error).toBe('spec_refused');
    expect(error.details).toEqual([`routes/0/serverNames/0: "evil.test" is not allowed here (agent.json apps.${APP}.serverNames allows _)`]);
    await expect(fs.access(path.join(stack.home, 'releases', APP, releaseId))).rejects.toThrow();
  });

  it('serves a release with its own spec, then a legacy release brings the legacy process back', async () => {
    const withSpec = await upload(spec(['_']));
    expect(withSpec.response.status).toBe(201);
    const result = await deploy(withSpec.releaseId);
    expect(result).toMatchObject({ type: 'result', outcome: 'succeeded' });
    const served = await stack.get('/');
    expect(served.headers['x-slipway-release']).toBe(withSpec.releaseId);
    expect(JSON.parse(served.body)).toMatchObject({ release: withSpec.releaseId });
    const status = await (await api(`/apps/${APP}`)).json() as { slots: { slot: string; live: boolean; processes: { pm2Name: string; port: number | null }[] }[] };
    const live = status.slots.find((s) => s.live)!;
    // A spec's process has its own PM2 name; the legacy pinned port of `web` is kept.
    expect(live.processes).toEqual([expect.objectContaining({ pm2Name: `${APP}-${live.slot}-web`, port: stack.slotPorts[live.slot as 'blue' | 'green'] })]);

    const legacy = await upload(null);
    expect(legacy.response.status).toBe(201);
    expect(await deploy(legacy.releaseId)).toMatchObject({ outcome: 'succeeded' });
    const after = await stack.get('/');
    expect(after.headers['x-slipway-release']).toBe(legacy.releaseId);
    const again = await (await api(`/apps/${APP}`)).json() as typeof status;
    const nowLive = again.slots.find((s) => s.live)!;
    expect(nowLive.processes.map((p) => p.pm2Name)).toEqual([`${APP}-${nowLive.slot}`]);
  });
});
