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
  /** The lockfile the install follows. */
  lockfile: string | null;
  /** Yarn 2+ (a .yarnrc.yml next to yarn.lock): other flags. */
  berry: boolean;
  /** Why this tool (or none), for the build log. */
  reason: string;
}

const LOCKFILE_NAMES: Record<PackageTool, string> = { npm: 'package-lock.json or npm-shrinkwrap.json', pnpm: 'pnpm-lock.yaml', yarn: 'yarn.lock' };

/**
 * Pure: which package manager installs a directory, given the file names at its top; a string
 * is why it cannot. The install always follows a committed lockfile: a package.json without one
 * is refused rather than resolved afresh (the build would not be the one that was tested), and
 * a directory without a package.json installs nothing. The same rules as a host build
 * (agent/build/plan.ts), so a spec builds alike on either side.
 */
export function chooseInstall(install: InstallTool, files: ReadonlySet<string>): InstallChoice | string {
  if (install === 'none') return { tool: null, lockfile: null, berry: false, reason: 'install: "none"' };
  const found = LOCKFILES.find(({ file, tool }) => files.has(file) && (install === 'auto' || install === tool));
  if (!found) {
    if (install !== 'auto') return `install "${install}" needs its lockfile (${LOCKFILE_NAMES[install]}) in the directory`;
    if (!files.has('package.json')) return { tool: null, lockfile: null, berry: false, reason: 'no package.json: nothing to install' };
    return 'has a package.json but no lockfile (package-lock.json, pnpm-lock.yaml or yarn.lock): commit one, or set "install": "none"';
  }
  if (!files.has('package.json')) return `has ${found.file} but no package.json`;
  const berry = found.tool === 'yarn' && files.has('.yarnrc.yml');
  return { tool: found.tool, lockfile: found.file, berry, reason: install === 'auto' ? `${found.file} found` : `install: "${install}"` };
}

/** Pure: the install command: exactly the lockfile (ci / frozen / immutable). */
export function installArgv(tool: PackageTool, berry: boolean): string[] {
  switch (tool) {
    case 'npm': return ['npm', 'ci', '--no-audit', '--no-fund'];
    case 'pnpm': return ['pnpm', 'install', '--frozen-lockfile'];
    case 'yarn': return berry ? ['yarn', 'install', '--immutable'] : ['yarn', 'install', '--frozen-lockfile', '--non-interactive'];
  }
}

/** Pure: the command that leaves production dependencies only (yarn 1 has no prune: it reinstalls, from its cache). */
export function pruneArgv(tool: PackageTool, berry: boolean): string[] {
  switch (tool) {
    case 'npm': return ['npm', 'prune', '--omit=dev', '--no-audit', '--no-fund'];
    case 'pnpm': return ['pnpm', 'prune', '--prod'];
    case 'yarn': return berry ? ['yarn', 'workspaces', 'focus', '--all', '--production'] : ['yarn', 'install', '--frozen-lockfile', '--production', '--non-interactive', '--offline'];
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

/** Pure: one directory's steps: install, its commands in order, then prune (only after an install); or why it cannot build. */
export function planDir(spec: BuildDirSpec, files: ReadonlySet<string>): DirPlan | string {
  const install = chooseInstall(spec.install, files);
  if (typeof install === 'string') return install;
  const steps: BuildStep[] = [];
  if (install.tool) steps.push({ dir: spec.path, kind: 'install', argv: installArgv(install.tool, install.berry) });
  for (const argv of spec.commands) steps.push({ dir: spec.path, kind: 'command', argv: [...argv] });
  if (install.tool && spec.prune) steps.push({ dir: spec.path, kind: 'prune', argv: pruneArgv(install.tool, install.berry) });
  return { dir: spec.path, install, steps };
}

/**
 * Pure: every directory's plan, in the spec's order; or every problem, as "build/dirs/<i>/…:
 * message" lines. `filesOf` names the files at a directory's top, null when it does not exist.
 */
export function planBuild(build: BuildSpec, filesOf: (dir: string) => ReadonlySet<string> | null): { ok: true; dirs: DirPlan[] } | { ok: false; problems: string[] } {
  const dirs: DirPlan[] = [];
  const problems: string[] = [];
  for (const [i, dir] of build.dirs.entries()) {
    const files = filesOf(dir.path);
    if (!files) {
      problems.push(`build/dirs/${i}/path: "${dir.path}" is not a directory in the commit`);
      continue;
    }
    const plan = planDir(dir, files);
    if (typeof plan === 'string') problems.push(`build/dirs/${i}/install: ${dir.path} ${plan}`);
    else dirs.push(plan);
  }
  return problems.length ? { ok: false, problems } : { ok: true, dirs };
}

/** Pure: how a step is named in progress lines, the summary and errors: `[frontend] npm ci`. */
export function stepLabel(step: BuildStep): string {
  return `[${step.dir}] ${step.argv.join(' ')}`;
}

/** Variable names that look like they hold a secret; a build does not get them. */
const SECRET_NAME = /(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH|SESSION|COOKIE)/i;

/** What `npm run deploy` sets for its own script: it describes the user's package, not the one being built. */
const RUN_SCRIPT_VARIABLE = /^npm_(package|lifecycle)_/;

/** Names a build keeps although they match SECRET_NAME: a socket path, not a secret. */
const KEPT = new Set(['SSH_AUTH_SOCK']);

/**
 * Pure: the environment of build steps: the controller's (PATH, HOME, npm_config_* ...) without
 * secret-looking variables and without NODE_ENV (NODE_ENV=production would make the install skip
 * the dev dependencies the build needs; pruning removes them afterwards), nor the npm_package_* and
 * npm_lifecycle_* of an `npm run` that started this CLI. SOURCE_DATE_EPOCH is the
 * commit time, so tools that stamp dates build the same bytes twice (and the release id repeats).
 */
export function buildEnv(parent: NodeJS.ProcessEnv, commitTime: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || name === 'NODE_ENV' || RUN_SCRIPT_VARIABLE.test(name)) continue;
    if (SECRET_NAME.test(name) && !KEPT.has(name)) continue;
    env[name] = value;
  }
  env.SOURCE_DATE_EPOCH ??= String(Math.floor(Date.parse(commitTime) / 1000));
  return env;
}

/** What manifest.build.steps may hold (contract/manifest.ts): 256 lines of at most 4096 characters. */
const MAX_STEP_LINES = 256;
const MAX_STEP_CHARS = 4096;

/** Pure: the step summary as the manifest schema allows it: long lines cut, a long list ended by a count. */
export function boundedSteps(lines: string[]): string[] {
  const cut = lines.map((line) => (line.length > MAX_STEP_CHARS ? `${line.slice(0, MAX_STEP_CHARS - 1)}…` : line));
  return cut.length > MAX_STEP_LINES ? [...cut.slice(0, MAX_STEP_LINES - 1), `… and ${cut.length - MAX_STEP_LINES + 1} more steps`] : cut;
}
