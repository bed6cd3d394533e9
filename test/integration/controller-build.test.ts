/**
 * The controller-side build on its own (no host): a monorepo's directories each get their
 * install, commands and prune in their own cwd, from a clean checkout of the commit (a dirty
 * snapshot included); `include` output from the work tree is added to the built tree; the same
 * commit builds to the same content digest twice (so the release id repeats); the deadline holds.
 * npm installs come from the warm test cache, offline.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { checkAppSpec, type BuildSpec } from '../../contract/spec.js';
import { buildRelease, type BuildInput } from '../../controller/build/run.js';
import { snapshotWorkTree } from '../../controller/git.js';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease } from '../../controller/pack.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';
import { npmOfflineEnv, requireWarmNpmCache } from '../helpers/npm-cache.js';
import { waitFor } from '../helpers/wait.js';

const DEPS_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'deps-app');

function buildSpec(build: unknown): BuildSpec {
  const checked = checkAppSpec({ processes: { web: { script: 'frontend/server.js' } }, build });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec.build!;
}

/** Lists a plain tar's entry paths. */
async function tarPaths(file: string): Promise<string[]> {
  const paths: string[] = [];
  await tar.t({ file, onReadEntry: (entry) => { paths.push(entry.path.replace(/\/$/, '')); } });
  return paths;
}

describe('controller-side build (real git, npm from the warm cache)', () => {
  let dir: string;
  let repo: AppRepo;
  let sha: string;
  const lines: string[] = [];
  const input = (build: BuildSpec, treeish = sha): BuildInput => ({
    repo: repo.dir, treeish, label: treeish.slice(0, 12), build, commitTime: '2026-11-01T10:00:00.000Z',
    env: { ...process.env, ...npmOfflineEnv() },
    progress: { step: (message) => lines.push(message), line: (step, text) => lines.push(`[${step.dir}] | ${text}`) },
    installCache: null,
  });

  beforeAll(async () => {
    requireWarmNpmCache();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-controller-build-'));
    repo = await createAppRepo(path.join(dir, 'app'), path.join(REPO_ROOT, 'test', 'fixtures', 'sample-app'));
    const files: Record<string, string> = { 'backend/main.py': 'print("hi")\n', '.gitignore': 'ci-out/\n' };
    for (const name of await fs.readdir(DEPS_APP_DIR)) files[`frontend/${name}`] = await fs.readFile(path.join(DEPS_APP_DIR, name), 'utf8');
    sha = await repo.commit(files, 'monorepo');
  });
  afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  it('runs each directory\'s steps in that directory and keeps a timed summary', async () => {
    lines.length = 0;
    const build = buildSpec({
      dirs: [
        { path: 'frontend', commands: [['npm', 'run', 'build']] },
        { path: 'backend', commands: [['python3', '-c', 'import os; open("built.txt", "w").write(os.getcwd())']] },
      ],
    });
    const built = await buildRelease(input(build));
    try {
      expect(built.steps).toEqual([
        expect.stringMatching(/^\[frontend\] npm ci --no-audit --no-fund: \d/),
        expect.stringMatching(/^\[frontend\] npm run build: \d/),
        expect.stringMatching(/^\[frontend\] npm prune --omit=dev --no-audit --no-fund: \d/),
        '[backend] no package.json: nothing to install',
        expect.stringMatching(/^\[backend\] python3 -c .*: \d/),
      ]);
      expect(lines).toContain('  build: [frontend] npm ci --no-audit --no-fund');
      expect(lines).toContain('[frontend] | > node build.mjs');
      expect(await fs.readFile(path.join(built.dir, 'backend', 'built.txt'), 'utf8')).toBe(path.join(built.dir, 'backend'));
      expect(await fs.readFile(path.join(built.dir, 'frontend', 'dist', 'banner.txt'), 'utf8')).toBe(`slipway-deps-app built at ${Date.parse('2026-11-01T10:00:00.000Z') / 1000}\n`);
      await expect(fs.stat(path.join(built.dir, 'frontend', 'node_modules', 'mustache'))).rejects.toThrow();
      await expect(fs.stat(path.join(built.dir, 'frontend', 'node_modules', 'express'))).resolves.toBeTruthy();
      expect(built.platform).toMatchObject({ os: process.platform, arch: process.arch, nodeAbi: process.versions.modules });
      // Never the work tree: the checkout has no .git and the repo has no node_modules afterwards.
      await expect(fs.stat(path.join(built.dir, '.git'))).rejects.toThrow();
      await expect(fs.stat(path.join(repo.dir, 'frontend', 'node_modules'))).rejects.toThrow();
    } finally {
      await built.cleanup();
    }
    await expect(fs.stat(built.dir)).rejects.toThrow();
  });

  it('the same commit builds to the same content digest twice; include output from the work tree is added', async () => {
    const build = buildSpec({ dirs: [{ path: 'frontend', commands: [['npm', 'run', 'build']] }] });
    await fs.mkdir(path.join(repo.dir, 'ci-out'), { recursive: true });
    await fs.writeFile(path.join(repo.dir, 'ci-out', 'asset.txt'), 'from CI\n');
    const digests: string[] = [];
    for (let i = 0; i < 2; i++) {
      const built = await buildRelease(input(build));
      try {
        const prepared = await prepareRelease({ repo: repo.dir, treeish: sha, include: ['ci-out'], builtDir: built.dir, mtime: new Date(0) });
        try {
          digests.push(prepared.contentDigest);
          if (i === 0) continue;
          const manifest = buildManifest({ app: 'sample', sha, dirtySnapshot: null, branch: 'main', authorName: 'a', authorEmail: 'a@b', commitTime: '2026-11-01T10:00:00.000Z' },
            prepared.contentDigest, '0.1.0');
          const paths = await tarPaths((await prepared.seal(manifest)).file);
          expect(paths).toEqual(expect.arrayContaining(['ci-out/asset.txt', 'frontend/dist/banner.txt', 'frontend/node_modules/express/package.json', 'backend/main.py', 'manifest.json']));
          expect(paths.filter((p) => p.includes('mustache') || p.startsWith('.git/'))).toEqual([]);
        } finally {
          await prepared.cleanup();
        }
      } finally {
        await built.cleanup();
      }
    }
    expect(digests[0]).toBe(digests[1]);
  });

  it('builds a dirty snapshot\'s files; a missing build directory and a failing step are refused with their lines', async () => {
    await fs.writeFile(path.join(repo.dir, 'frontend', 'message.txt'), 'dirty change\n');
    const snapshot = await snapshotWorkTree(repo.dir);
    await fs.writeFile(path.join(repo.dir, 'frontend', 'message.txt'), await fs.readFile(path.join(DEPS_APP_DIR, 'message.txt')));
    const built = await buildRelease(input(buildSpec({ dirs: [{ path: 'frontend', install: 'none' }] }), snapshot!));
    try {
      expect(await fs.readFile(path.join(built.dir, 'frontend', 'message.txt'), 'utf8')).toBe('dirty change\n');
    } finally {
      await built.cleanup();
    }

    const missing = await buildRelease(input(buildSpec({ dirs: [{ path: 'web' }, { path: 'frontend' }, { path: 'api' }] }))).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(SlipwayError);
    expect(missing).toMatchObject({
      code: 'spec_invalid', message: `deploy.spec.json in ${sha.slice(0, 12)} asks for a build the commit cannot do; nothing was built or uploaded`,
      details: ['deploy.spec.json: build/dirs/0/path: "web" is not a directory in the commit', 'deploy.spec.json: build/dirs/2/path: "api" is not a directory in the commit'],
    });

    const failing = await buildRelease(input(buildSpec({ dirs: [{ path: 'backend', commands: [['sh', '-c', 'echo one; echo two >&2; exit 4']] }] }))).catch((e: unknown) => e);
    expect(failing).toMatchObject({ code: 'build_failed', kind: 'refused', details: ['one', 'two'] });
    expect((failing as Error).message).toMatch(/^build step \[backend\] sh -c echo one; echo two >&2; exit 4 of \w{12} failed with exit code 4 after /);

    const notInstalled = await buildRelease(input(buildSpec({ dirs: [{ path: 'backend', commands: [['no-such-build-tool', 'x']] }] }))).catch((e: unknown) => e);
    expect(notInstalled).toMatchObject({ code: 'build_failed', message: expect.stringContaining('could not start'), hint: expect.stringContaining('install no-such-build-tool') });
  });

  it('a build that outlives build.timeoutMs is stopped, its process group killed', async () => {
    const pidFile = path.join(dir, 'sleeper.pid');
    const started = Date.now();
    const error = await buildRelease(input(buildSpec({
      timeoutMs: 1500, dirs: [{ path: 'backend', commands: [['sh', '-c', `sleep 30 & echo $! > ${pidFile}; echo waiting; wait`]] }],
    }))).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(error).toMatchObject({ code: 'build_failed', message: expect.stringContaining('ran out of time (build.timeoutMs 1500 ms)'), details: ['waiting'] });
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    // Killed with its process group; once reaped it is gone (a zombie until then).
    await waitFor(async () => {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
      return stat === null || / Z /.test(stat);
    }, { timeoutMs: 5_000, description: `the step's child ${pid} to be killed with it` });
  });
});
