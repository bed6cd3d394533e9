/**
 * The agent as one tarball, packed from this checkout for `deploy setup` and `deploy upgrade`:
 * what runs on the host is exactly what the controller was built from.
 *
 * Layout of the package (mirrors the checkout, so every relative import and packageRoot() work):
 *   package.json                       the project's own (name slipway: packageRoot() finds it)
 *   dist/agent/ dist/contract/ dist/lib/   the compiled .js files
 *   nginx/                              the default templates (agent config nginx.templateDir)
 *   node_modules/                       the production closure of package.json's dependencies at
 *                                       the locations package-lock.json gives them, copied from this
 *                                       checkout's node_modules: native addons (better-sqlite3) come
 *                                       as built here, for the node binary setup uploads next to them
 *   .slipway-agent-package              version and digest (the install's marker on the host)
 *
 * Why bundled: the host has no npm registry to install from (and should not need one), and a
 * native addon must match the node binary it runs on; the controller's own node is that binary.
 *
 * The version is `<package.json version>-<first 12 hex of the digest>`: the digest covers every
 * path, mode and content of the package, so two checkouts that differ in anything the agent runs
 * get two install dirs (/opt/slipway/agent/<version>), and the same checkout packs to the same one.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SlipwayError } from '../../contract/errors.js';
import { outputTail, runCommand } from '../../lib/exec.js';
import { lockClosure, type Lockfile } from '../../lib/npm-lock.js';

/** The file in an agent install that names what it is; written last on the host, so its presence means "complete". */
export const AGENT_PACKAGE_MARKER = '.slipway-agent-package';
/** The directories of dist/ the agent runs from. */
export const AGENT_DIST_DIRS = ['agent', 'contract', 'lib'] as const;
/** The agent's entry point inside an install. */
export const AGENT_MAIN = 'dist/agent/main.js';

export interface AgentPackageInfo {
  /** `<package version>-<digest12>`: the install dir's name on the host. */
  version: string;
  /** sha256 (hex) over the package's paths, modes and contents. */
  digest: string;
  /** The package.json version the agent reports on /health. */
  packageVersion: string;
}

export interface AgentPackage extends AgentPackageInfo {
  /** The gzipped tarball: entries relative to the install dir, owned by 0:0. */
  tarball: string;
  bytes: number;
  files: number;
  /** Removes the tarball's temp dir. */
  dispose(): Promise<void>;
}

/** Pure: the install dir name of a package. */
export function agentPackageVersion(packageVersion: string, digest: string): string {
  return `${packageVersion}-${digest.slice(0, 12)}`;
}

/** Pure: the marker file's text. */
export function agentPackageMarker(info: AgentPackageInfo): string {
  return `${JSON.stringify({ version: info.version, digest: info.digest, packageVersion: info.packageVersion })}\n`;
}

/** Pure: reads a marker back; null when it is not one. */
export function parseAgentPackageMarker(text: string): AgentPackageInfo | null {
  try {
    const value = JSON.parse(text) as Partial<AgentPackageInfo>;
    if (typeof value.version !== 'string' || typeof value.digest !== 'string' || typeof value.packageVersion !== 'string') return null;
    if (!/^[0-9a-f]{64}$/.test(value.digest) || value.version !== agentPackageVersion(value.packageVersion, value.digest)) return null;
    return { version: value.version, digest: value.digest, packageVersion: value.packageVersion };
  } catch {
    return null;
  }
}

/**
 * Pure: the node_modules locations the agent package carries: the closure of the project's
 * (production) dependencies in its lockfile. Optional ones are kept when installed here
 * (`installed`), since only those exist to copy.
 */
export function agentModuleLocations(lock: Lockfile, dependencies: readonly string[], installed: (location: string) => boolean): string[] {
  return lockClosure(lock.packages, dependencies, 'the agent')
    .filter(({ location, optional }) => !optional || installed(location))
    .map(({ location }) => location);
}

/** Pure: one line of the digest's input per entry; sorted by the caller. */
export function digestLine(entry: { path: string; mode: number; kind: 'file' | 'dir' | 'symlink'; content: string }): string {
  return `${entry.kind} ${(entry.mode & 0o7777).toString(8)} ${entry.content} ${entry.path}\n`;
}

async function treeDigest(dir: string): Promise<{ digest: string; files: number }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const lines: string[] = [];
  let files = 0;
  for (const entry of entries) {
    const full = path.join(entry.parentPath, entry.name);
    const rel = path.relative(dir, full);
    const st = await lstat(full);
    if (st.isSymbolicLink()) lines.push(digestLine({ path: rel, mode: st.mode, kind: 'symlink', content: await readlink(full) }));
    else if (st.isDirectory()) lines.push(digestLine({ path: rel, mode: st.mode, kind: 'dir', content: '-' }));
    else if (st.isFile()) {
      files++;
      lines.push(digestLine({ path: rel, mode: st.mode, kind: 'file', content: createHash('sha256').update(await readFile(full)).digest('hex') }));
    }
  }
  lines.sort();
  return { digest: createHash('sha256').update(lines.join('')).digest('hex'), files };
}

function notPackable(message: string, hint: string): SlipwayError {
  return new SlipwayError('agent_package_failed', message, { hint });
}

/** Copies `from` into `to` without its own node_modules (nested packages are copied as locations of their own). */
async function copyPackageDir(from: string, to: string): Promise<void> {
  const nested = path.join(from, 'node_modules');
  await cp(from, to, { recursive: true, verbatimSymlinks: true, filter: (source) => source !== nested });
}

/**
 * A cheap fingerprint of everything the package is made of: path, size and content of the
 * checkout's own files, path, size and mtime of node_modules' (a stat walk of ~7,000 files, where
 * packing takes tens of seconds).
 */
async function inputFingerprint(root: string, locations: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    const st = await lstat(path.join(root, rel)).catch(() => null);
    if (st === null) return hash.update(`missing ${rel}\n`) as unknown as void;
    // The checkout's own files by content (a build rewrites them unchanged), node_modules by size and mtime.
    const content = st.isFile() && !rel.startsWith('node_modules') ? createHash('sha256').update(await readFile(path.join(root, rel))).digest('hex') : st.mtimeMs;
    hash.update(`${rel} ${st.mode} ${st.size} ${content}\n`);
    if (!st.isDirectory()) return;
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      if (name === 'node_modules' && rel.startsWith('node_modules')) continue;
      await walk(path.join(rel, name));
    }
  };
  for (const rel of ['package.json', 'package-lock.json', 'nginx', ...AGENT_DIST_DIRS.map((d) => path.join('dist', d)), ...locations]) await walk(rel);
  return hash.digest('hex');
}

/**
 * Packs the agent of the checkout at `root` (needs dist/ built and node_modules installed there).
 * With `cacheDir`, a package made from unchanged inputs (same fingerprint) is reused from there,
 * and only the newest few are kept. The caller disposes of the result (a cached one stays).
 */
export async function packAgent(root: string, options: { cacheDir?: string } = {}): Promise<AgentPackage> {
  if (options.cacheDir === undefined) return packAgentUncached(root);
  const lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8').catch(() => '{"packages":{}}')) as Lockfile;
  const rootPackage = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  let locations: string[] = [];
  try {
    locations = agentModuleLocations(lock, Object.keys(rootPackage.dependencies ?? {}), (location) => existsSync(path.join(root, location)));
  } catch {
    return packAgentUncached(root);
  }
  const key = (await inputFingerprint(root, locations)).slice(0, 32);
  const tarball = path.join(options.cacheDir, `${key}.tgz`);
  const infoFile = path.join(options.cacheDir, `${key}.json`);
  const cached = await readFile(infoFile, 'utf8').then((text) => JSON.parse(text) as AgentPackageInfo & { files: number }, () => null);
  if (cached && existsSync(tarball)) {
    return { ...cached, tarball, bytes: (await stat(tarball)).size, dispose: async () => undefined };
  }
  const made = await packAgentUncached(root);
  try {
    await mkdir(options.cacheDir, { recursive: true, mode: 0o700 });
    await cp(made.tarball, `${tarball}.tmp`);
    await rename(`${tarball}.tmp`, tarball);
    await writeFile(infoFile, JSON.stringify({ version: made.version, digest: made.digest, packageVersion: made.packageVersion, files: made.files }));
    // The newest few stay: older checkouts' packages are not needed again.
    const others = (await readdir(options.cacheDir)).filter((n) => n.endsWith('.json') && n !== `${key}.json`);
    const dated = await Promise.all(others.map(async (n) => ({ n, t: (await stat(path.join(options.cacheDir!, n))).mtimeMs })));
    for (const { n } of dated.sort((a, b) => b.t - a.t).slice(3)) {
      await rm(path.join(options.cacheDir, n), { force: true });
      await rm(path.join(options.cacheDir, n.replace(/\.json$/, '.tgz')), { force: true });
    }
  } finally {
    await made.dispose();
  }
  return { ...made, tarball, dispose: async () => undefined };
}

async function packAgentUncached(root: string): Promise<AgentPackage> {
  for (const dir of AGENT_DIST_DIRS) {
    if (!existsSync(path.join(root, 'dist', dir))) {
      throw notPackable(`cannot pack the agent: ${path.join(root, 'dist', dir)} is missing`, `run npm run build in ${root} (deploy setup and upgrade install the agent of a full Slipway checkout, not of the CLI package)`);
    }
  }
  const rootPackage = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string; dependencies?: Record<string, string> };
  let lock: Lockfile;
  try {
    lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as Lockfile;
  } catch (error) {
    throw notPackable(`cannot pack the agent: ${root}/package-lock.json is unreadable (${(error as Error).message})`, 'run npm install in the checkout');
  }
  const work = await mkdtemp(path.join(os.tmpdir(), 'slipway-agent-package-'));
  try {
    const stage = path.join(work, 'stage');
    await mkdir(stage);
    await cp(path.join(root, 'package.json'), path.join(stage, 'package.json'));
    await cp(path.join(root, 'nginx'), path.join(stage, 'nginx'), { recursive: true });
    for (const dir of AGENT_DIST_DIRS) {
      await cp(path.join(root, 'dist', dir), path.join(stage, 'dist', dir), { recursive: true, filter: (source) => !source.endsWith('.map') });
    }
    let locations: string[];
    try {
      locations = agentModuleLocations(lock, Object.keys(rootPackage.dependencies ?? {}), (location) => existsSync(path.join(root, location)));
    } catch (error) {
      throw notPackable(`cannot pack the agent: ${(error as Error).message}`, 'run npm ci in the checkout');
    }
    for (const location of locations) {
      const from = path.join(root, location);
      if (!existsSync(from)) throw notPackable(`cannot pack the agent: ${location} is in package-lock.json but not installed`, 'run npm ci in the checkout');
      await copyPackageDir(from, path.join(stage, location));
    }
    // Without write bits for group and others: what the host unpacks is what is digested here.
    const chmod = await runCommand(['chmod', '-R', 'go-w', stage], { timeoutMs: 60_000 });
    if (chmod.exitCode !== 0) throw notPackable(`cannot pack the agent: chmod failed: ${outputTail(chmod.stderr)}`, 'check the temp dir');
    const { digest, files } = await treeDigest(stage);
    const info: AgentPackageInfo = { version: agentPackageVersion(rootPackage.version, digest), digest, packageVersion: rootPackage.version };
    await writeFile(path.join(stage, AGENT_PACKAGE_MARKER), agentPackageMarker(info), { mode: 0o644 });
    const tarball = path.join(work, `slipway-agent-${info.version}.tgz`);
    const packed = await runCommand(['tar', '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-czf', tarball, '-C', stage, '.'], { timeoutMs: 300_000 });
    if (packed.exitCode !== 0) throw notPackable(`cannot pack the agent: tar failed (${packed.exitCode}): ${outputTail(packed.stderr)}`, 'check free space in the temp dir');
    await rm(stage, { recursive: true, force: true });
    return { ...info, tarball, bytes: (await stat(tarball)).size, files, dispose: () => rm(work, { recursive: true, force: true }) };
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  }
}
