import { constants as fsConstants, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AgentConfig } from '../config.js';
import { envFileOf } from '../config.js';
import { readAppEnv } from '../envfile.js';
import type { SlotProcessRow, StateStore } from '../state/store.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { pm2ProcessName, shortSha, type Slot } from '../../contract/names.js';
import type { HttpHealthSpec, ProcessSpec, WorkerHealthSpec } from '../../contract/spec.js';
import { waitFor } from '../../lib/wait.js';
import type { HealthChecker, ProcessManager } from './deps.js';
import { allowedReleaseSpec, releaseSpecOf, type EffectiveSpec } from '../spec/release-spec.js';
import type { SpecOverrides } from '../../contract/spec-overrides.js';
import { assignPorts, type PortAssignment } from '../spec/ports.js';
import { translateLegacy } from '../spec/legacy.js';
import { policyOf } from '../spec/policy.js';
import { portVariables, processEnv, slotLayoutOf, substitutePorts } from '../spec/layout.js';
import { tailFile } from './log-tail.js';
import { parseLogLines } from '../logs/log-line.js';
import { maskSecrets } from '../../lib/mask.js';

export interface SlotTarget { app: string; slot: Slot; releaseId: string }

export interface SlotProcessDeps {
  config: AgentConfig;
  state: StateStore;
  processes: ProcessManager;
  health: HealthChecker;
  releaseDir: (app: string, releaseId: string) => string;
  /** Whether something answers on the port (a process Slipway did not start, or one still exiting). */
  portInUse?: (port: number) => Promise<boolean>;
  /** How long a start waits for the slot's port to be free (a previous process exiting). */
  portWaitMs?: number;
}

/** A health gate's abort: the signal that cuts its checks short, and the error it then ends with. */
export interface GateAbort {
  signal: AbortSignal;
  error(): Error;
}

/** How many lines of a process's own output a failed health gate shows. */
const LOG_TAIL_LINES = 20;

export function isHttpHealth(health: HttpHealthSpec | WorkerHealthSpec): health is HttpHealthSpec {
  return (health as HttpHealthSpec).path !== undefined;
}

/**
 * A slot's processes under PM2: every process of the spec of the release the slot runs, started
 * from the release's real directory with a clean env, recorded in SQLite (the slot's layout),
 * gated on each process's own health check, stopped by the recorded layout. PM2's "online" is
 * never taken for health.
 */
export class SlotProcesses {
  private readonly portInUse: (port: number) => Promise<boolean>;

  constructor(private readonly deps: SlotProcessDeps) {
    this.portInUse = deps.portInUse ?? portAnswers;
  }

  /** The spec a release runs with (its own, or the app's legacy spec). */
  specOf(app: string, releaseId: string): EffectiveSpec {
    const row = this.deps.state.release(app, releaseId);
    if (!row) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${app} is not recorded on this host`, {
        hint: 'upload it first (deploy push does this)', status: 404,
      });
    }
    return releaseSpecOf(app, this.deps.config.apps[app]!, row.manifest, this.overridesOf(app));
  }

  /** The overrides the app's environment last sent (null: none). */
  overridesOf(app: string): SpecOverrides | null {
    return this.deps.state.appOverrides(app)?.overrides ?? null;
  }

  /**
   * The release's spec, refused (spec_refused) when it asks for more than the host allows;
   * `overrides`: check these (a deployment's new ones) instead of the stored ones.
   */
  allowedSpecOf(app: string, releaseId: string, overrides?: SpecOverrides | null): EffectiveSpec {
    const row = this.deps.state.release(app, releaseId);
    if (!row) return this.specOf(app, releaseId);
    return allowedReleaseSpec(app, this.deps.config.apps[app]!, row.manifest, overrides === undefined ? this.overridesOf(app) : overrides);
  }

  /** Reads the app's env file: a missing file or required variable stops a rollout before any change. */
  appEnv(app: string, releaseId?: string): Promise<Record<string, string>> {
    const required = releaseId ? this.specOf(app, releaseId).spec.requiredEnv : (this.deps.config.apps[app]!.requiredEnv ?? []);
    return readAppEnv(envFileOf(this.deps.config, app), app, required);
  }

  /** Starts a release in a slot outside any rollout (crash recovery restores the live slot this way). */
  async startRelease(app: string, slot: Slot, releaseId: string): Promise<void> {
    await this.start({ app, slot, releaseId }, await this.appEnv(app, releaseId));
  }

  /**
   * The layout the release gets in the slot: its processes with their PM2 names and ports, sticky
   * per (app, slot, process); new assignments are recorded.
   */
  planLayout(target: SlotTarget, effective: EffectiveSpec): SlotProcessRow[] {
    const { app, slot, releaseId } = target;
    const { config, state } = this.deps;
    const listening = Object.keys(effective.spec.processes).filter((p) => effective.spec.processes[p]!.port).sort();
    const pinned: PortAssignment[] = [];
    const reserved: number[] = [config.api.port];
    for (const [name, appConfig] of Object.entries(config.apps)) {
      const legacy = translateLegacy(appConfig);
      if (legacy) for (const s of ['blue', 'green'] as const) for (const [process, port] of Object.entries(legacy.pinnedPorts[s])) pinned.push({ app: name, slot: s, process, port });
      reserved.push(...policyOf(appConfig).listen.ports);
    }
    const { ports, added } = assignPorts({
      range: config.ports, existing: state.portAssignments(), pinned, reserved,
      wanted: listening.map((process) => ({ app, slot, process })),
    });
    if (added.length > 0) state.addPortAssignments(added);
    return slotLayoutOf({ app, slot, releaseId, spec: effective.spec, source: effective.source, ports: Object.fromEntries(ports.map((p) => [p.process, p.port])) });
  }

  /**
   * The processes a slot runs: its recorded layout, or, for a slot started before layouts were
   * recorded, the layout of its release's spec (nothing is assigned here).
   */
  layout(app: string, slot: Slot): SlotProcessRow[] {
    const stored = this.deps.state.slotLayout(app, slot);
    if (stored.length > 0) return stored;
    const releaseId = this.deps.state.slot(app, slot).releaseId;
    const legacy = translateLegacy(this.deps.config.apps[app]!);
    if (legacy && releaseId) {
      try {
        const effective = this.specOf(app, releaseId);
        if (effective.source === 'legacy') {
          return slotLayoutOf({ app, slot, releaseId, spec: effective.spec, source: 'legacy', ports: legacy.pinnedPorts[slot] });
        }
      } catch {
        // Fall through to the legacy name below.
      }
    }
    return [{ process: 'web', releaseId: releaseId ?? '', pm2Name: pm2ProcessName(app, slot), port: legacy?.pinnedPorts[slot].web ?? null, instances: 1, singleton: false }];
  }

  /**
   * Starts every process of the release's spec in the slot (or only `only`, to bring back
   * singletons). The slot's layout is recorded before the first start, so a crash in between still
   * knows what to stop.
   */
  async start(target: SlotTarget, appEnv: Record<string, string>, options: { only?: string[] } = {}): Promise<SlotProcessRow[]> {
    const { app, slot, releaseId } = target;
    const effective = this.specOf(app, releaseId);
    const layout = this.planLayout(target, effective);
    const chosen = options.only ? layout.filter((p) => options.only!.includes(p.process)) : layout;
    const dir = await fs.realpath(this.deps.releaseDir(app, releaseId));
    // Every start is resolved (paths inside the release, commands found) before PM2 is touched.
    const starts = await Promise.all(chosen.map((p) => this.startSpec(target, dir, effective, p, layout, appEnv)));
    if (!options.only) {
      // PM2 first: when its daemon is down this fails at once and SQLite keeps what the slot runs.
      const names = new Set([...this.layout(app, slot).map((p) => p.pm2Name), ...layout.map((p) => p.pm2Name)]);
      for (const name of names) await this.deps.processes.delete(name);
      this.deps.state.transaction(() => {
        this.deps.state.setSlot(app, slot, releaseId, 'starting');
        this.deps.state.setSlotLayout(app, slot, layout);
      });
    }
    for (const p of chosen) if (p.port !== null) await this.waitPortFree(app, slot, p);
    for (const start of starts) await this.deps.processes.start(start);
    if (!options.only) this.deps.state.setSlotState(app, slot, 'running');
    return layout;
  }

  /** Waits for every process's own health check; throws with what the failing one last saw and its output. */
  async healthGate(target: SlotTarget, abort?: GateAbort): Promise<number> {
    const { app, slot } = target;
    const effective = this.specOf(app, target.releaseId);
    const layout = this.layout(app, slot);
    const results = await Promise.allSettled(layout.map((p) => this.processGate(target, effective.spec.processes[p.process], p, abort?.signal)));
    // Cut short by an abort: the abort is why it ended, not what the checks saw when they stopped.
    if (abort?.signal.aborted) throw abort.error();
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) {
      const first = failures[0];
      if (failures.length === 1 || !(first instanceof SlipwayError)) throw first;
      const others = failures.slice(1).map((f) => `also: ${errorMessage(f).split('\n')[0]}`);
      throw new SlipwayError(first.code, `${first.message}\n${others.join('\n')}`, {
        status: first.status, ...(first.hint ? { hint: first.hint } : {}),
      });
    }
    return results.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value : 0), 0);
  }

  /** A short health check (a few tries) of every process, for a slot that should already be serving. */
  async answers(app: string, slot: Slot): Promise<boolean> {
    const releaseId = this.deps.state.slot(app, slot).releaseId;
    if (!releaseId) return false;
    const spec = this.specOf(app, releaseId).spec;
    const checks = await Promise.all(this.layout(app, slot).map(async (p) => {
      const health = spec.processes[p.process]?.health;
      if (p.port === null || !health || !isHttpHealth(health)) {
        const proc = await this.deps.processes.describe(p.pm2Name).catch(() => null);
        return proc?.status === 'online';
      }
      const result = await this.deps.health.waitHealthy(`http://127.0.0.1:${p.port}${health.path}`, {
        timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: 3, expectStatus: health.expectStatus,
      });
      return result.ok;
    }));
    return checks.every(Boolean);
  }

  /**
   * Every process's health as its spec defines it (HTTP on its port; online in PM2 for a worker),
   * with `retries` tries each unless given: what crash recovery and re-homing gate on.
   */
  async checkHealth(app: string, slot: Slot, retries?: number): Promise<{ ok: boolean; attempts: number; seen: string; url: string }> {
    const releaseId = this.deps.state.slot(app, slot).releaseId;
    if (!releaseId) return { ok: false, attempts: 0, seen: 'no release', url: '-' };
    const spec = this.specOf(app, releaseId).spec;
    let attempts = 0;
    for (const p of this.layout(app, slot)) {
      const health = spec.processes[p.process]?.health;
      if (p.port === null || !health || !isHttpHealth(health)) {
        const proc = await this.deps.processes.describe(p.pm2Name).catch(() => null);
        attempts++;
        if (proc?.status !== 'online') return { ok: false, attempts, seen: `${p.process}: ${proc ? `PM2 status ${proc.status}` : 'not in PM2'}`, url: p.pm2Name };
        continue;
      }
      const url = `http://127.0.0.1:${p.port}${health.path}`;
      const result = await this.deps.health.waitHealthy(url, {
        timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: retries ?? health.retries, expectStatus: health.expectStatus,
        ...(health.bodyContains ? { bodyContains: health.bodyContains } : {}),
      });
      attempts += result.attempts;
      if (!result.ok) {
        const seen = result.last?.status !== undefined ? `HTTP ${result.last.status}` : (result.last?.error ?? 'no answer');
        return { ok: false, attempts, seen: `${p.process}: ${seen}`, url };
      }
    }
    return { ok: true, attempts, seen: 'healthy', url: '-' };
  }

  /** Whether PM2 runs every process of the slot (SQLite may still say "running" after one died or was stopped by hand). */
  async isOnline(app: string, slot: Slot): Promise<boolean> {
    for (const p of this.layout(app, slot)) {
      const proc = await this.deps.processes.describe(p.pm2Name).catch(() => null);
      if (proc?.status !== 'online') return false;
    }
    return true;
  }

  /** PM2's restart count of each process of the slot, by PM2 name. */
  async restarts(app: string, slot: Slot): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const p of this.layout(app, slot)) counts[p.pm2Name] = (await this.deps.processes.describe(p.pm2Name))?.restarts ?? 0;
    return counts;
  }

  /** Stops every process of the slot, by its recorded layout (an older spec's processes too). */
  async stop(app: string, slot: Slot): Promise<void> {
    for (const p of this.layout(app, slot)) await this.deps.processes.delete(p.pm2Name);
  }

  /** Stops the slot's singleton workers; returns their process names (to start again on failure). */
  async stopSingletons(app: string, slot: Slot): Promise<string[]> {
    const singletons = this.layout(app, slot).filter((p) => p.singleton);
    for (const p of singletons) await this.deps.processes.delete(p.pm2Name);
    return singletons.map((p) => p.process);
  }

  /** Where to read why a slot's processes failed. */
  logHint(app: string, slot: Slot): string {
    const names = this.layout(app, slot).map((p) => p.pm2Name);
    return `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${names.length === 1 ? names[0] : `'/^${app}-${slot}/'`} --lines 50`;
  }

  private async waitPortFree(app: string, slot: Slot, p: SlotProcessRow): Promise<void> {
    const port = p.port!;
    await waitFor(async () => !(await this.portInUse(port)), {
      timeoutMs: this.deps.portWaitMs ?? 10_000,
      intervalMs: 100,
      onTimeout: () => new SlipwayError('port_in_use', `port ${port} of ${app}/${slot} (process ${p.process}) is held by a process Slipway did not start`, {
        hint: `find it with: ss -ltnp 'sport = :${port}' and stop it${this.deps.config.apps[app]!.slots ? `, or change apps.${app}.slots.${slot}.port` : ''}`,
        status: 409,
      }),
    });
  }

  /** What PM2 is asked to start for one process: paths resolved inside the release, argv and env built. */
  private async startSpec(target: SlotTarget, dir: string, effective: EffectiveSpec, p: SlotProcessRow, layout: SlotProcessRow[], appEnv: Record<string, string>) {
    const { app, slot, releaseId } = target;
    const proc = effective.spec.processes[p.process]!;
    const where = effective.source === 'legacy' ? `apps.${app}.start` : `deploy.spec.json processes/${p.process}`;
    const cwd = await insideRelease(dir, proc.cwd, `${where}/cwd`, releaseId, app, 'directory');
    const env = processEnv({ app, slot, releaseId, process: p.process, proc, layout, appEnv, path: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' });
    const vars = { ...portVariables(layout), ...(env.PORT ? { PORT: env.PORT } : {}) };
    const common = {
      name: p.pm2Name, cwd, env,
      // The legacy process keeps PM2's own kill timeout, as before specs.
      ...(effective.source === 'release' ? { killTimeoutMs: proc.killTimeoutMs } : {}),
      ...(proc.maxMemory ? { maxMemoryRestart: proc.maxMemory } : {}),
    };
    if (proc.script !== undefined) {
      const script = await insideRelease(dir, path.join(path.relative(dir, cwd) || '.', proc.script), `${where}/script`, releaseId, app, 'file');
      return { ...common, script, args: substitutePorts(proc.args, vars), nodeArgs: proc.nodeArgs, instances: proc.instances };
    }
    const argv = substitutePorts(proc.command!, vars);
    const program = await resolveProgram(argv[0]!, cwd, env.PATH!, `${where}/command/0`);
    return { ...common, script: program, args: argv.slice(1), interpreter: 'none' as const, instances: proc.instances };
  }

  /** One process's gate: HTTP on its own port, or stable in PM2 for a worker. Resolves to the attempts made. */
  private async processGate(target: SlotTarget, proc: ProcessSpec | undefined, p: SlotProcessRow, signal?: AbortSignal): Promise<number> {
    const { app, slot, releaseId } = target;
    const health = proc?.health;
    const label = `${app}/${slot}@${shortSha(releaseId)} process ${p.process}`;
    if (!health || !isHttpHealth(health) || p.port === null) {
      return this.waitStable(app, label, p, health && !isHttpHealth(health) ? health.stableMs : 1_000, signal);
    }
    const url = `http://127.0.0.1:${p.port}${health.path}`;
    const result = await this.deps.health.waitHealthy(url, {
      timeoutMs: health.timeoutMs, intervalMs: health.intervalMs, retries: health.retries,
      expectStatus: health.expectStatus, ...(health.bodyContains ? { bodyContains: health.bodyContains } : {}),
      ...(signal ? { signal } : {}),
    });
    if (result.ok) return result.attempts;
    if (signal?.aborted) return result.attempts;
    const last = result.last;
    const seen = last?.status !== undefined ? `HTTP ${last.status}${last.bodyStart ? ` ${JSON.stringify(last.bodyStart)}` : ''}` : (last?.error ?? 'no answer');
    throw await this.gateFailure(app, p, `${label} failed its health check ${url} after ${result.attempts} attempt(s): last saw ${seen} (expected ${health.expectStatus}${health.bodyContains ? ` with ${JSON.stringify(health.bodyContains)}` : ''})`);
  }

  /** A worker is healthy once PM2 keeps it online, without a restart, for `stableMs`. */
  private async waitStable(app: string, label: string, p: SlotProcessRow, stableMs: number, signal?: AbortSignal): Promise<number> {
    let attempts = 0;
    let seen = 'not checked';
    let baseline: number | null = null;
    let crashed = false;
    const stableSince = { at: 0 };
    try {
      await waitFor(async () => {
        // An abort ends the wait at the next check (healthGate reports the abort).
        if (signal?.aborted) return true;
        attempts++;
        const proc = await this.deps.processes.describe(p.pm2Name);
        if (!proc) { seen = 'not in PM2'; crashed = true; return true; }
        baseline ??= proc.restarts;
        if (proc.restarts > baseline) { seen = `restarted (restarts ${baseline} → ${proc.restarts})`; crashed = true; return true; }
        if (proc.status !== 'online' || (proc.online !== undefined && proc.instances !== undefined && proc.online < proc.instances)) {
          seen = `PM2 status ${proc.status}`;
          stableSince.at = 0;
          return false;
        }
        stableSince.at ||= Date.now();
        seen = `online for ${Date.now() - stableSince.at} ms`;
        return Date.now() - stableSince.at >= stableMs;
      }, {
        timeoutMs: stableMs + 15_000,
        intervalMs: Math.min(250, Math.max(20, Math.floor(stableMs / 4))),
        onTimeout: () => new Error('timeout'),
      });
    } catch {
      crashed = true;
    }
    if (crashed && !signal?.aborted) throw await this.gateFailure(app, p, `${label} did not stay up in PM2 for ${stableMs} ms: ${seen}`);
    return attempts;
  }

  /** Values of the app's env file, for masking app output the agent hands out; none when it cannot be read. */
  private async secretValues(app: string): Promise<string[]> {
    try {
      return Object.values(await readAppEnv(envFileOf(this.deps.config, app), app, []));
    } catch {
      return [];
    }
  }

  /**
   * The PM2 log files of each process of a slot (or the one named; deploy logs): a name the slot
   * does not run is refused, naming the ones it does.
   */
  async logSources(app: string, slot: Slot, process?: string): Promise<{ name: string; pm2Name: string; outLog: string | null; errLog: string | null }[]> {
    const layout = this.layout(app, slot).filter((p) => process === undefined || p.process === process);
    if (process !== undefined && layout.length === 0) {
      const names = this.layout(app, slot).map((p) => p.process);
      throw new SlipwayError('invalid_request', `${app}/${slot} runs no process "${process}"`, {
        hint: names.length ? `its processes: ${names.join(', ')}` : `${app}/${slot} runs nothing`, status: 404,
      });
    }
    return Promise.all(layout.map(async (p) => {
      const proc = await this.deps.processes.describe(p.pm2Name).catch(() => null);
      const outLog = proc?.outLog ?? null;
      return { name: p.process, pm2Name: p.pm2Name, outLog, errLog: proc?.errLog === outLog ? null : proc?.errLog ?? null };
    }));
  }

  /** Masks the values of the app's env file in a line of its output: they never leave the box. */
  async logMask(app: string): Promise<(line: string) => string> {
    const secrets = await this.secretValues(app);
    return (line) => maskSecrets(line, secrets);
  }

  /** The gate's error: what was seen, PM2's view and the last lines of the process's own output. */
  private async gateFailure(app: string, p: SlotProcessRow, what: string): Promise<SlipwayError> {
    const proc = await this.deps.processes.describe(p.pm2Name).catch(() => null);
    const procNote = proc ? `; PM2 reports ${proc.status}, ${proc.restarts} restart(s)` : '; not running in PM2';
    // stdout and stderr are separate files without timestamps: the end of each, labelled, half the
    // lines each unless one is empty.
    const read = (file: string | null | undefined) => (typeof file === 'string' ? tailFile(file, LOG_TAIL_LINES).catch(() => []) : Promise.resolve([]));
    const out = await read(proc?.outLog);
    const err = proc?.errLog === proc?.outLog ? [] : await read(proc?.errLog);
    const half = LOG_TAIL_LINES / 2;
    const outTake = err.length === 0 ? LOG_TAIL_LINES : Math.max(half, LOG_TAIL_LINES - err.length);
    const errTake = LOG_TAIL_LINES - Math.min(out.length, outTake);
    // The app may print values of its env file; they never reach an error, history or the CLI.
    const secrets = await this.secretValues(app);
    // PM2's date prefix (agent/logs/log-line.ts) is left out: the error says when it happened.
    const text = (lines: string[]) => parseLogLines(lines, 'out').map((entry) => entry.text);
    const tail = [...text(out.slice(-outTake)).map((l) => `out| ${l}`), ...text(err.slice(-errTake)).map((l) => `err| ${l}`)].map((l) => maskSecrets(l, secrets));
    const logBlock = tail.length > 0 ? `\nlast ${tail.length} line(s) of ${p.pm2Name}'s output:\n${tail.map((l) => `  ${l}`).join('\n')}` : '';
    return new SlipwayError('health_check_failed', `${what}${procNote}${logBlock}`, {
      hint: `read the app's log: PM2_HOME=${this.deps.config.pm2.home} pm2 logs ${p.pm2Name} --lines 50`,
      // The lines are in the message itself (not details), so deploy history keeps them and the CLI shows them once.
      status: 502,
    });
  }
}

/** A path of the release, resolved through symlinks, that must stay inside it. */
async function insideRelease(dir: string, relative: string, field: string, releaseId: string, app: string, kind: 'file' | 'directory'): Promise<string> {
  const wanted = path.resolve(dir, relative);
  let real: string;
  try {
    real = await fs.realpath(wanted);
  } catch {
    throw new SlipwayError('start_script_missing', `release ${shortSha(releaseId)} of ${app} has no ${path.relative(dir, wanted) || '.'} (${field})`, {
      hint: `check ${field}, and that the ${kind} is committed (or listed in the controller's "include")`,
      status: 409,
    });
  }
  if (real !== dir && !real.startsWith(dir + path.sep)) {
    throw new SlipwayError('start_script_invalid', `${field} of ${app} leaves the release dir (${relative} resolves to ${real})`, { hint: `fix ${field}`, status: 400 });
  }
  const st = await fs.stat(real);
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) {
    throw new SlipwayError('start_script_invalid', `${field} of ${app} is not a ${kind} (${relative})`, { hint: `fix ${field}`, status: 400 });
  }
  return real;
}

/** argv[0] of a command: an absolute path, a path relative to cwd ("./bin/x"), or a name looked up on PATH. */
export async function resolveProgram(program: string, cwd: string, searchPath: string, field: string): Promise<string> {
  const candidates = program.includes('/') ? [path.resolve(cwd, program)] : searchPath.split(':').filter((d) => path.isAbsolute(d)).map((d) => path.join(d, program));
  for (const candidate of candidates) {
    try {
      await fs.access(candidate, fsConstants.X_OK);
      const st = await fs.stat(candidate);
      if (st.isFile()) return path.normalize(candidate);
    } catch {
      // next candidate
    }
  }
  throw new SlipwayError('command_not_found', `${field}: ${JSON.stringify(program)} is not an executable ${program.includes('/') ? 'file' : `on PATH (${searchPath})`}`, {
    hint: 'install it on the host, or give its absolute path in deploy.spec.json',
    status: 409,
  });
}

export function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
