// Issue 12 end to end with real npm dependencies, against the design in DESIGN-12: the deps-app
// fixture (express, the bufferutil native addon, a build step using the dev dependency mustache,
// package-lock.json committed) built on the controller and, with `build.on: "host"`, on the box.
// npm runs offline from a cache warmed from the registry once in beforeAll.
//
// "real apps e2e" blocks need issue 12's controller build, host build and spec support merged;
// they are written against the designed behaviour and fail on a tree without it.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotTree } from '../helpers/box.js';
import { warmNpmCache, type NpmCache } from '../helpers/npm-warm-cache.js';
import { DEPS_APP_DIR, depsSpec } from '../helpers/real-apps.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';

const APP = 'deps';

describe('real apps e2e: app with real npm dependencies (express + bufferutil), controller build and build.on host', () => {
  let stack: Stack;
  let npmCache: NpmCache;
  let emptyCache: string;
  let offline: Record<string, string>;

  const releaseDir = (releaseId: string) => path.join(stack.home, 'releases', APP, releaseId);
  const served = async () => {
    const answer = await stack.get('/');
    return { status: answer.status, ...(answer.status === 200 ? JSON.parse(answer.body) as { release: string; banner: string | null } : {}) };
  };
  const setHostBuildCache = async (cache: string) => {
    const config = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8')) as { apps: Record<string, { build: { env: Record<string, string> } }> };
    config.apps[APP]!.build.env = { npm_config_cache: cache, npm_config_offline: 'true' };
    await fs.writeFile(stack.agentConfigPath, JSON.stringify(config, null, 2));
    await stack.restartAgent();
  };

  beforeAll(async () => {
    npmCache = await warmNpmCache(0);
    offline = npmCache.offlineEnv(npmCache.rootCache);
    emptyCache = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-empty-npm-cache-'));
    stack = await startStack({
      app: APP,
      appDir: DEPS_APP_DIR,
      envFileContent: 'DEPS_GREETING=hello\n',
      policy: { serverNames: ['_'], build: { env: offline, minFreeMemoryBytes: 64 * 2 ** 20 } },
    });
  }, 600_000);
  afterAll(async () => {
    await stack?.stop();
    await npmCache?.stop();
    if (emptyCache) await fs.rm(emptyCache, { recursive: true, force: true });
  });

  it('controller build: a clean checkout is installed, built and pruned; the box runs express with its native addon', async () => {
    const sha = await stack.repo.commit({ 'deploy.spec.json': depsSpec('controller', stack.publicPort) }, 'deploy with a controller build');
    const pushed = await stack.deploy(['push'], { env: offline });
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const release = releaseOfCommit(stack.home, APP, sha);
    const answer = await served();
    expect(answer).toMatchObject({ status: 200, release });
    // dist/banner.txt exists only in the built release (not in git).
    expect(answer.banner).toMatch(/^slipway-deps-app built at /);
    const health = JSON.parse((await stack.get('/health')).body) as { ok: boolean; native: string };
    expect(health).toMatchObject({ ok: true });
    expect(health.native).toMatch(/^[0-9a-f]{8}$/);
    // Production dependencies shipped, the dev dependency pruned, nothing installed in the work tree.
    await expect(fs.access(path.join(releaseDir(release), 'node_modules', 'express', 'package.json'))).resolves.toBeUndefined();
    await expect(fs.access(path.join(releaseDir(release), 'node_modules', 'mustache'))).rejects.toThrow();
    await expect(fs.access(path.join(stack.repo.dir, 'node_modules'))).rejects.toThrow();
    await expect(fs.access(path.join(stack.repo.dir, 'dist'))).rejects.toThrow();
    // The manifest records where and for which platform it was built.
    const manifest = JSON.parse(await fs.readFile(path.join(releaseDir(release), 'manifest.json'), 'utf8')) as { schemaVersion: number; build?: { on: string; platform: Record<string, unknown> } };
    expect(manifest.schemaVersion).toBe(3);
    expect(manifest.build?.on).toBe('controller');
    expect(manifest.build?.platform).toMatchObject({ arch: process.arch });
  });

  it('build.on host: the box installs and builds; an unchanged lockfile reuses node_modules without the network and leaves the earlier release untouched', async () => {
    const first = await stack.repo.commit({ 'deploy.spec.json': depsSpec('host', stack.publicPort) }, 'build on the host');
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const r1 = releaseOfCommit(stack.home, APP, first);
    expect(await served()).toMatchObject({ status: 200, release: r1 });
    await expect(fs.access(path.join(releaseDir(r1), 'node_modules', 'bufferutil', 'package.json'))).resolves.toBeUndefined();
    const before = await snapshotTree(path.join(releaseDir(r1), 'node_modules'), { hash: true });

    // From now on npm on the box has an empty cache and may not go online: only reuse can succeed.
    await setHostBuildCache(emptyCache);
    const second = await stack.repo.commit({ 'message.txt': 'same lockfile\n' }, 'unchanged lockfile');
    const started = Date.now();
    const again = await stack.deploy(['push']);
    expect(again.code, again.stderr + again.stdout).toBe(0);
    const r2 = releaseOfCommit(stack.home, APP, second);
    expect(await served()).toMatchObject({ status: 200, release: r2 });
    expect(JSON.parse((await stack.get('/health')).body)).toMatchObject({ ok: true });
    expect(Date.now() - started).toBeLessThan(60_000);
    // The earlier release's node_modules: same files, same content, same mtimes.
    expect(await snapshotTree(path.join(releaseDir(r1), 'node_modules'), { hash: true })).toEqual(before);
    expect(await fs.readdir(emptyCache).catch(() => [])).not.toContain('_cacache');
  });

  it('a failing install (a dependency the lockfile and the offline cache lack) leaves slots, traffic and earlier releases untouched, with the exit code and the last lines', async () => {
    await setHostBuildCache(npmCache.rootCache);
    const live = readState(stack.home, APP);
    const liveRelease = (await served()).release;
    const pkg = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    pkg.dependencies['left-pad'] = '1.3.0';
    await stack.repo.commit({ 'package.json': `${JSON.stringify(pkg, null, 2)}\n`, 'deploy.spec.json': depsSpec('controller', stack.publicPort) }, 'a dependency nobody installed');
    const result = await stack.deploy(['push'], { env: offline });
    expect(result.code, result.stderr + result.stdout).toBe(3);
    const output = result.stdout + result.stderr;
    expect(output).toContain('npm ci');
    // npm's own words about the dependency it could not install (out of sync, or not in the offline cache).
    expect(output).toMatch(/left-pad/);
    expect(output).toMatch(/exit(ed)?( with)?( code)? 1|code 1/);
    expect(await served()).toMatchObject({ status: 200, release: liveRelease });
    const now = readState(stack.home, APP);
    expect(now.app?.liveSlot).toBe(live.app?.liveSlot);
    expect(now.slots.map((s) => `${s.slot} ${s.releaseId}`)).toEqual(live.slots.map((s) => `${s.slot} ${s.releaseId}`));
    expect(now.releases.map((r) => r.releaseId).sort()).toEqual(live.releases.map((r) => r.releaseId).sort());
  });
});
