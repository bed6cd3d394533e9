// Host builds (`build.on: "host"`) against real npm, a real file system and a real SQLite state
// database: install, build and prune in the release dir; an unchanged lockfile reuses the install
// (no install step, earlier release byte for byte untouched); failing install and build steps
// leave the release as uploaded and earlier releases untouched; the memory floor refuses early.
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../agent/config.js';
import { HostBuilder, type BuildReport } from '../../agent/build/host-build.js';
import { HostBuildStore } from '../../agent/build/store.js';
import { hostPlatform } from '../../agent/build/platform.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { checkAppSpec, type AppSpec } from '../../contract/spec.js';
import { SlipwayError } from '../../contract/errors.js';
import { runCommand } from '../../lib/exec.js';
import { snapshotTree } from '../helpers/box.js';
import { DEPS_APP_DIR, OFFLINE_BUILD_ENV, warmNpmCache } from '../helpers/host-build-cache.js';

const APP = 'shop';
let root: string;
let home: string;
let db: Db;
let builds: HostBuildStore;

function specOf(raw: Record<string, unknown>): AppSpec {
  const checked = checkAppSpec({ processes: { web: { script: 'server.js' } }, ...raw });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

const hostSpec = (commands: string[][] = [['npm', 'run', 'build']]) => specOf({ build: { on: 'host', dirs: [{ path: '.', commands }] } });

function builder(policy: Record<string, unknown> = {}, meminfo?: string): HostBuilder {
  const config = { home, apps: { [APP]: { build: { allowHost: true, minFreeMemoryBytes: 64 * 1024 * 1024, nice: 10, env: OFFLINE_BUILD_ENV, ...policy } } } } as unknown as AgentConfig;
  return new HostBuilder({
    config, builds, logger: pino({ level: 'silent' }),
    releaseDir: (app, id) => path.join(home, 'releases', app, id),
    hasRelease: () => true,
    ...(meminfo === undefined ? {} : { readMeminfo: async () => meminfo }),
  });
}

function recorder(): BuildReport & { lines: string[]; notes: string[] } {
  const lines: string[] = [];
  const notes: string[] = [];
  return { lines, notes, output: (l) => lines.push(l), note: (n) => notes.push(n) };
}

let releaseCount = 0;
/** A release dir as an upload leaves it: the fixture's files, 0644/0755. */
async function uploadedRelease(patch: (dir: string) => Promise<void> = async () => undefined): Promise<{ id: string; dir: string }> {
  releaseCount++;
  const id = `${String(releaseCount).padStart(12, 'a')}-${createHash('sha256').update(String(releaseCount)).digest('hex').slice(0, 12)}`;
  const dir = path.join(home, 'releases', APP, id);
  await cp(DEPS_APP_DIR, dir, { recursive: true });
  await patch(dir);
  return { id, dir };
}

/** Content and layout of a tree, leaving out modes (a build makes the release read-only) and mtimes of dirs. */
async function contentOf(dir: string): Promise<Record<string, string>> {
  const tree = await snapshotTree(dir, { hash: true });
  return Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, v.startsWith('file') ? `file ${v.split(' ').slice(2).join(' ')}` : v.split(' ')[0]!]));
}

async function expectRefusal(promise: Promise<unknown>, code: string): Promise<SlipwayError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error, 'expected a refusal').toBeInstanceOf(SlipwayError);
  expect((error as SlipwayError).code).toBe(code);
  return error as SlipwayError;
}

async function writeBits(dir: string): Promise<string[]> {
  const tree = await snapshotTree(dir);
  return Object.entries(tree).filter(([, v]) => !v.startsWith('link') && (Number.parseInt(v.split(' ')[1]!, 8) & 0o222) !== 0).map(([k]) => k);
}

beforeAll(async () => {
  await warmNpmCache();
  root = await mkdtemp(path.join(os.tmpdir(), 'slipway-hostbuild-'));
  home = path.join(root, 'home');
  await mkdir(path.join(home, 'releases', APP), { recursive: true });
  db = openDatabase(path.join(home, 'agent.db'));
  builds = new HostBuildStore(db);
}, 300_000);

afterAll(async () => {
  db?.close();
  if (root) {
    await runCommand(['chmod', '-R', 'u+w', root]);
    await rm(root, { recursive: true, force: true });
  }
});

describe('host build', () => {
  let first: { id: string; dir: string };

  it('installs, builds and prunes in the release dir, records the box platform, and leaves the release read-only', async () => {
    first = await uploadedRelease();
    const report = recorder();
    const result = await builder().build({ app: APP, releaseId: first.id, spec: hostSpec(), deploymentId: null, report });
    expect(result.built).toBe(true);
    expect(result.reused).toEqual([]);
    expect(result.steps).toEqual(['install (npm ci --no-audit --no-fund)', 'build (npm run build)', 'prune (npm prune --omit=dev --no-audit …)']);
    expect(report.notes).toContain('install (npm ci --no-audit --no-fund): started');
    // npm's own output came through line by line.
    expect(report.lines.some((l) => l.includes('node build.mjs'))).toBe(true);
    expect(await readFile(path.join(first.dir, 'dist', 'banner.txt'), 'utf8')).toContain('slipway-deps-app built at');
    await expect(stat(path.join(first.dir, 'node_modules', 'express', 'package.json'))).resolves.toBeTruthy();
    // The dev dependency served the build and was pruned afterwards.
    await expect(stat(path.join(first.dir, 'node_modules', 'mustache'))).rejects.toThrow();
    // The built release runs: express and the native addon load from its node_modules.
    const run = await runCommand([process.execPath, '-e', 'require("express"); const b = require("bufferutil"); console.log(typeof b.mask)'], { cwd: first.dir });
    expect(run.stdout.trim()).toBe('function');
    expect(await writeBits(first.dir)).toEqual([]);
    const row = builds.get(APP, first.id)!;
    expect(row.status).toBe('built');
    expect(row.platform).toEqual(hostPlatform());
    expect(row.installs).toEqual([{ dir: '.', key: expect.stringMatching(/^[0-9a-f]{64}$/), reusedFrom: null }]);
    expect(builder().needsBuild(APP, first.id, hostSpec())).toBe(false);
  }, 300_000);

  it('does not build a built release again', async () => {
    const before = await snapshotTree(first.dir, { hash: true });
    const report = recorder();
    const result = await builder().build({ app: APP, releaseId: first.id, spec: hostSpec(), deploymentId: null, report });
    expect(result).toEqual({ built: false, reused: [], steps: [], durationMs: 0 });
    expect(report.notes[0]).toContain('already built on this host');
    expect(await snapshotTree(first.dir, { hash: true })).toEqual(before);
  });

  it('reuses the install of an earlier release with the same lockfile: no install step, and the earlier release is byte for byte untouched', async () => {
    const earlier = await snapshotTree(first.dir, { hash: true });
    const second = await uploadedRelease(async (dir) => writeFile(path.join(dir, 'message.txt'), 'second release\n'));
    const report = recorder();
    // No registry and no cache: an install that ran would fail.
    const result = await builder({ env: { npm_config_offline: 'true', npm_config_cache: path.join(root, 'empty-cache') } })
      .build({ app: APP, releaseId: second.id, spec: hostSpec(), deploymentId: null, report });
    expect(result.built).toBe(true);
    expect(result.reused).toEqual(['.']);
    expect(result.steps.some((s) => s.startsWith('install'))).toBe(false);
    expect(report.notes.find((n) => n.includes('reused the install'))).toContain(`release ${first.id.slice(0, 12)}`);
    expect(await readFile(path.join(second.dir, 'dist', 'banner.txt'), 'utf8')).toContain('built at');
    await expect(stat(path.join(second.dir, 'node_modules', 'mustache'))).rejects.toThrow();
    const run = await runCommand([process.execPath, '-e', 'require("express"); console.log(typeof require("bufferutil").mask)'], { cwd: second.dir });
    expect(run.stdout.trim()).toBe('function');
    // Hardlinks, not copies.
    const linked = await lstat(path.join(second.dir, 'node_modules', 'express', 'package.json'));
    expect(linked.nlink).toBeGreaterThan(1);
    expect(await snapshotTree(first.dir, { hash: true })).toEqual(earlier);
    expect(builds.get(APP, second.id)!.installs[0]!.reusedFrom).toBe(first.id);
  }, 300_000);

  it('a changed lockfile installs afresh', async () => {
    const third = await uploadedRelease(async (dir) => {
      const lock = JSON.parse(await readFile(path.join(dir, 'package-lock.json'), 'utf8')) as { name: string };
      await writeFile(path.join(dir, 'package-lock.json'), `${JSON.stringify({ ...lock }, null, 1)}\n`);
    });
    const result = await builder().build({ app: APP, releaseId: third.id, spec: hostSpec(), deploymentId: null, report: recorder() });
    expect(result.reused).toEqual([]);
    expect(result.steps[0]).toMatch(/^install/);
  }, 300_000);

  it('a failing install leaves the release as uploaded and earlier releases untouched, and says why', async () => {
    const earlier = await snapshotTree(first.dir, { hash: true });
    const bad = await uploadedRelease(async (dir) => {
      const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      pkg.dependencies['left-pad-does-not-exist-slipway'] = '9.9.9';
      await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg));
    });
    const uploaded = await contentOf(bad.dir);
    const error = await expectRefusal(builder().build({ app: APP, releaseId: bad.id, spec: hostSpec(), deploymentId: null, report: recorder() }), 'build_failed');
    expect(error.kind).toBe('refused');
    expect(error.message).toContain('install (npm ci --no-audit --no-fund) exited with code');
    expect(error.details![0]).toBe('step: install (npm ci --no-audit --no-fund)');
    expect(error.details![1]).toMatch(/^exit code: [1-9]/);
    expect(error.details!.slice(3).join('\n')).toMatch(/npm (error|ERR)/);
    expect(error.details!.length).toBeLessThanOrEqual(3 + 20);
    expect(await contentOf(bad.dir)).toEqual(uploaded);
    expect(await writeBits(bad.dir)).toEqual([]);
    expect(await snapshotTree(first.dir, { hash: true })).toEqual(earlier);
    expect(builds.get(APP, bad.id)!.status).toBe('failed');
    expect(builder().needsBuild(APP, bad.id, hostSpec())).toBe(true);
  }, 300_000);

  it('a failing build command (with the install reused) leaves the release as uploaded and earlier releases untouched', async () => {
    const earlier = await snapshotTree(first.dir, { hash: true });
    const bad = await uploadedRelease();
    const uploaded = await contentOf(bad.dir);
    const report = recorder();
    const error = await expectRefusal(builder().build({
      app: APP, releaseId: bad.id, deploymentId: null, report,
      spec: hostSpec([['npm', 'run', 'build'], [process.execPath, '-e', 'for (let i = 0; i < 30; i++) console.log("line " + i); console.error("boom"); process.exit(3)']]),
    }), 'build_failed');
    expect(error.message).toMatch(/failed: build \(.* -e .*\) exited with code 3$/);
    expect(error.details![1]).toBe('exit code: 3');
    expect(error.details!.at(-1)).toBe('boom');
    expect(error.details!.length).toBe(3 + 20);
    expect(report.lines).toContain('line 0');
    expect(await contentOf(bad.dir)).toEqual(uploaded);
    expect(await snapshotTree(first.dir, { hash: true })).toEqual(earlier);
  }, 300_000);

  it('a build the agent died in is undone before the release is built again', async () => {
    const rel = await uploadedRelease();
    const uploaded = [...(await import('../../lib/link-tree.js').then((m) => m.listTree(rel.dir)))];
    // What a kill -9 mid-build leaves: a running record and half the output.
    builds.start({ app: APP, releaseId: rel.id, platform: hostPlatform(), deploymentId: null, uploadedTree: uploaded });
    await mkdir(path.join(rel.dir, 'dist', 'half'), { recursive: true });
    await writeFile(path.join(rel.dir, 'dist', 'half', 'stale.js'), 'half-built\n');
    const report = recorder();
    const spec = specOf({ build: { on: 'host', dirs: [{ install: 'none', commands: [] }] } });
    await builder().build({ app: APP, releaseId: rel.id, spec, deploymentId: null, report });
    expect(report.notes[0]).toBe('an earlier build of this release was interrupted: removed 1 path(s) it had added');
    await expect(stat(path.join(rel.dir, 'dist'))).rejects.toThrow();
    expect(builds.get(APP, rel.id)!.status).toBe('built');
  });

  it('a step past the time limit is killed and reported as timed out', async () => {
    const slow = await uploadedRelease();
    const spec = specOf({ build: { on: 'host', timeoutMs: 1000, dirs: [{ install: 'none', commands: [[process.execPath, '-e', 'setTimeout(() => {}, 60000)']] }] } });
    const error = await expectRefusal(builder().build({ app: APP, releaseId: slow.id, spec, deploymentId: null, report: recorder() }), 'build_failed');
    expect(error.message).toContain('timed out after');
    expect(error.details![1]).toContain('(timed out)');
  }, 60_000);

  it('runs steps at lowered CPU and I/O priority', async () => {
    const rel = await uploadedRelease();
    const spec = specOf({ build: { on: 'host', dirs: [{ install: 'none', commands: [['sh', '-c', 'echo nice=$(nice) io=$(ionice)']] }] } });
    const report = recorder();
    await builder({ nice: 7 }).build({ app: APP, releaseId: rel.id, spec, deploymentId: null, report });
    expect(report.lines).toContain(`nice=${Math.min(19, os.getPriority() + 7)} io=idle`);
  }, 60_000);

  it('refuses before changing anything when memory is below the floor, or host builds are not allowed', async () => {
    const rel = await uploadedRelease();
    const uploaded = await snapshotTree(rel.dir, { hash: true });
    const low = await expectRefusal(builder({ minFreeMemoryBytes: 512 * 1024 * 1024 }, 'MemTotal: 1000000 kB\nMemAvailable:   102400 kB\n')
      .build({ app: APP, releaseId: rel.id, spec: hostSpec(), deploymentId: null, report: recorder() }), 'build_memory_low');
    expect(low.message).toContain('only 100 MiB of memory is available, below the floor of 512 MiB');
    await expectRefusal(builder({ allowHost: false }).build({ app: APP, releaseId: rel.id, spec: hostSpec(), deploymentId: null, report: recorder() }), 'build_not_allowed');
    expect(await snapshotTree(rel.dir, { hash: true })).toEqual(uploaded);
    expect(builds.get(APP, rel.id)).toBeUndefined();
  });
});

describe('linkTree', () => {
  it('copies where it cannot link (another file system), and leaves the source as it was', async () => {
    const source = path.join(root, 'link-source');
    await mkdir(path.join(source, 'pkg', 'lib'), { recursive: true });
    await writeFile(path.join(source, 'pkg', 'lib', 'index.js'), 'module.exports = 1;\n', { mode: 0o444 });
    await writeFile(path.join(source, '.package-lock.json'), '{}\n');
    await (await import('node:fs/promises')).symlink('../pkg/lib/index.js', path.join(source, 'pkg', 'bin.js'));
    const before = await snapshotTree(source, { hash: true });
    const { linkTree } = await import('../../lib/link-tree.js');
    const sameDevice = await linkTree(source, path.join(root, 'link-target'), { copy: (rel) => !rel.includes('/') });
    expect(sameDevice).toEqual({ linked: 1, copied: 1 });
    const shm = await stat('/dev/shm').catch(() => null);
    if (shm && shm.dev !== (await stat(root)).dev) {
      const other = await mkdtemp('/dev/shm/slipway-link-');
      try {
        expect(await linkTree(source, path.join(other, 'copy'))).toEqual({ linked: 0, copied: 2 });
        const copy = await snapshotTree(path.join(other, 'copy'), { hash: true });
        const content = (t: Record<string, string>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.startsWith('file') ? `${v.split(' ')[1]} ${v.split(' ')[4]}` : v]));
        expect(content(copy)).toEqual(content(before));
      } finally {
        await rm(other, { recursive: true, force: true });
      }
    }
    expect(await snapshotTree(source, { hash: true })).toEqual(before);
  });
});

