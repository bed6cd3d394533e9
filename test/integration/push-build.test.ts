/**
 * `deploy push` of an app with real npm dependencies and a build step, built on the controller
 * from deploy.spec.json (a clean checkout of the commit, npm ci from the warm test cache, the
 * build, npm prune), through real sshd, nginx, PM2 and SQLite. The agent on this branch still runs
 * its legacy app config (start.script server.js), which the spec's single `web` process matches.
 * Failure paths: a failing install, a failing build command and a bad spec each stop before
 * anything reaches the host: nothing uploaded, the live slot still serving the same release.
 */
import { promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { npmOfflineEnv, requireWarmNpmCache } from '../helpers/npm-cache.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import type { ReleaseManifest } from '../../contract/manifest.js';

const DEPS_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'deps-app');

const baseSpec = {
  processes: { web: { script: 'server.js', health: { path: '/health' } } },
  routes: [{ serverNames: ['_'], path: '/', process: 'web' }],
  build: { dirs: [{ path: '.', install: 'auto', commands: [['npm', 'run', 'build']], prune: true }] },
  // The spec's watch window applies (not the stack's legacy one): short, and the old slot kept warm
  // so the test can switch back to it.
  watch: { windowMs: 1000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true },
};

const specFile = (spec: unknown) => `${JSON.stringify(spec, null, 2)}\n`;

describe('deploy push with a controller-side build (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;
  let firstSha: string;
  let firstRelease: string;
  const deploy = (args: string[]) => stack.deploy(args, { env: npmOfflineEnv() });
  const releaseDirs = () => readdirSync(path.join(stack.home, 'releases', APP)).sort();

  /** What must hold after a push that failed before reaching the host. */
  async function expectHostUntouched(before: { dirs: string[]; releases: number; deployments: number }): Promise<void> {
    expect(releaseDirs()).toEqual(before.dirs);
    const state = readState(stack.home, APP);
    expect(state.releases).toHaveLength(before.releases);
    expect(state.deployments).toHaveLength(before.deployments);
    expect(state.app?.liveSlot).toBe('blue');
    const answer = await stack.get('/');
    expect(JSON.parse(answer.body)).toMatchObject({ release: firstRelease, slot: 'blue' });
  }

  function snapshot() {
    const state = readState(stack.home, APP);
    return { dirs: releaseDirs(), releases: state.releases.length, deployments: state.deployments.length };
  }

  beforeAll(async () => {
    requireWarmNpmCache();
    stack = await startStack();
    const files: Record<string, string | null> = { 'deploy.spec.json': specFile(baseSpec) };
    for (const name of await fs.readdir(DEPS_APP_DIR)) files[name] = await fs.readFile(path.join(DEPS_APP_DIR, name), 'utf8');
    firstSha = await stack.repo.commit(files, 'deps app with a build');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('builds a clean checkout on the controller and ships the result: production dependencies and build output', async () => {
    // A stray node_modules in the work tree must not leak into the release: the build checks out the commit.
    await fs.mkdir(path.join(stack.repo.dir, 'node_modules', 'mustache'), { recursive: true });
    await fs.writeFile(path.join(stack.repo.dir, 'node_modules', 'mustache', 'stray.txt'), 'from the work tree\n');
    const result = await deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toContain('  build: [.] npm ci --no-audit --no-fund\n');
    expect(result.stderr).toContain('  build: [.] npm run build\n');
    expect(result.stderr).toContain('  build: [.] | > node build.mjs');
    expect(result.stderr).toContain('  build: [.] npm prune --omit=dev --no-audit --no-fund\n');
    expect(result.stderr).toMatch(/ {2}built \S+ in .* on linux \w+, glibc [0-9.]+, Node v\d+/);

    firstRelease = releaseOfCommit(stack.home, APP, firstSha);
    const dir = path.join(stack.home, 'releases', APP, firstRelease);
    await expect(fs.stat(path.join(dir, 'node_modules', 'express', 'package.json'))).resolves.toBeTruthy();
    await expect(fs.stat(path.join(dir, 'node_modules', 'bufferutil', 'package.json'))).resolves.toBeTruthy();
    await expect(fs.stat(path.join(dir, 'node_modules', 'mustache')), 'the dev dependency was pruned').rejects.toThrow();
    const commitEpoch = Math.floor(Date.parse(readState(stack.home, APP).releases[0]!.manifest.commitTime) / 1000);
    expect(await fs.readFile(path.join(dir, 'dist', 'banner.txt'), 'utf8')).toBe(`slipway-deps-app built at ${commitEpoch}\n`);

    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as ReleaseManifest;
    expect(manifest).toMatchObject({
      schemaVersion: 3, tag: null,
      spec: { processes: { web: { script: 'server.js', port: true } }, routes: [{ path: '/', process: 'web' }] },
      specDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
      build: {
        on: 'controller',
        platform: { os: 'linux', arch: process.arch, nodeAbi: process.versions.modules, libc: 'glibc' },
        steps: [expect.stringMatching(/^\[\.\] npm ci .*: \d/), expect.stringMatching(/^\[\.\] npm run build: /), expect.stringMatching(/^\[\.\] npm prune /)],
      },
    });

    const answer = JSON.parse((await stack.get('/')).body);
    expect(answer).toMatchObject({ release: firstRelease, slot: 'blue', banner: `slipway-deps-app built at ${commitEpoch}` });
    await fs.rm(path.join(stack.repo.dir, 'node_modules'), { recursive: true, force: true });
  });

  it('a second push of a changed spec from a tag records the tag; deploy diff shows what changed', async () => {
    const next = structuredClone(baseSpec) as typeof baseSpec & { processes: { web: Record<string, unknown> } };
    next.processes.web.env = { GREETING: 'hi' };
    next.processes.web.killTimeoutMs = 8000;
    const sha = await stack.repo.commit({ 'deploy.spec.json': specFile(next), 'message.txt': 'second\n' }, 'spec change');
    const { runCommand } = await import('../../lib/exec.js');
    await runCommand(['git', 'tag', '-a', 'v2.0.0', '-m', 'release 2'], { cwd: stack.repo.dir });
    const result = await deploy(['push', '--sha', 'v2.0.0']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const second = releaseOfCommit(stack.home, APP, sha);
    expect(JSON.parse((await stack.get('/')).body)).toMatchObject({ release: second, slot: 'green', message: 'second' });
    const manifest = readState(stack.home, APP).releases.find((r) => r.releaseId === second)!.manifest;
    // The tag travels in the deployment request now, not in the (reproducible) manifest.
    expect(manifest.tag ?? null).toBeNull();

    const shown = await deploy(['diff', firstRelease.slice(0, 12), second]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toBe([
      `spec of ${firstRelease} → ${second}:`,
      '  + processes/web/env/GREETING: "hi"',
      '  ~ processes/web/killTimeoutMs: 5000 → 8000',
      '',
    ].join('\n'));
    const history = await deploy(['history', '-n', '1']);
    expect(history.stdout).toContain(`spec changed from ${firstRelease}: deploy diff ${firstRelease} ${second}`);
    const json = await deploy(['--json', 'diff', firstRelease]);
    expect(JSON.parse(json.stdout)).toMatchObject({ from: { releaseId: firstRelease }, to: { releaseId: second }, changes: expect.arrayContaining(['+ processes/web/env/GREETING: "hi"']) });

    // Back to blue for the failure tests below, which check that blue keeps serving the first release.
    const back = await deploy(['switch', 'blue']);
    expect(back.code, back.stderr).toBe(0);
  });

  it('a failing install (lockfile out of sync with package.json) stops before the host: exit code, its last lines, nothing uploaded', async () => {
    const before = snapshot();
    // A local dependency missing from the lock: npm refuses without asking the registry.
    const pkg = JSON.parse(await fs.readFile(path.join(DEPS_APP_DIR, 'package.json'), 'utf8'));
    pkg.dependencies['local-dep'] = 'file:./local';
    await stack.repo.commit({
      'package.json': `${JSON.stringify(pkg, null, 2)}\n`, 'local/package.json': '{ "name": "local-dep", "version": "1.0.0" }\n',
    }, 'lockfile out of sync');
    const result = await deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    expect(result.stderr).toMatch(/deploy: build step \[\.\] npm ci --no-audit --no-fund of \w{12} failed with exit code 1 after .*; nothing was uploaded, the host is untouched/);
    // npm says why first, then prints its usage help: the error keeps the reason and the end.
    expect(result.stderr).toContain('  - npm error `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync.');
    expect(result.stderr).toContain('  - …\n');
    expect(result.stderr).toMatch(/ {2}- npm error A complete log of this run can be found in/);
    expect(result.stderr).not.toContain('→ sample');
    await expectHostUntouched(before);
  });

  it('a failing build command stops before the host with its exit code and output', async () => {
    const before = snapshot();
    const failing = structuredClone(baseSpec);
    failing.build.dirs[0]!.commands.push(['node', '-e', 'console.log("compiling"); console.error("boom: missing config"); process.exit(7)']);
    await stack.repo.commit({
      'package.json': await fs.readFile(path.join(DEPS_APP_DIR, 'package.json'), 'utf8'), 'local/package.json': null, 'deploy.spec.json': specFile(failing),
    }, 'failing build');
    const result = await deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(3);
    expect(result.stderr).toMatch(/deploy: build step \[\.\] node -e .* failed with exit code 7/);
    expect(result.stderr).toContain('  - compiling\n');
    expect(result.stderr).toContain('  - boom: missing config\n');
    expect(result.stderr).toContain('  build: [.] | boom: missing config\n');
    await expectHostUntouched(before);
  });

  it('spec errors (unknown field, NUL byte, route path without a leading slash) are usage errors with field paths; nothing is built or uploaded', async () => {
    const before = snapshot();
    const bad = structuredClone(baseSpec) as Record<string, any>;
    bad.processes.web.colour = 'blue';
    bad.processes.web.env = { NAME: 'a\u0000b' };
    bad.routes[0].path = 'api';
    await stack.repo.commit({ 'deploy.spec.json': specFile(bad) }, 'bad spec');
    const result = await deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(2);
    expect(result.stderr).toMatch(/deploy: deploy\.spec\.json in \w{12} has 3 problems; nothing was built or uploaded/);
    expect(result.stderr).toContain('  - deploy.spec.json: processes/web/colour: is not a known field');
    expect(result.stderr).toContain('  - deploy.spec.json: processes/web/env/NAME: has characters or a form that is not allowed');
    expect(result.stderr).toContain('  - deploy.spec.json: routes/0/path: has characters or a form that is not allowed');
    expect(result.stderr).not.toContain('build:');
    await expectHostUntouched(before);

    const json = await deploy(['--json', 'push']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout.trim().split('\n').at(-1)!)).toMatchObject({ type: 'error', error: 'spec_invalid', kind: 'usage', details: expect.arrayContaining([expect.stringContaining('routes/0/path')]) });
  });

  it('build.on "host" ships the sources: no controller build, the manifest says where it is built', async () => {
    const hostSpec = { ...structuredClone(baseSpec), build: { on: 'host', dirs: baseSpec.build.dirs } };
    const sha = await stack.repo.commit({ 'deploy.spec.json': specFile(hostSpec) }, 'host build');
    // The agent builds it (h-hostbuild) or, without that, its health check fails: either way the
    // controller built nothing and the release on the box carries the sources and the spec.
    const result = await deploy(['push']);
    expect(result.stderr).not.toContain('  build: [.] npm ci');
    expect(result.stderr).not.toMatch(/ {2}built \S+ in /);
    const release = readState(stack.home, APP).releases.find((r) => r.manifest.sha === sha);
    expect(release?.manifest).toMatchObject({ schemaVersion: 3, build: { on: 'host', platform: null, steps: [] }, spec: { build: { on: 'host' } } });
  });
});
