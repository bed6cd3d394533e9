/**
 * The pure parts of a controller-side build: which tool installs a directory, the plan per build
 * directory, the build's environment, the platform record, and manifest v3.
 */
import { describe, expect, it } from 'vitest';
import { manifestSchema, type ReleaseManifest } from '../../contract/manifest.js';
import { checkAppSpec, specDigest, type AppSpec, type BuildSpec } from '../../contract/spec.js';
import { boundedSteps, buildEnv, chooseInstall, planBuild, planDir, stepLabel } from '../../controller/build/plan.js';
import { describePlatform, detectBuildPlatform, platformFrom } from '../../controller/build/platform.js';
import { OutputExcerpt, cleanLine } from '../../controller/build/run.js';
import { releaseExtras } from '../../controller/commands/push.js';
import { buildManifest } from '../../controller/manifest.js';
import { compileValidator } from '../../lib/validate.js';

const files = (...names: string[]) => new Set(['package.json', ...names]);

function specWith(build: unknown): AppSpec {
  const checked = checkAppSpec({ processes: { web: { script: 'server.js' } }, routes: [{ serverNames: ['shop.test'], process: 'web' }], build });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

describe('install tool detection', () => {
  it('auto picks the tool of the committed lockfile; a directory without package.json installs nothing', () => {
    expect(chooseInstall('auto', files('package-lock.json'))).toMatchObject({ tool: 'npm', lockfile: 'package-lock.json' });
    expect(chooseInstall('auto', files('npm-shrinkwrap.json'))).toMatchObject({ tool: 'npm', lockfile: 'npm-shrinkwrap.json' });
    expect(chooseInstall('auto', files('pnpm-lock.yaml'))).toMatchObject({ tool: 'pnpm', lockfile: 'pnpm-lock.yaml' });
    expect(chooseInstall('auto', files('yarn.lock'))).toMatchObject({ tool: 'yarn', lockfile: 'yarn.lock', berry: false });
    expect(chooseInstall('auto', files('yarn.lock', '.yarnrc.yml'))).toMatchObject({ tool: 'yarn', berry: true });
    expect(chooseInstall('auto', new Set(['main.py']))).toMatchObject({ tool: null, reason: 'no package.json: nothing to install' });
  });

  it('never resolves afresh: a package.json without its lockfile, or a lockfile without package.json, is refused', () => {
    expect(chooseInstall('auto', files())).toMatch(/^has a package\.json but no lockfile .*"install": "none"$/);
    expect(chooseInstall('npm', files('yarn.lock'))).toBe('install "npm" needs its lockfile (package-lock.json or npm-shrinkwrap.json) in the directory');
    expect(chooseInstall('auto', new Set(['pnpm-lock.yaml']))).toBe('has pnpm-lock.yaml but no package.json');
  });

  it('an explicit tool follows its own lockfile; "none" installs nothing', () => {
    expect(chooseInstall('pnpm', files('package-lock.json', 'pnpm-lock.yaml'))).toMatchObject({ tool: 'pnpm', lockfile: 'pnpm-lock.yaml', reason: 'install: "pnpm"' });
    expect(chooseInstall('none', files('package-lock.json'))).toMatchObject({ tool: null, reason: 'install: "none"' });
  });
});

describe('build plan per directory', () => {
  const plan = (spec: Parameters<typeof planDir>[0], names: Set<string>) => {
    const result = planDir(spec, names);
    if (typeof result === 'string') throw new Error(result);
    return result;
  };

  it('install, the commands in order, then prune, each as argv in its directory', () => {
    const frontend = plan({ path: 'frontend', install: 'auto', commands: [['npm', 'run', 'build'], ['node', 'check.js']], prune: true }, files('package-lock.json'));
    expect(frontend.steps).toEqual([
      { dir: 'frontend', kind: 'install', argv: ['npm', 'ci', '--no-audit', '--no-fund'] },
      { dir: 'frontend', kind: 'command', argv: ['npm', 'run', 'build'] },
      { dir: 'frontend', kind: 'command', argv: ['node', 'check.js'] },
      { dir: 'frontend', kind: 'prune', argv: ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'] },
    ]);
    expect(stepLabel(frontend.steps[0]!)).toBe('[frontend] npm ci --no-audit --no-fund');
  });

  it('uses each tool\'s frozen install and its prune', () => {
    const argvs = (install: 'pnpm' | 'yarn', ...names: string[]) => plan({ path: '.', install, commands: [], prune: true }, files(...names)).steps.map((s) => s.argv);
    expect(argvs('pnpm', 'pnpm-lock.yaml')).toEqual([['pnpm', 'install', '--frozen-lockfile'], ['pnpm', 'prune', '--prod']]);
    expect(argvs('yarn', 'yarn.lock')).toEqual([
      ['yarn', 'install', '--frozen-lockfile', '--non-interactive'], ['yarn', 'install', '--frozen-lockfile', '--production', '--non-interactive', '--offline'],
    ]);
    expect(argvs('yarn', 'yarn.lock', '.yarnrc.yml')).toEqual([['yarn', 'install', '--immutable'], ['yarn', 'workspaces', 'focus', '--all', '--production']]);
    expect(plan({ path: '.', install: 'auto', commands: [], prune: false }, files('package-lock.json')).steps.map((s) => s.argv)).toEqual([['npm', 'ci', '--no-audit', '--no-fund']]);
  });

  it('prunes only what it installed; a directory of commands only runs its commands', () => {
    const backend = plan({ path: 'backend', install: 'auto', commands: [['python3', '-m', 'compileall', '.']], prune: true }, new Set(['main.py']));
    expect(backend.install.tool).toBeNull();
    expect(backend.steps).toEqual([{ dir: 'backend', kind: 'command', argv: ['python3', '-m', 'compileall', '.'] }]);
  });

  it('a monorepo gets one plan per directory, in the spec\'s order; every problem is reported with its field path', () => {
    const spec = specWith({ dirs: [{ path: 'frontend', commands: [['npm', 'run', 'build']] }, { path: 'backend', install: 'none' }] });
    const build = spec.build as BuildSpec;
    expect(build).toMatchObject({ on: 'controller', timeoutMs: 900_000 });
    const plans = planBuild(build, (dir) => (dir === 'frontend' ? files('yarn.lock') : files('package-lock.json')));
    expect(plans.ok && plans.dirs.map((p) => [p.dir, p.steps.map((s) => `${s.argv[0]} ${s.argv[1]}`)])).toEqual([
      ['frontend', ['yarn install', 'npm run', 'yarn install']],
      ['backend', []],
    ]);
    const bad = planBuild(specWith({ dirs: [{ path: 'web' }, { path: 'frontend' }, { path: 'api', install: 'pnpm' }] }).build!, (dir) => (dir === 'web' ? null : files()));
    expect(bad).toEqual({ ok: false, problems: [
      'build/dirs/0/path: "web" is not a directory in the commit',
      'build/dirs/1/install: frontend has a package.json but no lockfile (package-lock.json, pnpm-lock.yaml or yarn.lock): commit one, or set "install": "none"',
      'build/dirs/2/install: api install "pnpm" needs its lockfile (pnpm-lock.yaml) in the directory',
    ] });
  });

  it('the step summary fits the manifest schema', () => {
    const lines = Array.from({ length: 300 }, (_, i) => `[.] step ${i}`);
    const bounded = boundedSteps([...lines.slice(0, 1), 'x'.repeat(5000), ...lines.slice(1)]);
    expect(bounded).toHaveLength(256);
    expect(bounded[1]).toHaveLength(4096);
    expect(bounded.at(-1)).toBe('… and 46 more steps');
    expect(boundedSteps(['a', 'b'])).toEqual(['a', 'b']);
  });
});

describe('build environment', () => {
  it('keeps PATH, HOME and npm settings, drops secret-looking variables and NODE_ENV, sets SOURCE_DATE_EPOCH to the commit time', () => {
    const env = buildEnv({
      PATH: '/usr/bin', HOME: '/home/a', npm_config_cache: '/c', NODE_ENV: 'production', SSH_AUTH_SOCK: '/s',
      GITHUB_TOKEN: 't', AWS_SECRET_ACCESS_KEY: 's', DB_PASSWORD: 'p', STRIPE_API_KEY: 'k', NPM_AUTH: 'a',
      npm_package_name: 'my-app', npm_lifecycle_event: 'deploy',
    }, '2026-11-01T10:00:00.000Z');
    expect(env).toEqual({ PATH: '/usr/bin', HOME: '/home/a', npm_config_cache: '/c', SSH_AUTH_SOCK: '/s', SOURCE_DATE_EPOCH: '1793527200' });
    expect(buildEnv({ SOURCE_DATE_EPOCH: '1' }, '2026-11-01T10:00:00.000Z').SOURCE_DATE_EPOCH).toBe('1');
  });

  it('output lines lose colour codes and redraws and are bounded', () => {
    expect(cleanLine('\x1b[32madded\x1b[0m 74 packages\r')).toBe('added 74 packages');
    expect(cleanLine('10%\r50%\r100%')).toBe('100%');
    expect(cleanLine('x'.repeat(1000))).toHaveLength(401);
  });
});

describe('build platform', () => {
  const node = { platform: 'linux', arch: 'x64', modules: '115', version: 'v20.20.2' };
  it('glibc from the report header, musl from its loader, else unknown', () => {
    expect(platformFrom(node, { header: { glibcVersionRuntime: '2.36' } })).toEqual({
      os: 'linux', arch: 'x64', libc: 'glibc', libcVersion: '2.36', nodeAbi: '115', nodeVersion: 'v20.20.2',
    });
    expect(platformFrom(node, { header: {}, sharedObjects: ['/lib/ld-musl-x86_64.so.1', '/usr/lib/libstdc++.so.6'] })).toMatchObject({ libc: 'musl', libcVersion: null });
    expect(platformFrom({ ...node, platform: 'darwin', arch: 'arm64' }, { header: {}, sharedObjects: ['/usr/lib/libSystem.B.dylib'] })).toMatchObject({ os: 'darwin', libc: 'unknown' });
    expect(describePlatform(platformFrom(node, { header: { glibcVersionRuntime: '2.36' } }))).toBe('linux x64, glibc 2.36, Node v20.20.2 (ABI 115)');
  });

  it('this machine: the running Node\'s own values', () => {
    const here = detectBuildPlatform();
    expect(here).toMatchObject({ os: process.platform, arch: process.arch, nodeAbi: process.versions.modules, nodeVersion: process.version });
    expect(['glibc', 'musl', 'unknown']).toContain(here.libc);
  });
});

describe('manifest v3', () => {
  const source = { app: 'shop', sha: 'a'.repeat(40), dirtySnapshot: null, branch: null, authorName: 'Ada', authorEmail: 'ada@example.com', commitTime: '2026-11-01T10:00:00.000Z' };
  const validate = compileValidator<ReleaseManifest>(manifestSchema);
  const platform = platformFrom({ platform: 'linux', arch: 'x64', modules: '115', version: 'v20.20.2' }, { header: { glibcVersionRuntime: '2.36' } });

  it('carries the spec, its digest, the build platform and steps; no tag and no wall clock (reproducible)', () => {
    const spec = specWith({ dirs: [{ commands: [['npm', 'run', 'build']] }] });
    const extras = releaseExtras({ spec, digest: specDigest(spec) }, { platform, steps: ['[.] npm ci: 2.00 s'] });
    const manifest = buildManifest(source, 'c'.repeat(64), '0.1.0', extras);
    expect(manifest).toMatchObject({
      schemaVersion: 3, spec, specDigest: specDigest(spec), tag: null, buildTime: source.commitTime,
      build: { on: 'controller', platform, steps: ['[.] npm ci: 2.00 s'] },
    });
    expect(validate(JSON.parse(JSON.stringify(manifest))).ok).toBe(true);
  });

  it('a host build ships sources: no platform, no steps; no spec: all null (legacy)', () => {
    const spec = specWith({ on: 'host' });
    expect(releaseExtras({ spec, digest: specDigest(spec) }, null).build).toEqual({ on: 'host', platform: null, steps: [] });
    expect(releaseExtras({ spec: specWith(undefined), digest: 'd' }, null).build).toBeNull();
    const legacy = buildManifest(source, 'c'.repeat(64), '0.1.0', releaseExtras(null, null));
    expect(legacy).toMatchObject({ schemaVersion: 3, spec: null, specDigest: null, build: null, tag: null });
    expect(validate(legacy).ok).toBe(true);
  });
});

describe('failure excerpt of a build step', () => {
  it('the last lines, and before them the first error lines that scrolled out', () => {
    const excerpt = new OutputExcerpt(3);
    for (const line of ['npm error code EUSAGE', 'npm error `npm ci` can only install packages when ... are in sync', 'usage 1', 'usage 2', 'usage 3', 'npm error A complete log']) excerpt.add(line);
    expect(excerpt.lines()).toEqual(['npm error code EUSAGE', 'npm error `npm ci` can only install packages when ... are in sync', '…', 'usage 2', 'usage 3', 'npm error A complete log']);
    const short = new OutputExcerpt(3);
    for (const line of ['error: x', 'b']) short.add(line);
    expect(short.lines()).toEqual(['error: x', 'b']);
  });
});
