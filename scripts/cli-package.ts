/**
 * The `deploy` CLI as a package of its own (slipway-cli): the built controller, contract and lib,
 * with a package.json whose dependencies are exactly the packages that code imports. A laptop or CI
 * runner installing it gets neither better-sqlite3 (a native build) nor PM2: those are the agent's.
 *
 * Layout of the package, mirroring dist/ so every relative import stays as compiled:
 *   package.json            name slipway-cli, bin deploy -> dist/controller/main.js
 *   dist/controller/ dist/contract/ dist/lib/   the .js files only, plus dist/controller/ui/static/
 *                           (the page of deploy ui: HTML, JS and CSS as written in the source tree)
 *   node_modules/           its dependencies, bundled at the versions of the project's
 *                           package-lock.json (the ones the tests ran with)
 *
 * Bundled, because a tarball's dependencies are otherwise resolved through the registry's package
 * documents (npm reads the shrinkwrap of a registry package, not of a local tarball), which neither
 * an offline runner nor npm's cache after `npm ci` has. Bundled without the optional ones (ssh2's
 * cpu-features and nan) and without running install scripts: installing the CLI compiles nothing,
 * and ssh2 uses node's own crypto (AES-GCM first) instead of its optional binding.
 */
import { builtinModules } from 'node:module';
import { chmod, cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { outputTail, runCommand } from '../lib/exec.js';
import { lockClosure, type LockEntry, type Lockfile } from '../lib/npm-lock.js';

export const CLI_PACKAGE_NAME = 'slipway-cli';
/** The directories of dist/ the CLI is made of; anything it imports must be inside them or a package. */
export const CLI_DIRS = ['controller', 'contract', 'lib'] as const;
export const CLI_MAIN = 'dist/controller/main.js';
/** Files the CLI reads at run time that tsc does not emit: the page of `deploy ui`, served as written. */
export const CLI_ASSET_DIRS = ['controller/ui/static'] as const;

interface RootPackage {
  version: string;
  description?: string;
  license?: string;
  engines?: Record<string, string>;
  dependencies: Record<string, string>;
}

export interface ImportSpecifiers { packages: string[]; relative: string[] }

const BUILTINS = new Set(builtinModules);

/** Pure: the module specifiers a compiled ES module imports (static, re-exports, dynamic with a literal). */
export function importSpecifiers(source: string): string[] {
  const found = new Set<string>();
  const patterns = [
    /^\s*(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.add(match[1]!);
  return [...found];
}

/** Pure: the npm package a bare specifier names (`@scope/name/sub` → `@scope/name`), or null for node's own modules. */
export function packageOf(specifier: string): string | null {
  if (specifier.startsWith('node:') || BUILTINS.has(specifier) || BUILTINS.has(specifier.split('/')[0]!)) return null;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Pure: splits a module's specifiers into the packages it needs and its relative imports. */
export function classifyImports(specifiers: readonly string[]): ImportSpecifiers {
  const packages = new Set<string>();
  const relative: string[] = [];
  for (const specifier of specifiers) {
    if (specifier.startsWith('.') || specifier.startsWith('/')) relative.push(specifier);
    else {
      const name = packageOf(specifier);
      if (name) packages.add(name);
    }
  }
  return { packages: [...packages].sort(), relative };
}

/** Pure: the CLI's package.json, its dependencies pinned to the ranges the project itself uses. */
export function cliPackageJson(root: RootPackage, packages: readonly string[]): Record<string, unknown> {
  const missing = packages.filter((name) => root.dependencies[name] === undefined);
  if (missing.length > 0) throw new Error(`the CLI imports ${missing.join(', ')}, which package.json does not list in dependencies`);
  return {
    name: CLI_PACKAGE_NAME,
    version: root.version,
    description: 'Slipway\'s controller CLI (deploy): blue/green deploys over SSH to a host running slipway-agent',
    type: 'module',
    license: root.license ?? 'MIT',
    ...(root.engines ? { engines: root.engines } : {}),
    bin: { deploy: CLI_MAIN },
    files: ['dist'],
    dependencies: Object.fromEntries([...packages].sort().map((name) => [name, root.dependencies[name]!])),
    bundleDependencies: [...packages].sort(),
  };
}

export { resolveInLock, type Lockfile } from '../lib/npm-lock.js';

/**
 * Pure: the CLI's lockfile: the part of the project's lockfile its dependencies need, at the same
 * paths (a closed subset of a node_modules tree resolves exactly as the whole tree did). Optional
 * dependencies stay listed, as npm ci wants, and are left out at install (--omit=optional).
 */
export function cliLockfile(rootLock: Lockfile, manifest: { name: string; version: string; dependencies: Record<string, string> }): Lockfile {
  const packages: Record<string, LockEntry> = {};
  for (const { location } of lockClosure(rootLock.packages, Object.keys(manifest.dependencies), 'the CLI')) {
    const { dev: _dev, devOptional, ...entry } = rootLock.packages[location]!;
    packages[location] = devOptional ? { ...entry, optional: true } : entry;
  }
  const sorted = Object.fromEntries(Object.keys(packages).sort().map((key) => [key, packages[key]!]));
  return {
    lockfileVersion: 3,
    packages: { '': { name: manifest.name, version: manifest.version, dependencies: manifest.dependencies }, ...sorted },
  };
}

async function jsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.js')).map((e) => path.join(e.parentPath, e.name));
}

/**
 * Copies the CLI's part of dist/ into `stageDir` and returns the packages its code imports.
 * Fails, naming the file, when a module imports something outside the CLI's directories.
 */
export async function stageCli(distDir: string, stageDir: string): Promise<string[]> {
  const packages = new Set<string>();
  const problems: string[] = [];
  for (const dir of CLI_DIRS) {
    const from = path.join(distDir, dir);
    if (!existsSync(from)) throw new Error(`${from} is missing: build first (npm run build)`);
    for (const file of await jsFiles(from)) {
      const relativeName = path.relative(distDir, file);
      const target = path.join(stageDir, 'dist', relativeName);
      await cp(file, target);
      const imports = classifyImports(importSpecifiers(await readFile(file, 'utf8')));
      imports.packages.forEach((name) => packages.add(name));
      for (const specifier of imports.relative) {
        const resolved = path.relative(distDir, path.resolve(path.dirname(file), specifier));
        if (!CLI_DIRS.some((d) => resolved.startsWith(`${d}${path.sep}`))) problems.push(`${relativeName} imports ${specifier} (dist/${resolved})`);
      }
    }
  }
  if (problems.length > 0) {
    throw new Error(`the CLI must import only from ${CLI_DIRS.join('/, ')}/ and packages:\n  ${problems.join('\n  ')}`);
  }
  return [...packages].sort();
}

/** Builds the package tarball from `root`'s dist/ into `outDir`; returns its path and the dependencies it declares. */
export async function packCli(root: string, outDir: string): Promise<{ tarball: string; dependencies: Record<string, string> }> {
  const rootPackage = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as RootPackage;
  const stageDir = await mkdtemp(path.join(os.tmpdir(), 'slipway-cli-stage-'));
  try {
    const packages = await stageCli(path.join(root, 'dist'), stageDir);
    // Beside the compiled modules that read them (controller/ui/server.ts looks there first).
    for (const dir of CLI_ASSET_DIRS) await cp(path.join(root, dir), path.join(stageDir, 'dist', dir), { recursive: true });
    const manifest = cliPackageJson(rootPackage, packages);
    await writeFile(path.join(stageDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const rootLock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as Lockfile;
    const lockfile = cliLockfile(rootLock, manifest as { name: string; version: string; dependencies: Record<string, string> });
    await writeFile(path.join(stageDir, 'package-lock.json'), `${JSON.stringify({ name: CLI_PACKAGE_NAME, version: rootPackage.version, ...lockfile }, null, 2)}\n`);
    // From npm's cache (filled by the project's own npm ci): packing needs no network either.
    const installed = await runCommand(['npm', 'ci', '--offline', '--ignore-scripts', '--omit=optional', '--omit=dev', '--no-audit', '--no-fund'], {
      cwd: stageDir, timeoutMs: 300_000,
    });
    if (installed.exitCode !== 0) throw new Error(`npm ci of the CLI's dependencies failed (exit ${installed.exitCode}): ${outputTail(installed.stderr, 5)}`);
    await chmod(path.join(stageDir, CLI_MAIN), 0o755);
    const packed = await runCommand(['npm', 'pack', '--pack-destination', path.resolve(outDir)], { cwd: stageDir, timeoutMs: 120_000 });
    // npm pack prints the tarball's file name as its last line of stdout.
    const filename = packed.stdout.trim().split('\n').pop();
    if (packed.exitCode !== 0 || !filename) throw new Error(`npm pack failed (exit ${packed.exitCode}): ${outputTail(packed.stderr, 5)}`);
    return { tarball: path.join(path.resolve(outDir), filename), dependencies: manifest.dependencies as Record<string, string> };
  } finally {
    await rm(stageDir, { recursive: true, force: true });
  }
}
