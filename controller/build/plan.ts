import type { BuildDirSpec, BuildSpec, InstallTool } from '../../contract/spec.js';

// Pure: what a controller-side build runs, per build directory, as argv lists. Nothing here runs
// anything (controller/build/run.ts does), so the plan is unit-tested as data.

export type PackageTool = Exclude<InstallTool, 'auto' | 'none'>;

/** Lockfiles in the order `install: "auto"` looks for them. */
export const LOCKFILES: ReadonlyArray<{ file: string; tool: PackageTool }> = [
  { file: 'package-lock.json', tool: 'npm' },
  { file: 'npm-shrinkwrap.json', tool: 'npm' },
  { file: 'pnpm-lock.yaml', tool: 'pnpm' },
  { file: 'yarn.lock', tool: 'yarn' },
];

export interface InstallChoice {
  tool: PackageTool | null;
  /** The lockfile the install follows, when there is one. */
  lockfile: string | null;
  /** Why this tool (or none), for the build log. */
  reason: string;
}

/** Pure: which package manager installs a directory, given the file names at its top. */
export function chooseInstall(install: InstallTool, files: ReadonlySet<string>): InstallChoice {
  if (install === 'none') return { tool: null, lockfile: null, reason: 'install: "none"' };
  if (install === 'auto') {
    const found = LOCKFILES.find(({ file }) => files.has(file));
    if (!found) return { tool: null, lockfile: null, reason: 'no lockfile (package-lock.json, pnpm-lock.yaml, yarn.lock): nothing to install' };
    return { tool: found.tool, lockfile: found.file, reason: `${found.file} found` };
  }
  const lockfile = LOCKFILES.find(({ file, tool }) => tool === install && files.has(file))?.file ?? null;
  return { tool: install, lockfile, reason: `install: "${install}"` };
}

/** Pure: the install command: the lockfile exactly (ci / frozen) when there is one. */
export function installArgv(tool: PackageTool, hasLockfile: boolean): string[] {
  switch (tool) {
    case 'npm': return hasLockfile ? ['npm', 'ci', '--no-audit', '--no-fund'] : ['npm', 'install', '--no-audit', '--no-fund'];
    case 'pnpm': return hasLockfile ? ['pnpm', 'install', '--frozen-lockfile'] : ['pnpm', 'install'];
    case 'yarn': return hasLockfile ? ['yarn', 'install', '--frozen-lockfile'] : ['yarn', 'install'];
  }
}

/** Pure: the command that leaves production dependencies only (yarn classic has no prune: it reinstalls). */
export function pruneArgv(tool: PackageTool, hasLockfile: boolean): string[] {
  switch (tool) {
    case 'npm': return ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'];
    case 'pnpm': return ['pnpm', 'prune', '--prod'];
    case 'yarn': return ['yarn', 'install', '--production', ...(hasLockfile ? ['--frozen-lockfile'] : [])];
  }
}

export type StepKind = 'install' | 'command' | 'prune';

export interface BuildStep {
  /** The build directory, relative to the repository root ("." for the root). */
  dir: string;
  kind: StepKind;
  argv: string[];
}

export interface DirPlan {
  dir: string;
  install: InstallChoice;
  steps: BuildStep[];
}

/** Pure: one directory's steps: install, its commands in order, then prune (only after an install). */
export function planDir(spec: BuildDirSpec, files: ReadonlySet<string>): DirPlan {
  const install = chooseInstall(spec.install, files);
  const steps: BuildStep[] = [];
  if (install.tool) steps.push({ dir: spec.path, kind: 'install', argv: installArgv(install.tool, install.lockfile !== null) });
  for (const argv of spec.commands) steps.push({ dir: spec.path, kind: 'command', argv: [...argv] });
  if (install.tool && spec.prune) steps.push({ dir: spec.path, kind: 'prune', argv: pruneArgv(install.tool, install.lockfile !== null) });
  return { dir: spec.path, install, steps };
}

/** Pure: every directory's plan, in the spec's order. `filesOf` names the files at a directory's top. */
export function planBuild(build: BuildSpec, filesOf: (dir: string) => ReadonlySet<string>): DirPlan[] {
  return build.dirs.map((dir) => planDir(dir, filesOf(dir.path)));
}

/** Pure: how a step is named in progress lines, the summary and errors: `[frontend] npm ci`. */
export function stepLabel(step: BuildStep): string {
  return `[${step.dir}] ${step.argv.join(' ')}`;
}

/** Variable names that look like they hold a secret; a build does not get them. */
const SECRET_NAME = /(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH|SESSION|COOKIE)/i;

/** Names a build keeps although they match SECRET_NAME: a socket path, not a secret. */
const KEPT = new Set(['SSH_AUTH_SOCK']);

/**
 * Pure: the environment of build steps: the controller's (PATH, HOME, npm_config_* ...) without
 * secret-looking variables and without NODE_ENV (NODE_ENV=production would make the install skip
 * the dev dependencies the build needs; pruning removes them afterwards). SOURCE_DATE_EPOCH is the
 * commit time, so tools that stamp dates build the same bytes twice (and the release id repeats).
 */
export function buildEnv(parent: NodeJS.ProcessEnv, commitTime: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || name === 'NODE_ENV') continue;
    if (SECRET_NAME.test(name) && !KEPT.has(name)) continue;
    env[name] = value;
  }
  env.SOURCE_DATE_EPOCH ??= String(Math.floor(Date.parse(commitTime) / 1000));
  return env;
}
