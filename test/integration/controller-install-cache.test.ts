/**
 * The controller-side install cache with real npm and git: the first build of deps-app installs
 * and keeps its node_modules; a build of another commit with the same lockfile links it in and
 * runs no install (proved with an EMPTY offline npm cache, where `npm ci` could not succeed);
 * a reused install ships the same content digest as a fresh one of the same commit; build and
 * prune leave the kept install's files byte-identical; a changed lockfile installs afresh.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAppSpec, type BuildSpec } from '../../contract/spec.js';
import { InstallCache } from '../../controller/build/install-cache.js';
import { buildRelease, type BuildInput } from '../../controller/build/run.js';
import { prepareRelease } from '../../controller/pack.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';
import { npmOfflineEnv, requireWarmNpmCache } from '../helpers/npm-cache.js';

const DEPS_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'deps-app');

function buildSpec(): BuildSpec {
  const checked = checkAppSpec({ processes: { web: { script: 'server.js' } }, build: { dirs: [{ path: '.', commands: [['npm', 'run', 'build']] }] } });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec.build!;
}

/** Every entry of a tree with its type, mode, content hash or link target: equal lists mean byte-identical trees. */
async function treeSnapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of (await fs.readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      const full = path.join(root, child);
      const st = await fs.lstat(full);
      if (entry.isDirectory()) {
        out.push(`d ${child} ${(st.mode & 0o7777).toString(8)}`);
        await walk(child);
      } else if (entry.isSymbolicLink()) out.push(`l ${child} -> ${await fs.readlink(full)}`);
      else out.push(`f ${child} ${(st.mode & 0o7777).toString(8)} ${st.size} ${createHash('sha256').update(await fs.readFile(full)).digest('hex')}`);
    }
  };
  await walk('');
  return out;
}

describe('controller-side install cache (deps-app, real npm from the offline cache)', () => {
  let dir: string;
  let repo: AppRepo;
  let cache: InstallCache;
  let emptyNpmCache: string;
  const lines: string[] = [];
  const input = (treeish: string, npmEnv: Record<string, string>, installCache: InstallCache | null = cache): BuildInput => ({
    repo: repo.dir, treeish, label: treeish.slice(0, 12), build: buildSpec(), commitTime: '2026-11-01T10:00:00.000Z',
    env: { ...process.env, ...npmEnv },
    progress: { step: (message) => lines.push(message), line: (step, text) => lines.push(`[${step.dir}] | ${text}`) },
    installCache,
  });
  /** Builds and packs `treeish`; returns the steps, the content digest and what the build printed. */
  const buildAndDigest = async (treeish: string, npmEnv: Record<string, string>, installCache: InstallCache | null = cache) => {
    lines.length = 0;
    const built = await buildRelease(input(treeish, npmEnv, installCache));
    try {
      const prepared = await prepareRelease({ repo: repo.dir, treeish, include: [], builtDir: built.dir, mtime: new Date(0) });
      await prepared.cleanup();
      const modules = await fs.readdir(path.join(built.dir, 'node_modules'));
      return { steps: built.steps, digest: prepared.contentDigest, lines: [...lines], modules };
    } finally {
      await built.cleanup();
    }
  };
  const offlineEmpty = () => ({ ...npmOfflineEnv(), npm_config_cache: emptyNpmCache });
  const entries = async () => (await fs.readdir(cache.dir)).filter((name) => !name.startsWith('.')).sort();

  beforeAll(async () => {
    requireWarmNpmCache();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-install-cache-'));
    repo = await createAppRepo(path.join(dir, 'app'), DEPS_APP_DIR);
    cache = new InstallCache(path.join(dir, 'installs'), 'deps');
    emptyNpmCache = path.join(dir, 'empty-npm-cache');
    await fs.mkdir(emptyNpmCache);
  });
  afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  it('installs once, then reuses the install for a commit with the same lockfile, with the digest of a fresh install and the cache untouched', async () => {
    const first = await repo.head();
    const fresh = await buildAndDigest(first, npmOfflineEnv());
    expect(fresh.steps[0]).toMatch(/^\[\.\] npm ci --no-audit --no-fund: \d/);
    expect(fresh.lines).toContainEqual(expect.stringMatching(/^ {2}build: \[\.\] node_modules kept for reuse in .* \(key [0-9a-f]{12}, /));
    const [key] = await entries();
    expect(await entries()).toEqual([key]);
    // Kept before build and prune: the dev dependency is in the cache, not in the release.
    await expect(fs.stat(path.join(cache.entry(key!), 'mustache', 'package.json'))).resolves.toBeTruthy();
    expect(fresh.modules).not.toContain('mustache');
    const before = await treeSnapshot(cache.dir);

    // Another commit, same lockfile, and an npm cache with nothing in it: an install would fail.
    const second = await repo.commit({ 'message.txt': 'second commit\n' }, 'change a file the install does not read');
    const reused = await buildAndDigest(second, offlineEmpty());
    expect(reused.steps).toEqual([
      expect.stringMatching(new RegExp(`^\\[\\.\\] npm ci --no-audit --no-fund skipped: node_modules reused \\(lockfile unchanged, key ${key!.slice(0, 12)}\\): \\d`)),
      expect.stringMatching(/^\[\.\] npm run build: \d/),
      expect.stringMatching(/^\[\.\] npm prune --omit=dev --no-audit --no-fund: \d/),
    ]);
    expect(reused.lines).toContainEqual(expect.stringMatching(/^ {2}build: \[\.\] npm ci --no-audit --no-fund skipped: node_modules reused \(lockfile unchanged; \d+ files linked, \d+ copied in /));
    expect(reused.lines).not.toContain('  build: [.] npm ci --no-audit --no-fund');
    expect(reused.modules).toContain('express');
    expect(reused.modules).not.toContain('mustache');

    // The first commit again, from the cache: the same release as its fresh install.
    const again = await buildAndDigest(first, offlineEmpty());
    expect(again.steps[0]).toMatch(/skipped: node_modules reused/);
    expect(again.digest).toBe(fresh.digest);
    // And a build without the cache at all agrees too.
    expect((await buildAndDigest(first, npmOfflineEnv(), null)).digest).toBe(fresh.digest);

    expect(await treeSnapshot(cache.dir)).toEqual(before);
    expect(await entries()).toEqual([key]);
  });

  it('a changed lockfile misses: npm ci runs and its install is kept beside the other', async () => {
    const [oldKey] = await entries();
    const lock = JSON.parse(await fs.readFile(path.join(repo.dir, 'package-lock.json'), 'utf8')) as unknown;
    // Other bytes, the same packages: offline npm can install it, but it is not the same lockfile.
    const sha = await repo.commit({ 'package-lock.json': `${JSON.stringify(lock, null, 1)}\n` }, 'reformat the lockfile');
    const built = await buildAndDigest(sha, npmOfflineEnv());
    expect(built.steps[0]).toMatch(/^\[\.\] npm ci --no-audit --no-fund: \d/);
    expect(await entries()).toHaveLength(2);
    expect(await entries()).toContain(oldKey);
  });
});

describe('InstallCache eviction', () => {
  let root: string;
  beforeAll(async () => { root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-install-evict-')); });
  afterAll(async () => { await fs.rm(root, { recursive: true, force: true }); });

  it('keeps the 3 most recently used installs of an app; a reuse counts as a use; stale temp dirs go', async () => {
    const cache = new InstallCache(path.join(root, 'installs'), 'app');
    const source = path.join(root, 'node_modules');
    await fs.mkdir(path.join(source, 'pkg'), { recursive: true });
    await fs.writeFile(path.join(source, 'pkg', 'index.js'), 'module.exports = 1;\n');
    await fs.writeFile(path.join(source, '.package-lock.json'), '{}\n');
    const age = async (key: string, minutesAgo: number) => {
      const at = new Date(Date.now() - minutesAgo * 60_000);
      await fs.utimes(path.join(cache.dir, key), at, at);
    };
    for (const [i, key] of ['a', 'b', 'c'].entries()) {
      await cache.store(key, source);
      await age(key, 30 - i);
    }
    // "a" is the oldest, but used now: "b" goes when "d" arrives.
    const target = path.join(root, 'restored');
    expect(await cache.restore('a', target)).toMatchObject({ linked: 1, copied: 1 });
    expect(await fs.readFile(path.join(target, 'pkg', 'index.js'), 'utf8')).toBe('module.exports = 1;\n');
    // Root-level bookkeeping is a copy: rewriting it leaves the cached one alone.
    await fs.writeFile(path.join(target, '.package-lock.json'), 'rewritten\n');
    expect(await fs.readFile(path.join(cache.entry('a'), '.package-lock.json'), 'utf8')).toBe('{}\n');
    await fs.mkdir(path.join(cache.dir, '.tmp-dead'));
    await age('.tmp-dead', 120);
    await cache.store('d', source);
    expect((await fs.readdir(cache.dir)).sort()).toEqual(['a', 'c', 'd']);
    expect(await cache.restore('b', path.join(root, 'missing'))).toBeNull();
    await expect(fs.stat(path.join(root, 'missing'))).rejects.toThrow();
  });
});
