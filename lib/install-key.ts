// Pure: the key under which a completed package install (node_modules right after `npm ci`,
// before any build step or prune) can be reused, by a host build (agent/build/host-build.ts) and
// by a controller-side build (controller/build/install-cache.ts) alike.
import { createHash } from 'node:crypto';
import type { BuildPlatform } from '../contract/platform.js';
import { canonicalJson } from '../contract/spec.js';

/** Files of a build dir that decide its install: their bytes are part of the key when present. */
export const INSTALL_INPUT_FILES = [
  'package.json', 'package-lock.json', 'npm-shrinkwrap.json', 'pnpm-lock.yaml', 'yarn.lock',
  '.npmrc', '.yarnrc', '.yarnrc.yml', 'pnpm-workspace.yaml',
] as const;

/**
 * The key of an install: sha256 over the tool and install argv, the bytes of every file that
 * decides it (lockfile, package.json, package manager config), the platform the install ran on
 * (so a Node upgrade or another libc never reuses native addons built for the old one) and, when
 * given, settings from the environment that change what gets installed (installSettings). Without
 * settings the key is the one host builds have always used.
 */
export function installKey(
  install: { tool: string; argv: readonly string[] },
  files: ReadonlyArray<{ name: string; bytes: Buffer }>,
  platform: BuildPlatform,
  settings: Readonly<Record<string, string>> = {},
): string {
  const hash = createHash('sha256').update('slipway-install-v1\n').update(`${install.tool}\n${JSON.stringify(install.argv)}\n`);
  for (const file of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    hash.update(`${file.name}\n${file.bytes.length}\n`).update(file.bytes).update('\n');
  }
  if (Object.keys(settings).length) hash.update(`settings\n${canonicalJson(settings)}\n`);
  return hash.update(canonicalJson(platform)).digest('hex');
}

/**
 * npm settings that change which packages an install lays down or how they are built: an
 * npm_config_<name> variable (any case, `-` or `_`) for one of these goes into a controller-side
 * install's key. Settings that only change where packages come from (cache, offline, registry:
 * the lockfile's integrity hashes pin the bytes) or what is printed do not.
 */
const TREE_SETTINGS = new Set([
  'omit', 'include', 'production', 'only', 'also', 'dev', 'optional', 'ignore_scripts', 'legacy_peer_deps', 'strict_peer_deps',
  'install_strategy', 'install_links', 'global_style', 'legacy_bundling', 'os', 'cpu', 'libc', 'foreground_scripts', 'script_shell',
  'node_options', 'build_from_source', 'nodedir', 'python', 'target', 'target_arch', 'runtime', 'disturl',
]);

/** Pure: the environment's tree-changing npm settings (TREE_SETTINGS), names normalised to lower case with `_`. */
export function installSettings(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const match = /^npm_config_(.+)$/i.exec(name);
    if (!match || value === undefined) continue;
    const setting = match[1]!.toLowerCase().replace(/-/g, '_');
    if (TREE_SETTINGS.has(setting)) out[setting] = value;
  }
  return out;
}

/**
 * node_modules' own bookkeeping files, which package managers rewrite in place (npm's
 * .package-lock.json, pnpm's .modules.yaml and lock): a reused install gets copies of them, never
 * hardlinks, so a prune cannot write into a cached install's inodes.
 */
export function isInstallMetadata(rel: string): boolean {
  return !rel.includes('/') || rel === '.pnpm/lock.yaml';
}
