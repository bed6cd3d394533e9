import { describe, expect, it } from 'vitest';
import {
  LineSplitter, buildTimeoutMs, installKey, memoryRefusal, parseMemAvailable, planHostBuild, planInstall, priorityPrefix, stepLabel,
} from '../../agent/build/plan.js';
import { checkNativePlatform } from '../../agent/build/platform.js';
import type { BuildDirSpec, BuildSpec } from '../../contract/spec.js';
import type { BuildPlatform } from '../../contract/platform.js';
import { SlipwayError } from '../../contract/errors.js';

const dir = (over: Partial<BuildDirSpec> = {}): BuildDirSpec => ({ path: '.', install: 'auto', commands: [], prune: true, ...over });
const files = (...names: string[]) => new Set(names);
const platform: BuildPlatform = { os: 'linux', arch: 'x64', libc: 'glibc', libcVersion: '2.36', nodeAbi: '115', nodeVersion: 'v20.20.2' };

describe('install detection', () => {
  it('follows the lockfile that is there', () => {
    expect(planInstall(dir(), files('package.json', 'package-lock.json'))).toMatchObject({ tool: 'npm', lockfile: 'package-lock.json', argv: ['npm', 'ci', '--no-audit', '--no-fund'] });
    expect(planInstall(dir(), files('package.json', 'npm-shrinkwrap.json'))).toMatchObject({ tool: 'npm', lockfile: 'npm-shrinkwrap.json' });
    expect(planInstall(dir(), files('package.json', 'pnpm-lock.yaml'))).toMatchObject({ tool: 'pnpm', argv: ['pnpm', 'install', '--frozen-lockfile'] });
    expect(planInstall(dir(), files('package.json', 'yarn.lock'))).toMatchObject({ tool: 'yarn', argv: ['yarn', 'install', '--frozen-lockfile', '--non-interactive'] });
    expect(planInstall(dir(), files('package.json', 'yarn.lock', '.yarnrc.yml'))).toMatchObject({ tool: 'yarn', argv: ['yarn', 'install', '--immutable'] });
  });

  it('installs nothing without a package.json, or when told "none"', () => {
    expect(planInstall(dir(), files('requirements.txt'))).toBeNull();
    expect(planInstall(dir({ install: 'none' }), files('package.json', 'package-lock.json'))).toBeNull();
  });

  it('refuses a package.json without a lockfile, and a named tool without its lockfile', () => {
    expect(planInstall(dir(), files('package.json'))).toEqual({ problem: expect.stringContaining('no lockfile') });
    expect(planInstall(dir({ install: 'pnpm' }), files('package.json', 'package-lock.json'))).toEqual({ problem: expect.stringContaining('pnpm-lock.yaml') });
  });

  it('keys the install on the files that decide it, sorted', () => {
    expect(planInstall(dir(), files('package-lock.json', 'package.json', '.npmrc'))).toMatchObject({ keyFiles: ['.npmrc', 'package-lock.json', 'package.json'] });
  });
});

describe('planHostBuild', () => {
  const build = (dirs: BuildDirSpec[]): BuildSpec => ({ on: 'host', dirs, timeoutMs: 60_000 });

  it('plans install, commands and prune per directory', () => {
    const plan = planHostBuild(build([
      dir({ path: 'frontend', commands: [['npm', 'run', 'build']] }),
      dir({ path: 'backend', install: 'none', commands: [['python3', '-m', 'compileall', '.']] }),
    ]), { frontend: files('package.json', 'package-lock.json'), backend: files('requirements.txt') });
    expect(plan).toEqual({
      ok: true,
      dirs: [
        { path: 'frontend', install: expect.objectContaining({ tool: 'npm' }), commands: [['npm', 'run', 'build']], prune: ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'] },
        { path: 'backend', install: null, commands: [['python3', '-m', 'compileall', '.']], prune: null },
      ],
    });
  });

  it('lists every directory that cannot be built', () => {
    const plan = planHostBuild(build([dir({ path: 'a' }), dir({ path: 'b', install: 'yarn' })]), { a: files('package.json'), b: files('package.json') });
    expect(plan.ok).toBe(false);
    if (!plan.ok) expect(plan.problems.map((p) => p.dir)).toEqual(['a', 'b']);
  });

  it('does not prune when told not to', () => {
    const plan = planHostBuild(build([dir({ prune: false })]), { '.': files('package.json', 'package-lock.json') });
    expect(plan.ok && plan.dirs[0]!.prune).toBeNull();
  });
});

describe('installKey', () => {
  const install = { tool: 'npm' as const, argv: ['npm', 'ci'] };
  const lock = { name: 'package-lock.json', bytes: Buffer.from('{"lockfileVersion":3}') };
  const pkg = { name: 'package.json', bytes: Buffer.from('{"name":"x"}') };

  it('is the same for the same files in any order, and 64 hex', () => {
    const key = installKey(install, [lock, pkg], platform);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(installKey(install, [pkg, lock], platform)).toBe(key);
  });

  it('changes with the lockfile, package.json, the command and the platform', () => {
    const key = installKey(install, [lock, pkg], platform);
    expect(installKey(install, [{ ...lock, bytes: Buffer.from('{"lockfileVersion":2}') }, pkg], platform)).not.toBe(key);
    expect(installKey(install, [lock, { ...pkg, bytes: Buffer.from('{"name":"y"}') }], platform)).not.toBe(key);
    expect(installKey({ tool: 'npm', argv: ['npm', 'ci', '--ignore-scripts'] }, [lock, pkg], platform)).not.toBe(key);
    expect(installKey(install, [lock, pkg], { ...platform, nodeAbi: '127', nodeVersion: 'v22.0.0' })).not.toBe(key);
    expect(installKey(install, [lock, pkg], { ...platform, arch: 'arm64' })).not.toBe(key);
  });

  it('cannot be fooled by moving bytes from one file to the next', () => {
    const a = installKey(install, [{ name: 'package-lock.json', bytes: Buffer.from('ab') }, { name: 'package.json', bytes: Buffer.from('c') }], platform);
    const b = installKey(install, [{ name: 'package-lock.json', bytes: Buffer.from('a') }, { name: 'package.json', bytes: Buffer.from('bc') }], platform);
    expect(a).not.toBe(b);
  });
});

describe('priority, memory, timeout', () => {
  it('prefixes ionice -c3 and nice -n N when they exist', () => {
    expect(priorityPrefix({ nice: '/usr/bin/nice', ionice: '/usr/bin/ionice' }, 10)).toEqual(['/usr/bin/ionice', '-c3', '/usr/bin/nice', '-n', '10']);
    expect(priorityPrefix({ nice: '/usr/bin/nice', ionice: null }, 5)).toEqual(['/usr/bin/nice', '-n', '5']);
    expect(priorityPrefix({ nice: '/usr/bin/nice', ionice: null }, 0)).toEqual([]);
    expect(priorityPrefix({ nice: null, ionice: null }, 10)).toEqual([]);
  });

  it('reads MemAvailable from /proc/meminfo', () => {
    expect(parseMemAvailable('MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    2048 kB\n')).toBe(2048 * 1024);
    expect(parseMemAvailable('MemTotal: 1 kB\n')).toBeNull();
  });

  it('refuses below the floor only', () => {
    expect(memoryRefusal(100 * 1024 * 1024, 512 * 1024 * 1024)).toBe('only 100 MiB of memory is available, below the floor of 512 MiB for a host build');
    expect(memoryRefusal(512 * 1024 * 1024, 512 * 1024 * 1024)).toBeNull();
    expect(memoryRefusal(null, 512 * 1024 * 1024)).toBeNull();
  });

  it('caps the spec timeout by the host', () => {
    expect(buildTimeoutMs(900_000, undefined)).toBe(900_000);
    expect(buildTimeoutMs(900_000, 60_000)).toBe(60_000);
    expect(buildTimeoutMs(10_000, 60_000)).toBe(10_000);
  });

  it('names steps for events and errors', () => {
    expect(stepLabel('install', ['npm', 'ci', '--no-audit', '--no-fund'], '.')).toBe('install (npm ci --no-audit --no-fund)');
    expect(stepLabel('command', ['npm', 'run', 'build'], 'frontend')).toBe('build (npm run build) in frontend');
  });
});

describe('LineSplitter', () => {
  it('emits whole lines across chunks, strips colours and blank lines, clips long lines', () => {
    const lines: string[] = [];
    const split = new LineSplitter((l) => lines.push(l), 10);
    split.push('first li');
    split.push('ne\r\n\u001b[32mgreen\u001b[0m\n\n   \nabcdefghijklmnop\nlast');
    split.end();
    expect(lines).toEqual(['first line', 'green', 'abcdefghij…', 'last']);
  });
});

describe('checkNativePlatform', () => {
  const host = platform;
  const refuse = (built: BuildPlatform | null, addons: string[]) => {
    try {
      checkNativePlatform({ app: 'shop', releaseId: 'aaaaaaaaaaaa-bbbbbbbbbbbb', addons: () => addons, built, host });
      return null;
    } catch (error) {
      return error as SlipwayError;
    }
  };

  it('refuses native addons built for another CPU, libc or Node ABI, with the hint to build on the host', () => {
    const error = refuse({ ...platform, arch: 'arm64', nodeAbi: '127', nodeVersion: 'v22.1.0' }, ['node_modules/x/build/Release/x.node']);
    expect(error?.code).toBe('platform_mismatch');
    expect(error?.kind).toBe('refused');
    expect(error?.message).toContain('built for CPU arm64, the host is x64');
    expect(error?.details?.join('\n')).toContain('Node ABI 127');
    expect(error?.hint).toContain('"build": {"on": "host"}');
  });

  it('says to deploy a new release when the host changed after building it itself', () => {
    let error: SlipwayError | null = null;
    try {
      checkNativePlatform({ app: 'shop', releaseId: 'aaaaaaaaaaaa-bbbbbbbbbbbb', addons: () => ['a.node'], built: { ...platform, nodeAbi: '108' }, host, builtHere: true });
    } catch (e) {
      error = e as SlipwayError;
    }
    expect(error?.hint).toContain('built on this host before the host changed');
  });

  it('lets through: no addons, the same platform, an older glibc, no recorded platform', () => {
    expect(refuse({ ...platform, arch: 'arm64' }, [])).toBeNull();
    expect(refuse(platform, ['a.node'])).toBeNull();
    expect(refuse({ ...platform, libcVersion: '2.31' }, ['a.node'])).toBeNull();
    expect(refuse(null, ['a.node'])).toBeNull();
    expect(refuse({ ...platform, libcVersion: '2.39' }, ['a.node'])?.code).toBe('platform_mismatch');
  });
});
