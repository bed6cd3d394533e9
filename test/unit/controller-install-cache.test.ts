import { describe, expect, it } from 'vitest';
import type { BuildPlatform } from '../../contract/platform.js';
import { KEEP_INSTALLS, STALE_TMP_MS, evictions, installCacheRoot } from '../../controller/build/install-cache.js';
import { installArgv } from '../../controller/build/plan.js';
import { installKey, installSettings, isInstallMetadata } from '../../lib/install-key.js';

const platform: BuildPlatform = { os: 'linux', arch: 'x64', libc: 'glibc', libcVersion: '2.36', nodeAbi: '115', nodeVersion: 'v20.20.2' };
const npm = { tool: 'npm', argv: installArgv('npm', false) };
const file = (name: string, text: string) => ({ name, bytes: Buffer.from(text) });
const lock = file('package-lock.json', '{"lockfileVersion":3}');
const pkg = file('package.json', '{"name":"x"}');

describe('the install key of a controller-side build', () => {
  const key = installKey(npm, [lock, pkg], platform, {});

  it('is the same for the same inputs, whatever their order, and with no settings the host build\'s key', () => {
    expect(installKey(npm, [pkg, lock], platform, {})).toBe(key);
    expect(installKey(npm, [lock, pkg], platform)).toBe(key);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes with the install argv, the lockfile, package.json and the package manager config files', () => {
    const others = [
      installKey({ tool: 'npm', argv: [...npm.argv, '--ignore-scripts'] }, [lock, pkg], platform),
      installKey({ tool: 'pnpm', argv: installArgv('pnpm', false) }, [lock, pkg], platform),
      installKey(npm, [file('package-lock.json', '{"lockfileVersion":2}'), pkg], platform),
      installKey(npm, [file('npm-shrinkwrap.json', '{"lockfileVersion":3}'), pkg], platform),
      installKey(npm, [lock, file('package.json', '{"name":"y"}')], platform),
      installKey(npm, [lock, pkg, file('.npmrc', 'omit=dev\n')], platform),
      installKey(npm, [lock, pkg, file('.yarnrc', '--production true\n')], platform),
      installKey(npm, [lock, pkg, file('.yarnrc.yml', 'nodeLinker: node-modules\n')], platform),
      installKey(npm, [lock, pkg, file('pnpm-workspace.yaml', 'packages: []\n')], platform),
    ];
    expect(new Set([key, ...others]).size).toBe(others.length + 1);
  });

  it('changes with the build platform: OS, CPU, libc and its version, Node ABI and version', () => {
    const others = [
      { os: 'darwin' }, { arch: 'arm64' }, { libc: 'musl' as const, libcVersion: null }, { libcVersion: '2.31' },
      { nodeAbi: '127', nodeVersion: 'v22.0.0' }, { nodeVersion: 'v20.20.3' },
    ].map((change) => installKey(npm, [lock, pkg], { ...platform, ...change }));
    expect(new Set([key, ...others]).size).toBe(others.length + 1);
  });

  it('changes with npm settings that change the tree, not with where packages come from', () => {
    expect(installKey(npm, [lock, pkg], platform, installSettings({ npm_config_omit: 'dev' }))).not.toBe(key);
    expect(installKey(npm, [lock, pkg], platform, installSettings({ NPM_CONFIG_IGNORE_SCRIPTS: 'true' }))).not.toBe(key);
    const unrelated = { npm_config_cache: '/tmp/c', npm_config_offline: 'true', npm_config_registry: 'https://r.example', PATH: '/bin', npm_config_audit: 'false' };
    expect(installSettings(unrelated)).toEqual({});
    expect(installKey(npm, [lock, pkg], platform, installSettings(unrelated))).toBe(key);
  });

  it('reads settings in any case, with - or _', () => {
    expect(installSettings({ 'npm_config_legacy-peer-deps': 'true', NPM_CONFIG_OMIT: 'dev', npm_config_include: 'optional' }))
      .toEqual({ legacy_peer_deps: 'true', omit: 'dev', include: 'optional' });
  });

  it('copies node_modules\' root-level bookkeeping (rewritten in place) instead of linking it', () => {
    expect(['.package-lock.json', '.modules.yaml', '.yarn-integrity', '.pnpm/lock.yaml'].every(isInstallMetadata)).toBe(true);
    expect(['express/package.json', '.bin/mustache', '.pnpm/x@1/node_modules/x/index.js'].some(isInstallMetadata)).toBe(false);
  });
});

describe('where installs are kept', () => {
  it('is $SLIPWAY_BUILD_CACHE, else $XDG_CACHE_HOME/slipway/installs, else ~/.cache/slipway/installs', () => {
    expect(installCacheRoot({ SLIPWAY_BUILD_CACHE: '/srv/cache', XDG_CACHE_HOME: '/x' }, '/home/me')).toBe('/srv/cache');
    expect(installCacheRoot({ XDG_CACHE_HOME: '/x' }, '/home/me')).toBe('/x/slipway/installs');
    expect(installCacheRoot({ XDG_CACHE_HOME: 'relative' }, '/home/me')).toBe('/home/me/.cache/slipway/installs');
    expect(installCacheRoot({}, '/home/me')).toBe('/home/me/.cache/slipway/installs');
  });
});

describe('eviction', () => {
  const now = 10 * STALE_TMP_MS;
  const at = (name: string, minutesAgo: number) => ({ name, usedAtMs: now - minutesAgo * 60_000 });

  it('keeps the most recently used installs; the one just used always stays', () => {
    const entries = [at('a', 1), at('b', 5), at('c', 3), at('d', 10)];
    expect(evictions(entries, KEEP_INSTALLS, now).sort()).toEqual(['d']);
    expect(evictions(entries, KEEP_INSTALLS, now, 'd').sort()).toEqual(['b']);
    expect(evictions(entries.slice(0, 3), KEEP_INSTALLS, now, 'a')).toEqual([]);
    expect(evictions(entries, 1, now, 'b').sort()).toEqual(['a', 'c', 'd']);
  });

  it('removes temp dirs of dead builds only once they are stale', () => {
    const stale = { name: '.tmp-old', usedAtMs: now - STALE_TMP_MS - 1 };
    const live = { name: '.tmp-new', usedAtMs: now - 1000 };
    expect(evictions([at('a', 1), stale, live], KEEP_INSTALLS, now)).toEqual(['.tmp-old']);
  });
});
