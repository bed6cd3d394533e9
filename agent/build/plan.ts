// Pure planning of a host build (`build.on: "host"`): which install, build and prune commands run
// in which directory, the key under which an install can be reused, the priority prefix, and the
// free-memory rule. No I/O here; host-build.ts reads the files and runs the plan.
import type { BuildDirSpec, BuildSpec } from '../../contract/spec.js';
import { INSTALL_INPUT_FILES } from '../../lib/install-key.js';

// The install key is shared with controller-side builds.
export { INSTALL_INPUT_FILES, installKey } from '../../lib/install-key.js';

export type PackageTool = 'npm' | 'pnpm' | 'yarn';

export interface InstallPlan {
  tool: PackageTool;
  /** The lockfile the install follows, relative to the build dir. */
  lockfile: string;
  argv: string[];
  /** Files (relative to the build dir) whose bytes make up the install's reuse key. */
  keyFiles: string[];
}

export interface DirPlan {
  /** Relative to the release root; "." for the root. */
  path: string;
  install: InstallPlan | null;
  commands: string[][];
  prune: string[] | null;
}

export interface BuildPlanProblem { dir: string; message: string }

export type BuildPlan = { ok: true; dirs: DirPlan[] } | { ok: false; problems: BuildPlanProblem[] };

const NPM_LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json'] as const;

function npmLockfile(files: ReadonlySet<string>): string | undefined {
  return NPM_LOCKFILES.find((f) => files.has(f));
}

/**
 * The install a dir gets: `auto` follows the lockfile that is there (package-lock.json or
 * npm-shrinkwrap.json → npm ci, pnpm-lock.yaml → pnpm, yarn.lock → yarn); a named tool needs its
 * lockfile. A package.json without a lockfile is refused rather than resolved afresh on the box:
 * the build would not be the one that was tested.
 */
export function planInstall(dir: BuildDirSpec, files: ReadonlySet<string>): InstallPlan | null | { problem: string } {
  if (dir.install === 'none') return null;
  const npmLock = npmLockfile(files);
  let tool: PackageTool | undefined;
  let lockfile: string | undefined;
  if (dir.install === 'npm' || (dir.install === 'auto' && npmLock)) {
    tool = 'npm';
    lockfile = npmLock;
  } else if (dir.install === 'pnpm' || (dir.install === 'auto' && files.has('pnpm-lock.yaml'))) {
    tool = 'pnpm';
    lockfile = files.has('pnpm-lock.yaml') ? 'pnpm-lock.yaml' : undefined;
  } else if (dir.install === 'yarn' || (dir.install === 'auto' && files.has('yarn.lock'))) {
    tool = 'yarn';
    lockfile = files.has('yarn.lock') ? 'yarn.lock' : undefined;
  }
  if (!tool) {
    if (!files.has('package.json')) return null;
    return { problem: 'has a package.json but no lockfile (package-lock.json, pnpm-lock.yaml or yarn.lock): commit one, or set "install": "none"' };
  }
  if (!lockfile) return { problem: `install "${tool}" needs its lockfile (${tool === 'npm' ? NPM_LOCKFILES.join(' or ') : tool === 'pnpm' ? 'pnpm-lock.yaml' : 'yarn.lock'}) in the directory` };
  if (!files.has('package.json')) return { problem: `has ${lockfile} but no package.json` };
  const berry = tool === 'yarn' && files.has('.yarnrc.yml');
  const argv = tool === 'npm' ? ['npm', 'ci', '--no-audit', '--no-fund']
    : tool === 'pnpm' ? ['pnpm', 'install', '--frozen-lockfile']
      : berry ? ['yarn', 'install', '--immutable'] : ['yarn', 'install', '--frozen-lockfile', '--non-interactive'];
  const keyFiles = INSTALL_INPUT_FILES.filter((f) => files.has(f)).sort();
  return { tool, lockfile, argv, keyFiles };
}

/** Dropping dev dependencies after the build, per tool. */
export function pruneArgv(tool: PackageTool, berry: boolean): string[] {
  if (tool === 'npm') return ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'];
  if (tool === 'pnpm') return ['pnpm', 'prune', '--prod'];
  return berry ? ['yarn', 'workspaces', 'focus', '--all', '--production'] : ['yarn', 'install', '--frozen-lockfile', '--production', '--non-interactive', '--offline'];
}

/** Pure: the whole build, dir by dir, from the spec and the install files each dir has. */
export function planHostBuild(build: BuildSpec, filesByDir: Readonly<Record<string, ReadonlySet<string>>>): BuildPlan {
  const dirs: DirPlan[] = [];
  const problems: BuildPlanProblem[] = [];
  for (const dir of build.dirs) {
    const files = filesByDir[dir.path] ?? new Set<string>();
    const install = planInstall(dir, files);
    if (install && 'problem' in install) {
      problems.push({ dir: dir.path, message: install.problem });
      continue;
    }
    const prune = dir.prune && install ? pruneArgv(install.tool, files.has('.yarnrc.yml')) : null;
    dirs.push({ path: dir.path, install, commands: dir.commands, prune });
  }
  return problems.length ? { ok: false, problems } : { ok: true, dirs };
}


/**
 * The argv prefix that runs a build step at lowered priority: `nice -n N` (CPU) and `ionice -c3`
 * (idle I/O class), each only when the program exists. A prefix rather than setpriority(2) on the
 * child's pid: the priority then holds from the first instruction and for every process the step
 * forks (npm spawns node-gyp, compilers), with no window in which a child escapes it, and it also
 * covers I/O, which setpriority cannot.
 */
export function priorityPrefix(available: { nice: string | null; ionice: string | null }, niceness: number): string[] {
  const prefix: string[] = [];
  if (available.ionice) prefix.push(available.ionice, '-c3');
  if (available.nice && niceness > 0) prefix.push(available.nice, '-n', String(niceness));
  return prefix;
}

/** MemAvailable of /proc/meminfo in bytes; null when the kernel does not report it. */
export function parseMemAvailable(meminfo: string): number | null {
  const match = /^MemAvailable:\s+(\d+)\s*kB$/m.exec(meminfo);
  return match ? Number(match[1]) * 1024 : null;
}

/** Pure: why a build may not start for lack of memory, or null. */
export function memoryRefusal(availableBytes: number | null, floorBytes: number): string | null {
  if (availableBytes === null || availableBytes >= floorBytes) return null;
  const mib = (n: number) => `${Math.floor(n / (1024 * 1024))} MiB`;
  return `only ${mib(availableBytes)} of memory is available, below the floor of ${mib(floorBytes)} for a host build`;
}

/** The deadline of a whole host build: the spec's timeout, capped by the box owner's. */
export function buildTimeoutMs(specMs: number, capMs: number | undefined): number {
  return capMs === undefined ? specMs : Math.min(specMs, capMs);
}

/** How a step is named in events and errors: `install (npm ci) in frontend`. */
export function stepLabel(kind: 'install' | 'command' | 'prune', argv: readonly string[], dir: string): string {
  const shown = argv.length > 4 ? `${argv.slice(0, 4).join(' ')} …` : argv.join(' ');
  return `${kind === 'command' ? 'build' : kind} (${shown})${dir === '.' ? '' : ` in ${dir}`}`;
}

/**
 * Splits a stream's chunks into lines (a partial line waits for its end), clipping very long
 * lines, so each can become one progress event.
 */
export class LineSplitter {
  private rest = '';

  constructor(private readonly onLine: (line: string) => void, private readonly maxLineChars = 500) {}

  push(chunk: Buffer | string): void {
    const text = this.rest + chunk.toString();
    const lines = text.split(/\r?\n|\r/);
    this.rest = lines.pop() ?? '';
    if (this.rest.length > this.maxLineChars * 4) {
      lines.push(this.rest);
      this.rest = '';
    }
    for (const line of lines) this.emit(line);
  }

  end(): void {
    if (this.rest) this.emit(this.rest);
    this.rest = '';
  }

  private emit(line: string): void {
    // Progress bars and colours are noise in a history: strip ANSI escapes.
    // eslint-disable-next-line no-control-regex
    const clean = line.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '').trimEnd();
    if (!clean.trim()) return;
    this.onLine(clean.length > this.maxLineChars ? `${clean.slice(0, this.maxLineChars)}…` : clean);
  }
}
