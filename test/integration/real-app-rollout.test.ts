// Releases with an app spec through the real agent, nginx and PM2 (legacy app config for the
// process; the spec's build, release phase and smoke checks from the release's manifest): a host
// build streamed and kept in history, a second release reusing the install, a failing release
// command and a failing build leaving the live slot and state untouched, a smoke check failing
// after the switch swapping traffic back, and native addons of another platform refused at upload
// and at rollout entry. DEPLOYMENT_INFO.json is in every release dir.
import { appendFile, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentEvent, DeploymentResult } from '../../contract/api.js';
import type { BuildPlatform } from '../../contract/platform.js';
import { hostPlatform } from '../../agent/build/platform.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { agentRequest, agentToken, liveView, sha256Hex, snapshotTree, stateFingerprint } from '../helpers/box.js';
import { DEPS_APP_DIR, OFFLINE_BUILD_ENV, warmNpmCache } from '../helpers/host-build-cache.js';
import { entriesOfDir, specRelease, type SpecRelease } from '../helpers/spec-release.js';

const ACTOR = 'alice@laptop';
let stack: Stack;
let releaseLog: string;

const appendLine = "require('fs').appendFileSync(process.env.RELEASE_LOG, [process.env.SLIPWAY_RELEASE, process.cwd(), process.env.SAMPLE_GREETING].join(' ') + '\\n')";

function spec(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    processes: { web: { script: 'server.js' } },
    routes: [{ serverNames: ['_'], process: 'web' }],
    build: { on: 'host', dirs: [{ commands: [['npm', 'run', 'build']] }] },
    release: [[process.execPath, '-e', appendLine]],
    smoke: [{ name: 'home', path: '/', json: { pointer: '/message', equals: 'deps app, first commit' } }],
    // A spec release's own watch window applies (the legacy config's does not): short for tests.
    watch: { windowMs: 1500, intervalMs: 200, failuresToRollback: 2, keepPreviousWarm: true },
    ...over,
  };
}

async function release(rawSpec: Record<string, unknown>, extra: Record<string, string | Buffer> = {}, build: SpecRelease['manifest']['build'] = null): Promise<SpecRelease> {
  return specRelease(APP, await entriesOfDir(DEPS_APP_DIR, extra), rawSpec, { build });
}

/** PUT with the actor header the controller sends. */
async function uploadAs(r: SpecRelease) {
  return agentRequest(stack, 'PUT', `/apps/${APP}/releases/${r.releaseId}`, {
    headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': sha256Hex(r.archive), 'x-slipway-actor': ACTOR },
    body: r.archive,
  });
}

/** Starts a deploy through the API and reads its whole stream (a host build may be quiet for a while). */
function deploy(releaseId: string): Promise<{ status: number; result: DeploymentResult | null; events: DeploymentEvent[]; body: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ releaseId });
    const req = http.request({
      host: '127.0.0.1', port: stack.agentPort, method: 'POST', path: `/apps/${APP}/deployments`, agent: false,
      headers: { authorization: `Bearer ${agentToken(stack)}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), 'x-slipway-actor': ACTOR },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) {
          resolve({ status: res.statusCode ?? 0, result: null, events: [], body: JSON.parse(text) as Record<string, unknown> });
          return;
        }
        const lines = text.trim().split('\n').map((l) => JSON.parse(l) as DeploymentEvent | DeploymentResult);
        resolve({ status: 200, result: (lines.find((l) => l.type === 'result') as DeploymentResult | undefined) ?? null, events: lines.filter((l): l is DeploymentEvent => l.type === 'event'), body: null });
      });
    });
    req.setTimeout(600_000, () => req.destroy(new Error('deploy stream timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

const messages = (events: DeploymentEvent[], step: string) => events.filter((e) => e.step === step).map((e) => `${e.status} ${e.message ?? ''}`);

beforeAll(async () => {
  await warmNpmCache();
  stack = await startStack({
    appConfig: {
      build: { env: OFFLINE_BUILD_ENV, minFreeMemoryBytes: 0 },
      watch: { windowMs: 1500, intervalMs: 200, failuresToRollback: 2, keepPreviousWarm: true },
    },
  });
  releaseLog = path.join(stack.dir, 'release.log');
  await appendFile(stack.envFile, `RELEASE_LOG=${releaseLog}\n`);
}, 300_000);

afterAll(async () => {
  await stack?.stop();
});

describe('a release with an app spec', () => {
  let first: SpecRelease;
  let second: SpecRelease;

  it('is built on the host (output streamed and kept), runs its release phase with the app env in the release dir, and serves', async () => {
    first = await release(spec());
    expect((await uploadAs(first)).status).toBe(201);
    const dir = path.join(stack.home, 'releases', APP, first.releaseId);
    const info = JSON.parse(await readFile(path.join(dir, 'DEPLOYMENT_INFO.json'), 'utf8')) as Record<string, unknown>;
    expect(info).toMatchObject({ releaseId: first.releaseId, sha: first.manifest.sha, tag: 'v1.2.3', branch: 'main', specDigest: first.manifest.specDigest, deployedBy: ACTOR });
    expect((await stat(path.join(dir, 'DEPLOYMENT_INFO.json'))).mode & 0o777).toBe(0o444);

    const run = await deploy(first.releaseId);
    expect(run.result?.outcome, JSON.stringify(run.result)).toBe('succeeded');
    const build = messages(run.events, 'build');
    expect(build).toContain('started ');
    expect(build).toContain('info install (npm ci --no-audit --no-fund): started');
    expect(build.some((m) => m.includes('node build.mjs'))).toBe(true);
    expect(build.at(-1)).toMatch(/^ok built on the host in \d+ ms: 3 step\(s\)$/);
    // After the build, before the processes start.
    const steps = run.events.filter((e) => e.status === 'started').map((e) => e.step);
    expect(steps.indexOf('build')).toBeLessThan(steps.indexOf('release'));
    expect(steps.indexOf('release')).toBeLessThan(steps.indexOf('starting'));
    expect(await readFile(releaseLog, 'utf8')).toBe(`${first.releaseId} ${dir} hello\n`);
    expect((await liveView(stack)).release).toBe(first.releaseId);
    // Kept for `deploy history`.
    const detail = await agentRequest(stack, 'GET', `/apps/${APP}/deployments/${run.result!.deploymentId}`);
    const kept = (detail.json!.events as DeploymentEvent[]).filter((e) => e.step === 'build').map((e) => e.message ?? '');
    expect(kept.some((m) => m.includes('node build.mjs'))).toBe(true);
    const cli = await stack.deploy(['history', '--show', String(run.result!.deploymentId)]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/· build +> node build\.mjs/);
    expect(cli.stdout).toMatch(/✓ release .*1 release command\(s\) succeeded/);
  }, 600_000);

  it('a second release with the same lockfile reuses the install; the live release is untouched', async () => {
    const liveDir = path.join(stack.home, 'releases', APP, first.releaseId);
    const before = await snapshotTree(liveDir, { hash: true });
    second = await release(spec(), { 'message.txt': 'deps app, first commit\n', 'extra.txt': 'second\n' });
    expect((await uploadAs(second)).status).toBe(201);
    const run = await deploy(second.releaseId);
    expect(run.result?.outcome, JSON.stringify(run.result)).toBe('succeeded');
    const build = messages(run.events, 'build');
    expect(build.some((m) => m.startsWith('info install (npm'))).toBe(false);
    expect(build.find((m) => m.includes('reused the install'))).toContain(`release ${first.releaseId.slice(0, 12)}`);
    expect(build.at(-1)).toContain('install reused in .');
    expect(await snapshotTree(liveDir, { hash: true })).toEqual(before);
    expect((await liveView(stack)).release).toBe(second.releaseId);
  }, 600_000);

  it('a failing release command stops the rollout before anything starts and shows its output', async () => {
    const bad = await release(spec({ release: [[process.execPath, '-e', 'console.log("migrating"); console.error("relation users does not exist"); process.exit(4)']] }));
    expect((await uploadAs(bad)).status).toBe(201);
    const before = { fingerprint: stateFingerprint(stack), live: await liveView(stack) };
    const run = await deploy(bad.releaseId);
    expect(run.result?.outcome).toBe('failed');
    expect(run.result?.phase).toBe('before_switch');
    expect(run.result?.error?.error).toBe('release_phase_failed');
    expect(run.result?.error?.message).toContain('exited with code 4; nothing was started or switched');
    expect(run.result?.error?.details).toEqual(expect.arrayContaining(['migrating', 'relation users does not exist', 'exit code: 4']));
    expect(messages(run.events, 'release')).toContain('info relation users does not exist');
    expect(run.events.some((e) => e.step === 'starting')).toBe(false);
    const after = stateFingerprint(stack);
    expect({ ...after, deployments: [] }).toEqual({ ...before.fingerprint, deployments: [] });
    expect(await liveView(stack)).toEqual(before.live);
  }, 600_000);

  it('a failing build stops the rollout before anything starts, with the exit code and last lines', async () => {
    const bad = await release(spec({ build: { on: 'host', dirs: [{ commands: [[process.execPath, '-e', 'console.error("src/app.ts(3,1): error TS2304"); process.exit(2)']] }] } }));
    expect((await uploadAs(bad)).status).toBe(201);
    const before = { fingerprint: stateFingerprint(stack), live: await liveView(stack) };
    const run = await deploy(bad.releaseId);
    expect(run.result?.outcome).toBe('failed');
    expect(run.result?.error?.error).toBe('build_failed');
    expect(run.result?.error?.details).toEqual(expect.arrayContaining(['exit code: 2', 'src/app.ts(3,1): error TS2304']));
    expect(run.events.some((e) => e.step === 'release' || e.step === 'starting')).toBe(false);
    expect({ ...stateFingerprint(stack), deployments: [] }).toEqual({ ...before.fingerprint, deployments: [] });
    expect(await liveView(stack)).toEqual(before.live);
  }, 600_000);

  it('a smoke check failing after the switch swaps traffic back, naming the check and what it saw', async () => {
    const bad = await release(spec({ smoke: [{ name: 'greeting', path: '/', json: { pointer: '/message', equals: 'hello' } }] }), { 'extra.txt': 'smoke\n' });
    expect((await uploadAs(bad)).status).toBe(201);
    const run = await deploy(bad.releaseId);
    expect(run.result?.outcome, JSON.stringify(run.result)).toBe('rolled_back');
    expect(run.result?.error?.error).toBe('watch_failed');
    expect(run.result?.reason).toContain('smoke check: smoke "greeting" (GET /): JSON pointer "/message" is "deps app, first commit", expected "hello"; saw HTTP 200, body "{');
    expect(run.events.some((e) => e.step === 'switching' && e.status === 'ok')).toBe(true);
    expect((await liveView(stack)).release).toBe(second.releaseId);
  }, 600_000);
});

describe('native addons built for another platform', () => {
  const foreign = (): BuildPlatform => ({ ...hostPlatform(), arch: hostPlatform().arch === 'x64' ? 'arm64' : 'x64' });
  const addon = { 'node_modules/fake/build/Release/fake.node': Buffer.from('\u007fELF not really') };
  const legacy = () => {
    const { build: _build, ...rest } = spec({ release: [], smoke: [] });
    return rest;
  };

  it('are refused at upload, before the release is stored', async () => {
    const r = await release(legacy(), addon, { on: 'controller', platform: foreign(), steps: ['npm ci'] });
    const answer = await uploadAs(r);
    expect(answer.status).toBe(422);
    expect(answer.json).toMatchObject({ error: 'platform_mismatch', hint: expect.stringContaining('"build": {"on": "host"}') });
    expect(answer.json!.message).toContain(`built for CPU ${foreign().arch}`);
    await expect(stat(path.join(stack.home, 'releases', APP, r.releaseId))).rejects.toThrow();
  }, 120_000);

  it('are refused at rollout entry when the box no longer matches (e.g. after a Node upgrade), before anything starts', async () => {
    const r = await release(legacy(), addon, { on: 'controller', platform: hostPlatform(), steps: ['npm ci'] });
    expect((await uploadAs(r)).status).toBe(201);
    // What a Node upgrade on the box looks like from the release's side: its recorded ABI is no longer the host's.
    const db = new Database(path.join(stack.home, 'agent.db'));
    try {
      const manifest = { ...r.manifest, build: { on: 'controller', platform: { ...hostPlatform(), nodeAbi: '93', nodeVersion: 'v16.20.0' }, steps: ['npm ci'] } };
      db.prepare('UPDATE releases SET manifest = ? WHERE app = ? AND release_id = ?').run(JSON.stringify(manifest), APP, r.releaseId);
    } finally {
      db.close();
    }
    const before = stateFingerprint(stack);
    const run = await deploy(r.releaseId);
    expect(run.status).toBe(422);
    expect(run.body).toMatchObject({ error: 'platform_mismatch' });
    expect(String(run.body!.message)).toContain('built for Node ABI 93 (Node v16.20.0)');
    expect(stateFingerprint(stack)).toEqual(before);
  }, 120_000);
});
