import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { SlipwayError } from '../../contract/errors.js';
import type { BuildPlatform } from '../../contract/platform.js';
import { SPEC_FILE, type BuildSpec } from '../../contract/spec.js';
import { LEFT_RUNNING, runCommand, type CommandResult } from '../../lib/exec.js';
import { INSTALL_INPUT_FILES, installKey, installSettings } from '../../lib/install-key.js';
import { archiveCommit } from '../git.js';
import { formatMs } from '../output.js';
import { boundedSteps, buildEnv, planBuild, stepLabel, type BuildStep, type DirPlan } from './plan.js';
import type { InstallCache } from './install-cache.js';
import { detectBuildPlatform, platformFrom, type ReportFacts } from './platform.js';

// A controller-side build: a clean checkout of the commit (git archive: never the user's work
// tree) in a temp dir, then per build directory its install, commands and prune, each an argv run
// without a shell, streamed line by line, under one deadline (build.timeoutMs). An install whose
// inputs (install command, lockfile, package.json, package manager config, npm settings, build
// platform) match one kept in the install cache is not run: the cached node_modules is linked in
// (install-cache.ts); a fresh install is kept there before the build commands and prune run.
// Nothing here talks to the host: a failing build leaves it untouched.

/** Output lines kept per step for the error of a failing step. */
export const FAILURE_TAIL_LINES = 20;
/** Longer lines are cut in progress output (minified bundles print megabyte lines). */
const MAX_LINE_CHARS = 400;

export interface BuildProgress {
  /** A step starts, ends, or a directory's install decision: `  build: [frontend] npm ci`. */
  step(message: string, data: Record<string, unknown>): void;
  /** One line a step's program printed. */
  line(step: BuildStep, text: string): void;
}

export interface BuiltTree {
  /** The built checkout: what ships (plus `include`). */
  dir: string;
  /** One line per step with its time, for manifest.build.steps and `deploy history`. */
  steps: string[];
  platform: BuildPlatform;
  totalMs: number;
  cleanup(): Promise<void>;
}

export interface BuildInput {
  repo: string;
  /** The commit (or dirty snapshot commit) to check out and build. */
  treeish: string;
  /** How the commit is named in messages: "a1b2c3d4e5f6" or "a1b2c3d4e5f6 (dirty)". */
  label: string;
  build: BuildSpec;
  commitTime: string;
  /** The controller's environment; secret-looking variables are dropped (plan.ts buildEnv). */
  env: NodeJS.ProcessEnv;
  progress: BuildProgress;
  /** Where installs are kept and reused (null: every build installs). */
  installCache: InstallCache | null;
}

/** Splits a byte stream into lines, whatever the chunk boundaries. */
class LineSplitter {
  private partial = '';
  constructor(private readonly emit: (line: string) => void) {}
  push(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.emit(line);
  }
  flush(): void {
    if (this.partial) this.emit(this.partial);
    this.partial = '';
  }
}

/** Lines that read as an error: kept even when they scroll out of the tail. */
const ERROR_LINE = /\b(error|ERR!|fatal|failed)\b/i;
/** At most this many of them from before the tail. */
const EARLY_ERROR_LINES = 5;

/**
 * What a failing step's error shows of its output: the last lines, and before them the first
 * error-looking lines that scrolled out of that tail (npm prints its reason first, then pages of
 * usage help).
 */
export class OutputExcerpt {
  private count = 0;
  private readonly early: { n: number; text: string }[] = [];
  private readonly tail: { n: number; text: string }[] = [];
  constructor(private readonly tailLines = FAILURE_TAIL_LINES) {}

  add(text: string): void {
    const n = this.count++;
    if (this.early.length < EARLY_ERROR_LINES && ERROR_LINE.test(text)) this.early.push({ n, text });
    this.tail.push({ n, text });
    if (this.tail.length > this.tailLines) this.tail.shift();
  }

  lines(): string[] {
    const first = this.tail[0]?.n ?? 0;
    const before = this.early.filter((line) => line.n < first).map((line) => line.text);
    const tail = this.tail.map((line) => line.text);
    return before.length ? [...before, '…', ...tail] : tail;
  }
}

/** Pure: a program's output line as shown: no colour codes or carriage-return redraws, bounded length. */
export function cleanLine(raw: string): string {
  // eslint-disable-next-line no-control-regex
  const text = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\r').filter(Boolean).at(-1) ?? '';
  return text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}…` : text.trimEnd();
}

/** Checks out `treeish` into a new temp dir, builds it, and returns the built tree (the caller cleans it up). */
export async function buildRelease(input: BuildInput): Promise<BuiltTree> {
  const startedAt = Date.now();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-build-'));
  const cleanup = () => fs.rm(root, { recursive: true, force: true });
  try {
    const dir = path.join(root, 'src');
    await checkout(input.repo, input.treeish, root, dir);
    const plans = await planDirs(input.build, dir, input.label);
    const env = buildEnv(input.env, input.commitTime);
    const deadline = startedAt + input.build.timeoutMs;
    // Before any step: the platform is part of an install's cache key.
    const platform = await probePlatform(env, dir);
    const steps: string[] = [];
    for (const plan of plans) {
      if (!plan.install.tool) {
        input.progress.step(`  build: [${plan.dir}] ${plan.install.reason}`, { dir: plan.dir, install: null });
        steps.push(`[${plan.dir}] ${plan.install.reason}`);
      }
      for (const step of plan.steps) {
        if (step.kind === 'install' && input.installCache) steps.push(await installWithCache(step, dir, env, deadline, platform, input, input.installCache));
        else steps.push(await runStep(step, dir, env, deadline, input));
      }
    }
    const totalMs = Date.now() - startedAt;
    return { dir, steps: boundedSteps(steps), platform, totalMs, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function checkout(repo: string, treeish: string, root: string, dir: string): Promise<void> {
  const archive = path.join(root, 'source.tar');
  await archiveCommit(repo, treeish, archive);
  await fs.mkdir(dir);
  await tar.x({ file: archive, cwd: dir, strict: true });
  await fs.rm(archive);
}

/** Every build directory must exist in the commit and be installable; all problems are reported at once. */
async function planDirs(build: BuildSpec, dir: string, label: string): Promise<DirPlan[]> {
  const files = new Map<string, Set<string>>();
  for (const entry of build.dirs) {
    const full = path.join(dir, entry.path);
    const stat = await fs.stat(full).catch(() => null);
    if (stat?.isDirectory()) files.set(entry.path, new Set(await fs.readdir(full)));
  }
  const plan = planBuild(build, (p) => files.get(p) ?? null);
  if (!plan.ok) {
    throw new SlipwayError('spec_invalid', `${SPEC_FILE} in ${label} asks for a build the commit cannot do; nothing was built or uploaded`, {
      details: plan.problems.map((problem) => `${SPEC_FILE}: ${problem}`),
      hint: 'build.dirs paths are relative to the repository root; each directory with a package.json needs its committed lockfile (or "install": "none")',
    });
  }
  return plan.dirs;
}

/**
 * An install step through the cache: the kept node_modules linked in when one matches (the step
 * does not run), else the step, then its node_modules kept for the next build. Keeping it is best
 * effort: a failure is reported and the build goes on.
 */
async function installWithCache(
  step: BuildStep, root: string, env: NodeJS.ProcessEnv, deadline: number, platform: BuildPlatform, input: BuildInput, cache: InstallCache,
): Promise<string> {
  const label = stepLabel(step);
  const cwd = path.join(root, step.dir);
  const nodeModules = path.join(cwd, 'node_modules');
  const key = installKey({ tool: step.argv[0]!, argv: step.argv }, await installInputs(cwd), platform, installSettings(env));
  const reused = await cache.restore(key, nodeModules);
  if (reused) {
    input.progress.step(`  build: ${label} skipped: node_modules reused (lockfile unchanged; ${reused.linked} files linked, ${reused.copied} copied in ${formatMs(reused.ms)})`, {
      dir: step.dir, kind: step.kind, reused: true, key, linked: reused.linked, copied: reused.copied, ms: reused.ms,
    });
    return `${label} skipped: node_modules reused (lockfile unchanged, key ${key.slice(0, 12)}): ${formatMs(reused.ms)}`;
  }
  const line = await runStep(step, root, env, deadline, input);
  if (await fs.stat(nodeModules).then((st) => st.isDirectory(), () => false)) {
    const started = Date.now();
    try {
      await cache.store(key, nodeModules);
      input.progress.step(`  build: [${step.dir}] node_modules kept for reuse in ${formatMs(Date.now() - started)} (key ${key.slice(0, 12)}, ${cache.dir})`, {
        dir: step.dir, kind: step.kind, stored: true, key, ms: Date.now() - started,
      });
    } catch (error) {
      input.progress.step(`  build: [${step.dir}] node_modules not kept for reuse: ${error instanceof Error ? error.message : String(error)}`, {
        dir: step.dir, kind: step.kind, stored: false, key,
      });
    }
  }
  return line;
}

/** The bytes of the files that decide a directory's install (lib/install-key.ts), those present. */
async function installInputs(cwd: string): Promise<{ name: string; bytes: Buffer }[]> {
  const files: { name: string; bytes: Buffer }[] = [];
  for (const name of INSTALL_INPUT_FILES) {
    const bytes = await fs.readFile(path.join(cwd, name)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    });
    if (bytes) files.push({ name, bytes });
  }
  return files;
}

/** Runs one step in its directory; returns its summary line, or throws build_failed with its last lines. */
async function runStep(step: BuildStep, root: string, env: NodeJS.ProcessEnv, deadline: number, input: BuildInput): Promise<string> {
  const label = stepLabel(step);
  const remainingMs = deadline - Date.now();
  if (remainingMs <= 0) throw timedOut(label, input.build.timeoutMs, [], input.label);
  input.progress.step(`  build: ${label}`, { dir: step.dir, kind: step.kind, argv: step.argv });
  const excerpt = new OutputExcerpt();
  const onLine = (raw: string) => {
    const text = cleanLine(raw);
    if (!text) return;
    excerpt.add(text);
    input.progress.line(step, text);
  };
  const splitters = { stdout: new LineSplitter(onLine), stderr: new LineSplitter(onLine) };
  const started = Date.now();
  let result: CommandResult;
  try {
    result = await runCommand(step.argv, {
      cwd: path.join(root, step.dir), env, timeoutMs: remainingMs, maxOutputBytes: 4096,
      onOutput: (stream, chunk) => splitters[stream].push(chunk),
    });
  } catch (error) {
    if (error instanceof SlipwayError && error.code === 'command_not_started') {
      throw new SlipwayError('build_failed', `build step ${label} of ${input.label} could not start: ${error.message}; nothing was uploaded`, {
        hint: `install ${step.argv[0]} on this machine (or in CI), or choose another tool in ${SPEC_FILE} build.dirs[].install`, cause: error,
      });
    }
    throw error;
  }
  splitters.stdout.flush();
  splitters.stderr.flush();
  if (result.outputHeld) {
    input.progress.step(`  build: ${label}: ${LEFT_RUNNING}`, { dir: step.dir, kind: step.kind, outputHeld: true });
  }
  const ms = Date.now() - started;
  const tail = excerpt.lines();
  if (result.timedOut) throw timedOut(label, input.build.timeoutMs, tail, input.label);
  if (result.exitCode !== 0) {
    const how = result.exitCode === null ? `was killed by ${result.signal}` : `failed with exit code ${result.exitCode}`;
    throw new SlipwayError('build_failed', `build step ${label} of ${input.label} ${how} after ${formatMs(ms)}; nothing was uploaded, the host is untouched`, {
      details: tail.length ? tail : ['(the step printed nothing)'],
      hint: `the lines above are from its output (its first error lines, then its last lines); reproduce it in a clean checkout of the commit `
        + `(git worktree add /tmp/check ${input.treeish.slice(0, 12)}, then run "${step.argv.join(' ')}" in ${step.dir === '.' ? 'its root' : step.dir}) and fix the commit`,
    });
  }
  input.progress.step(`  build: ${label} ✓ ${formatMs(ms)}`, { dir: step.dir, kind: step.kind, ms });
  return `${label}: ${formatMs(ms)}`;
}

function timedOut(label: string, timeoutMs: number, tail: string[], commit: string): SlipwayError {
  return new SlipwayError('build_failed', `the build of ${commit} ran out of time (build.timeoutMs ${timeoutMs} ms) during ${label}; nothing was uploaded`, {
    ...(tail.length ? { details: tail } : {}),
    hint: `raise build.timeoutMs in ${SPEC_FILE}, or make the step faster`,
  });
}

const PLATFORM_PROBE = [
  'const r = process.report.getReport();',
  'process.stdout.write(JSON.stringify({ platform: process.platform, arch: process.arch, modules: process.versions.modules,',
  'version: process.version, header: { glibcVersionRuntime: r.header.glibcVersionRuntime }, sharedObjects: r.sharedObjects }));',
].join(' ');

/**
 * The platform the build's native addons were built for: that of the `node` on the build's PATH
 * (npm runs install scripts with it), which can differ from the Node running this CLI; the
 * controller's own when the build has no `node` (a build of Python only).
 */
async function probePlatform(env: NodeJS.ProcessEnv, cwd: string): Promise<BuildPlatform> {
  const result = await runCommand(['node', '-e', PLATFORM_PROBE], { cwd, env, timeoutMs: 30_000, maxOutputBytes: 256 * 1024 }).catch(() => null);
  if (result?.exitCode !== 0) return detectBuildPlatform();
  try {
    const seen = JSON.parse(result.stdout) as { platform: string; arch: string; modules: string; version: string } & ReportFacts;
    return platformFrom(seen, seen);
  } catch {
    return detectBuildPlatform();
  }
}
