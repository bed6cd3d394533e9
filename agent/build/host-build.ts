// Host builds (`build.on: "host"`): install, build and prune a release in its own directory on the
// box, after it is unpacked and before any slot starts, under the app's deploy lock. Nothing here
// touches a slot, nginx or another release: a failed build leaves the release dir as it was
// uploaded (minus nothing, plus nothing) and read-only, and is not recorded as built.
//
// On disk:
//   releases/<app>/<releaseId>/<dir>/node_modules   the release's own install (hardlinks where reused)
//   build-cache/<app>/<installKey>/node_modules     a completed install, before its build and prune,
//                                                   hardlinked from the release that made it; read-only
//   build-cache/<app>/.tmp-*                        an install being recorded (removed when found later)
import { access, constants, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { AppSpec } from '../../contract/spec.js';
import type { BuildPlatform } from '../../contract/platform.js';
import { DEFAULT_BUILD_POLICY, type HostBuildPolicy } from './policy.js';
import {
  INSTALL_INPUT_FILES, buildTimeoutMs, installKey, memoryRefusal, parseMemAvailable, planHostBuild, priorityPrefix, stepLabel,
  type DirPlan,
} from './plan.js';
import { hostPlatform } from './platform.js';
import { describeEnd, runStreaming } from './stream-run.js';
import { linkTree, listTree, removeAdded, setTreeWritable } from '../../lib/link-tree.js';
import { isInstallMetadata } from '../../lib/install-key.js';
import type { HostBuildStore, InstallRecord } from './store.js';

/** Lines of a failing step's output the error carries. */
const ERROR_TAIL_LINES = 20;
/** Output lines of one build sent as progress events (and kept in history); the rest is counted. */
const MAX_EVENT_LINES = 2000;

export interface HostBuildDeps {
  config: AgentConfig;
  builds: HostBuildStore;
  releaseDir: (app: string, releaseId: string) => string;
  hasRelease: (app: string, releaseId: string) => boolean;
  logger: Logger;
  /** /proc/meminfo's text (a seam for tests of the memory floor). */
  readMeminfo?: () => Promise<string>;
  platform?: () => BuildPlatform;
}

export interface BuildReport {
  /** A line of a step's output. */
  output(line: string): void;
  /** A note of the build itself: a step starts, an install is reused. */
  note(message: string): void;
}

export interface HostBuildResult {
  /** False when the release was built before (nothing ran). */
  built: boolean;
  /** Build dirs whose install was reused from an earlier one. */
  reused: string[];
  /** Steps that ran (install, build commands, prune). */
  steps: string[];
  durationMs: number;
}

interface StepFailure { label: string; end: string; exitCode: number | null; signal: string | null; timedOut: boolean; tail: string[] }

/** Whether a release's spec asks for a host build. */
export function wantsHostBuild(spec: AppSpec | null): spec is AppSpec & { build: NonNullable<AppSpec['build']> } {
  return spec?.build?.on === 'host';
}

export class HostBuilder {
  private tools: Promise<{ nice: string | null; ionice: string | null }> | undefined;

  constructor(private readonly deps: HostBuildDeps) {}

  private policy(app: string): HostBuildPolicy {
    return this.deps.config.apps[app]?.build ?? DEFAULT_BUILD_POLICY;
  }

  private get cacheRoot(): string {
    return path.join(this.deps.config.home, 'build-cache');
  }

  /** Whether the release still needs its host build (asked for, and not recorded as built). */
  needsBuild(app: string, releaseId: string, spec: AppSpec | null): boolean {
    return wantsHostBuild(spec) && this.deps.builds.get(app, releaseId)?.status !== 'built';
  }

  /** The platform a host-built release's dependencies were built on, or null when it was not built here. */
  builtPlatform(app: string, releaseId: string): BuildPlatform | null {
    const row = this.deps.builds.get(app, releaseId);
    return row?.status === 'built' ? row.platform : null;
  }

  /**
   * Builds the release unless it was built before. Refuses before changing anything when the
   * policy forbids host builds, memory is short or the plan is impossible; on a failing step,
   * removes what the build added and throws build_failed with the step, exit code and last lines.
   */
  async build(input: { app: string; releaseId: string; spec: AppSpec; deploymentId: number | null; report: BuildReport }): Promise<HostBuildResult> {
    const { app, releaseId, spec, report } = input;
    const label = `${app}@${shortSha(releaseId)}`;
    const started = Date.now();
    if (!wantsHostBuild(spec)) return { built: false, reused: [], steps: [], durationMs: 0 };
    const existing = this.deps.builds.get(app, releaseId);
    if (existing?.status === 'built') {
      report.note(`already built on this host (${existing.endedAt ?? existing.startedAt}); not building again`);
      return { built: false, reused: [], steps: [], durationMs: 0 };
    }
    const policy = this.policy(app);
    if (!policy.allowHost) {
      throw new SlipwayError('build_not_allowed', `${label} asks for a host build ("build": {"on": "host"}), which this host does not allow`, {
        status: 422, hint: `build on the controller instead (remove "on": "host"), or allow it in the agent config: apps.${app}.build.allowHost`,
      });
    }
    await this.requireMemory(label, policy);
    const root = this.deps.releaseDir(app, releaseId);
    const plan = planHostBuild(spec.build, await this.installFiles(root, spec.build.dirs.map((d) => d.path)));
    if (!plan.ok) {
      throw new SlipwayError('build_failed', `host build of ${label} cannot start: ${plan.problems.map((p) => `build/dirs ${p.dir}: ${p.message}`).join('; ')}`, {
        status: 422, details: plan.problems.map((p) => `${p.dir}: ${p.message}`), hint: 'fix "build" in deploy.spec.json and push again; nothing was changed on the host',
      });
    }
    const platform = (this.deps.platform ?? hostPlatform)();
    const deadline = started + buildTimeoutMs(spec.build.timeoutMs, policy.timeoutMs);
    // A build the agent died in left its additions: back to the release as uploaded first.
    const interrupted = this.deps.builds.interruptedTree(app, releaseId);
    if (interrupted) {
      await setTreeWritable(root, true, { dirsOnly: true });
      const removed = await removeAdded(root, new Set(interrupted));
      report.note(`an earlier build of this release was interrupted: removed ${removed} path(s) it had added`);
    }
    const before = await listTree(root);
    this.deps.builds.start({ app, releaseId, platform, deploymentId: input.deploymentId, uploadedTree: [...before] });
    const installs: InstallRecord[] = [];
    const steps: string[] = [];
    const output = this.outputBudget(report);
    await setTreeWritable(root, true);
    try {
      for (const dir of plan.dirs) {
        await this.buildDir({ app, releaseId, root, dir, platform, policy, deadline, report, output, installs, steps });
      }
    } catch (error) {
      await this.undo(root, before, label);
      this.deps.builds.finish(app, releaseId, { status: 'failed', installs, durationMs: Date.now() - started, error: errorMessage(error) });
      throw error;
    } finally {
      await setTreeWritable(root, false).catch((error: unknown) => this.deps.logger.error({ err: error, app, releaseId }, 'could not make the release read-only again'));
    }
    const durationMs = Date.now() - started;
    this.deps.builds.finish(app, releaseId, { status: 'built', installs, durationMs, error: null });
    await this.pruneCache(app).catch((error: unknown) => this.deps.logger.warn({ err: error, app }, 'could not prune the install cache'));
    return { built: true, reused: installs.filter((i) => i.reusedFrom !== null).map((i) => i.dir), steps, durationMs };
  }

  private async buildDir(ctx: {
    app: string; releaseId: string; root: string; dir: DirPlan; platform: BuildPlatform; policy: HostBuildPolicy; deadline: number;
    report: BuildReport; output: (line: string) => void; installs: InstallRecord[]; steps: string[];
  }): Promise<void> {
    const { app, releaseId, root, dir, platform, report } = ctx;
    const cwd = path.join(root, dir.path);
    const run = async (kind: 'install' | 'command' | 'prune', argv: string[]): Promise<void> => {
      const step = stepLabel(kind, argv, dir.path);
      ctx.steps.push(step);
      report.note(`${step}: started`);
      await this.runStep({ app, releaseId, argv, cwd, step, deadline: ctx.deadline, policy: ctx.policy, output: ctx.output });
    };
    if (dir.install) {
      const key = installKey(dir.install, await Promise.all(dir.install.keyFiles.map(async (name) => ({ name, bytes: await readFile(path.join(cwd, name)) }))), platform);
      const cached = path.join(this.cacheRoot, app, key);
      const from = this.cacheSource(app, key);
      if (await exists(path.join(cached, 'node_modules'))) {
        const started = Date.now();
        await rm(path.join(cwd, 'node_modules'), { recursive: true, force: true });
        const counts = await linkTree(path.join(cached, 'node_modules'), path.join(cwd, 'node_modules'), { copy: isInstallMetadata });
        report.note(`install${dir.path === '.' ? '' : ` in ${dir.path}`}: reused the install of ${from ? `release ${shortSha(from)}` : 'an earlier release'} (same lockfile, package.json and platform; key ${key.slice(0, 12)}): ${counts.linked} files linked, ${counts.copied} copied in ${Date.now() - started} ms`);
        ctx.installs.push({ dir: dir.path, key, reusedFrom: from ?? 'cache' });
      } else {
        await run('install', dir.install.argv);
        ctx.installs.push({ dir: dir.path, key, reusedFrom: null });
        await this.recordInstall(app, key, path.join(cwd, 'node_modules'), report);
      }
    }
    for (const command of dir.commands) await run('command', command);
    if (dir.prune) await run('prune', dir.prune);
  }

  /** Runs one step at lowered priority with the time left; throws build_failed unless it exits 0. */
  private async runStep(input: {
    app: string; releaseId: string; argv: string[]; cwd: string; step: string; deadline: number; policy: HostBuildPolicy; output: (line: string) => void;
  }): Promise<void> {
    const { app, releaseId, argv, cwd, step } = input;
    const timeoutMs = input.deadline - Date.now();
    if (timeoutMs <= 0) throw buildFailed(app, releaseId, { label: step, end: 'was not started: the build\'s time limit is used up', exitCode: null, signal: null, timedOut: true, tail: [] });
    const prefix = priorityPrefix(await this.priorityTools(), input.policy.nice);
    const run = await runStreaming([...prefix, ...argv], { cwd, env: buildEnv(app, releaseId, input.policy), timeoutMs, onLine: input.output, tailLines: ERROR_TAIL_LINES });
    if (!run.ok) throw buildFailed(app, releaseId, { label: step, end: describeEnd(run, timeoutMs), ...run });
  }

  private async requireMemory(label: string, policy: HostBuildPolicy): Promise<void> {
    const meminfo = await (this.deps.readMeminfo ?? (() => readFile('/proc/meminfo', 'utf8')))().catch(() => '');
    const refusal = memoryRefusal(parseMemAvailable(meminfo), policy.minFreeMemoryBytes);
    if (refusal) {
      throw new SlipwayError('build_memory_low', `host build of ${label} not started: ${refusal}`, {
        status: 503,
        hint: 'free memory on the host (or add swap), build on the controller instead, or lower apps.<app>.build.minFreeMemoryBytes in the agent config; nothing was changed',
      });
    }
  }

  /** The install files each build dir has (which decide the plan). */
  private async installFiles(root: string, dirs: string[]): Promise<Record<string, Set<string>>> {
    const out: Record<string, Set<string>> = {};
    for (const dir of dirs) {
      const present = new Set<string>();
      for (const name of INSTALL_INPUT_FILES) if (await exists(path.join(root, dir, name))) present.add(name);
      out[dir] = present;
    }
    return out;
  }

  /** Keeps a completed install (before build and prune) for later releases with the same key. */
  private async recordInstall(app: string, key: string, nodeModules: string, report: BuildReport): Promise<void> {
    if (!await exists(nodeModules)) return;
    const appCache = path.join(this.cacheRoot, app);
    const tmp = path.join(appCache, `.tmp-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(appCache, { recursive: true, mode: 0o700 });
      await linkTree(nodeModules, path.join(tmp, 'node_modules'), { copy: isInstallMetadata });
      // Read-only, so an app or a later build running as the agent's user cannot change files
      // that releases share through their hardlinks.
      await setTreeWritable(path.join(tmp, 'node_modules'), false);
      await rename(tmp, path.join(appCache, key)).catch(async (error: unknown) => {
        if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      });
    } catch (error) {
      // The release is fine without it; only the next install cannot be skipped.
      report.note(`could not keep the install for reuse: ${errorMessage(error)}`);
    } finally {
      await removeCacheDir(tmp);
    }
  }

  /** The release whose build made install `key`, when recorded. */
  private cacheSource(app: string, key: string): string | undefined {
    return this.deps.builds.all(app).find((b) => b.installs.some((i) => i.key === key && i.reusedFrom === null))?.releaseId;
  }

  /** Drops kept installs no release on the box was built with any more. */
  private async pruneCache(app: string): Promise<void> {
    const appCache = path.join(this.cacheRoot, app);
    const used = new Set<string>();
    for (const build of this.deps.builds.all(app)) {
      if (build.status === 'built' && this.deps.hasRelease(app, build.releaseId)) for (const i of build.installs) used.add(i.key);
    }
    const names = await readdir(appCache).catch(() => [] as string[]);
    for (const name of names) if (!used.has(name)) await removeCacheDir(path.join(appCache, name));
  }

  /** Takes the release back to its uploaded tree: what the failed build added goes. */
  private async undo(root: string, before: ReadonlySet<string>, label: string): Promise<void> {
    try {
      await removeAdded(root, before);
    } catch (error) {
      this.deps.logger.error({ err: error, label }, 'could not remove what a failed host build added');
    }
  }

  /** Caps the output lines sent as events; the error keeps the last lines of a failing step anyway. */
  private outputBudget(report: BuildReport): (line: string) => void {
    let sent = 0;
    return (line) => {
      sent++;
      if (sent <= MAX_EVENT_LINES) report.output(line);
      else if (sent === MAX_EVENT_LINES + 1) report.note(`output beyond ${MAX_EVENT_LINES} lines is not shown; a failing step's last ${ERROR_TAIL_LINES} lines are in its error`);
    };
  }

  private priorityTools(): Promise<{ nice: string | null; ionice: string | null }> {
    this.tools ??= Promise.all([findProgram('nice'), findProgram('ionice')]).then(([nice, ionice]) => ({ nice, ionice }));
    return this.tools;
  }
}

/**
 * A build step's environment: a clean one (the agent's own variables do not leak in), the box
 * owner's build env (npm_config_cache, a registry, proxies) over it. Not the app's env file: its
 * secrets stay out of build output, and the same commit builds the same way on every box.
 */
export function buildEnv(app: string, releaseId: string, policy: HostBuildPolicy): Record<string, string> {
  const passed: Record<string, string> = {};
  for (const name of ['HOME', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
    const value = process.env[name];
    if (value !== undefined) passed[name] = value;
  }
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: '/tmp',
    ...passed,
    LANG: 'C.UTF-8',
    CI: 'true',
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    SLIPWAY_APP: app,
    SLIPWAY_RELEASE: releaseId,
    ...policy.env,
  };
}

function buildFailed(app: string, releaseId: string, f: StepFailure): SlipwayError {
  return new SlipwayError('build_failed', `host build of ${app}@${shortSha(releaseId)} failed: ${f.label} ${f.end}`, {
    status: 422,
    details: [`step: ${f.label}`, `exit code: ${f.exitCode ?? 'none'}${f.signal ? ` (signal ${f.signal})` : ''}${f.timedOut ? ' (timed out)' : ''}`, `last ${f.tail.length} line(s) of output:`, ...f.tail],
    hint: f.timedOut
      ? 'raise build.timeoutMs in deploy.spec.json (the host caps it at apps.<app>.build.timeoutMs), or build on the controller; slots, traffic and earlier releases were not touched'
      : 'fix the step and push again; slots, traffic and earlier releases were not touched',
  });
}

async function exists(file: string): Promise<boolean> {
  return access(file, constants.F_OK).then(() => true, () => false);
}

/** rm -r of a tree whose directories were made read-only. */
async function removeCacheDir(dir: string): Promise<void> {
  if (!await exists(dir)) return;
  await setTreeWritable(dir, true, { dirsOnly: true }).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

async function findProgram(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return null;
}
