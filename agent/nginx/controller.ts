import { rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { httpGet } from '../health.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { outputTail, runCommand, type CommandResult } from '../../lib/exec.js';
import { isAppName, type Slot } from '../../contract/names.js';
import { flagTarget, persistLiveSlot, pointLiveAt, pruneFlagDirs, readLiveFlag, readLiveSlot, restoreLiveFlag, LIVE_LINK, type LiveFlag } from './slot-switch.js';
import { NGINX_DEFAULTS, type NginxSettings } from './settings.js';
import { readOrNull } from '../../lib/durable.js';
import { IncludeCandidate } from './include-candidate.js';
import { acceptingWorkers, checkMasterRunning } from './master.js';
import { errorLogSince, errorLogSize } from './error-log.js';
import { nginxDiagnosis, notAppliedError, switchNotAppliedError, testFailureHint } from './diagnosis.js';

/**
 * The agent passes its whole `nginx` config section; tests may leave out what has a default.
 * The templates (templateDir) are the renderer's business, not the controller's.
 */
export type NginxControllerOptions =
  Pick<NginxSettings, 'command' | 'pidFile' | 'includeDir' | 'switchDir'> & Partial<Omit<NginxSettings, 'templateDir'>>;

type ControllerSettings = Readonly<Omit<NginxSettings, 'templateDir'>>;

export interface NginxProbe {
  /** A URL served by the new config, e.g. http://127.0.0.1:80/ */
  url: string;
  /** Host header that selects the app's server{} block. */
  hostHeader: string;
  /** Response headers the new config adds (e.g. X-Slipway-Generation); all must be seen. */
  expectHeaders: Record<string, string>;
  /** More request headers: the agent's probe secret, without which nginx sends no markers. */
  headers?: Record<string, string>;
}

export interface ApplyRequest {
  app: string;
  config: string;
  /**
   * Null when the include has no server block (an app without routes): the reload is then proven
   * only by the master replacing its workers, as nothing of the app can be read through nginx.
   */
  probe: NginxProbe | null;
}

export interface ApplyTimings {
  testMs: number;
  reloadMs: number;
  proveMs: number;
  /** "markers": read through nginx; "workers": no probe, the master replaced its workers. */
  provenBy: 'markers' | 'workers';
}

export interface FlipRequest {
  app: string;
  slot: Slot;
  /** The release the slot runs: nginx names it (X-Slipway-Release) from the flag, not the include. */
  releaseId: string | null;
  /**
   * Expected headers once the flag is seen: the slot's marker, its release, `x-slipway-switch: file`.
   * Null when the include has no server block: the flag moves unproven, as nothing routes by it.
   */
  probe: NginxProbe | null;
}

export interface FlipTimings {
  /** From the flag's rename to the first answer through nginx with the new slot's markers; null without a probe. */
  proveMs: number | null;
}

const PROVE_INTERVAL_MS = 20;

type Proof = { ok: true } | { ok: false; observed: string };

/** What a reload changes and the proof compares against: the error log's end and the workers serving before it. */
interface BeforeReload { logOffset: number; workers: number[] }

/** Runs `fn` and returns its value with the milliseconds it took. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
}

function describeExpected(probe: NginxProbe | null): string {
  if (probe === null) return 'expected the master to replace its workers (the include has no server block to probe)';
  return `expected ${Object.entries(probe.expectHeaders).map(([k, v]) => `${k}: ${v}`).join(', ')} from ${probe.url} (Host: ${probe.hostHeader})`;
}

/**
 * Switches an app's nginx include safely: test in place, reload, and prove the reload took effect
 * by reading the new config's marker headers through nginx; on any failure the previous file is
 * put back byte for byte. Applies are serialised because `nginx -t` tests the whole config: a
 * candidate of another app being tested at the same moment would make ours fail.
 */
export class NginxController {
  private readonly settings: ControllerSettings;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: NginxControllerOptions) {
    if (options.command.length === 0) throw new Error('NginxController needs a command');
    // A field given as undefined takes its default, as one left out does.
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as NginxControllerOptions;
    this.settings = { ...NGINX_DEFAULTS, ...given };
  }

  /** The app's switch flag directory, rendered into its include. */
  switchDirOf(app: string): string {
    return path.join(this.settings.switchDir, this.checkedApp(app));
  }

  /** The slot the app's switch flag points at, or null before there is one. */
  liveFlag(app: string): Promise<Slot | null> {
    return readLiveSlot(this.switchDirOf(app));
  }

  /** The slot and the release the app's switch flag names, or null before there is one. */
  liveMarker(app: string): Promise<LiveFlag | null> {
    return readLiveFlag(this.switchDirOf(app));
  }

  /**
   * Creates the app's flag pointing at `slot` (running releases[slot]) if it has none yet; an
   * existing flag keeps its slot (nothing moves) but is relabelled when it names another release
   * than the one its slot runs (`releases`, from SQLite): nginx reads the release from the flag.
   * Returns the slot the flag points at.
   */
  async ensureFlag(app: string, slot: Slot, releases?: Record<Slot, string | null>): Promise<Slot> {
    const dir = this.switchDirOf(app);
    const current = await readLiveFlag(dir);
    if (current === null) {
      await pointLiveAt(dir, slot, releases?.[slot] ?? null);
      await persistLiveSlot(dir);
      return slot;
    }
    const wanted = releases?.[current.slot];
    if (wanted !== undefined && flagTarget(current.slot, wanted) !== current.target) {
      // Same slot, so traffic does not move: only the name nginx reads for its release changes.
      await pointLiveAt(dir, current.slot, wanted);
      await persistLiveSlot(dir);
      await pruneFlagDirs(dir, current);
    }
    return current.slot;
  }

  /**
   * Moves the app's traffic to `slot` without a reload: flips the flag, then proves through nginx
   * that the slot's markers are served; if they are not, the flag goes back and nothing moved.
   */
  flip(request: FlipRequest): Promise<FlipTimings> {
    return this.serialised(() => this.flipNow(request));
  }

  /** The live include of an app: <includeDir>/<app>.conf */
  configPath(app: string): string {
    return path.join(this.settings.includeDir, `${this.checkedApp(app)}.conf`);
  }

  /** The rendered include nginx currently has on disk for `app`, or null before its first switch. */
  async currentConfig(app: string): Promise<string | null> {
    const bytes = await readOrNull(this.configPath(app));
    return bytes === null ? null : bytes.toString('utf8');
  }

  /** Confirms the master named by the pid file is alive and is nginx (see agent/nginx/master.ts). */
  checkMasterRunning(): Promise<{ pid: number }> {
    return checkMasterRunning(this.settings.pidFile);
  }

  /** Writes, tests, reloads and proves an app's include; see the class comment. */
  apply(request: ApplyRequest): Promise<ApplyTimings> {
    return this.serialised(() => this.applyNow(request));
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkedApp(app: string): string {
    if (!isAppName(app)) {
      throw new SlipwayError('invalid_nginx_value', `app name ${JSON.stringify(app)} cannot name an nginx include`, { status: 400 });
    }
    return app;
  }

  private async applyNow({ app, config, probe }: ApplyRequest): Promise<ApplyTimings> {
    const live = this.configPath(app);
    if (typeof config !== 'string' || config.length === 0) {
      throw new SlipwayError('invalid_nginx_value', `empty nginx config for app ${app}`, { status: 400 });
    }
    const { pid: masterPid } = await this.checkMasterRunning();
    const candidate = await IncludeCandidate.putInPlace(live, config, app);
    let reloadSent = false;
    try {
      const testMs = await this.testCandidate(app, candidate);
      const before: BeforeReload = { logOffset: await errorLogSize(this.settings.errorLogPath), workers: await acceptingWorkers(masterPid) };
      reloadSent = true;
      const reloadMs = await this.reloadCandidate(app, candidate);
      const proveMs = await this.proveCandidate(app, candidate, probe, masterPid, before);
      await candidate.keep();
      return { testMs: Math.round(testMs), reloadMs: Math.round(reloadMs), proveMs: Math.round(proveMs), provenBy: probe === null ? 'workers' : 'markers' };
    } catch (error) {
      // Unexpected failures (a command timing out, the binary vanishing) must not leave an
      // unproven file live either; once a reload may have been sent, send one for the old file.
      if (!candidate.restored) {
        await candidate.restore();
        if (reloadSent) await this.nginx(this.settings.reloadArgs).catch(() => undefined);
      }
      throw error;
    }
  }

  /** `nginx -t` with the candidate in place; when nginx refuses it, the previous file is put back. */
  private async testCandidate(app: string, candidate: IncludeCandidate): Promise<number> {
    const [test, testMs] = await timed(() => this.nginx(this.settings.testArgs));
    if (test.exitCode !== 0) {
      await candidate.restore();
      const diagnosis = nginxDiagnosis(test.stderr);
      throw new SlipwayError('nginx_config_invalid', `nginx -t rejected the config for app ${app}: ${diagnosis}`, {
        status: 400,
        details: this.commandDetails(test),
        hint: testFailureHint(app, diagnosis, candidate.path),
      });
    }
    return testMs;
  }

  /** Signals the reload; a refused signal (no master to signal) puts the previous file back. */
  private async reloadCandidate(app: string, candidate: IncludeCandidate): Promise<number> {
    const [reload, reloadMs] = await timed(() => this.nginx(this.settings.reloadArgs));
    if (reload.exitCode !== 0) {
      await candidate.restore();
      throw new SlipwayError('nginx_reload_failed',
        `nginx reload failed for app ${app}: ${nginxDiagnosis(reload.stderr)}`, {
          status: 502,
          hint: 'the previous config file was restored; check that the nginx master is running and the agent may signal it',
          details: this.commandDetails(reload),
        });
    }
    return reloadMs;
  }

  /**
   * Proves through nginx that the reload was applied. When it was not, nginx kept its old config:
   * its reason is read from the error log, the previous file is put back and reloaded, and the
   * error quotes nginx.
   */
  private async proveCandidate(app: string, candidate: IncludeCandidate, probe: NginxProbe | null, masterPid: number, before: BeforeReload): Promise<number> {
    const [proof, proveMs] = await timed(() => this.prove(probe, masterPid, before.workers));
    if (proof.ok) return proveMs;
    // Read nginx's reason before the second reload buries it.
    const log = await errorLogSince(this.settings.errorLogPath, before.logOffset);
    await candidate.restore();
    const again = await this.nginx(this.settings.reloadArgs).catch((error: unknown) => errorMessage(error));
    const { message, hint, details } = notAppliedError({
      app,
      proveTimeoutMs: this.settings.proveTimeoutMs,
      log,
      expected: describeExpected(probe),
      observed: proof.observed,
      reloadAgainFailure: typeof again === 'string' ? again : again.exitCode !== 0 ? nginxDiagnosis(again.stderr) : null,
    });
    throw new SlipwayError('nginx_reload_not_applied', message, { status: 502, details, hint });
  }

  private async flipNow({ app, slot, releaseId, probe }: FlipRequest): Promise<FlipTimings> {
    const dir = this.switchDirOf(app);
    const before = await readLiveFlag(dir);
    const started = performance.now();
    try {
      await pointLiveAt(dir, slot, releaseId);
    } catch (error) {
      throw new SlipwayError('nginx_switch_failed', `could not move the switch flag of app ${app} to ${slot}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: `check free space and permissions of ${dir}; traffic did not move`,
      });
    }
    if (probe === null) {
      await persistLiveSlot(dir);
      await pruneFlagDirs(dir, before);
      return { proveMs: null };
    }
    const proof = await this.probeServes(probe, performance.now() + this.settings.proveTimeoutMs);
    const proveMs = performance.now() - started;
    if (!proof.ok) {
      if (before !== null) await restoreLiveFlag(dir, before);
      else await rm(path.join(dir, LIVE_LINK), { force: true });
      await persistLiveSlot(dir);
      const { message, hint, details } = switchNotAppliedError({
        app, slot, dir, before: before?.slot ?? null, proveTimeoutMs: this.settings.proveTimeoutMs, expected: describeExpected(probe), observed: proof.observed,
      });
      throw new SlipwayError('nginx_switch_not_applied', message, { status: 502, details, hint });
    }
    await persistLiveSlot(dir);
    // The flag live before stays (a request may have resolved the link an instant before the flip).
    await pruneFlagDirs(dir, before);
    return { proveMs: Math.round(proveMs * 10) / 10 };
  }

  private async nginx(args: readonly string[]): Promise<CommandResult> {
    const { command, timeoutMs } = this.settings;
    const argv = [...command, ...args];
    const result = await runCommand(argv, { timeoutMs });
    if (result.timedOut) {
      throw new SlipwayError('nginx_command_timeout', `${argv.join(' ')} did not finish within ${timeoutMs} ms`, {
        status: 504,
        hint: 'the previous config file was restored; check the machine\'s load and nginx.timeoutMs in the agent config',
      });
    }
    return result;
  }

  private commandDetails(result: CommandResult): string[] {
    return [`command: ${result.argv.join(' ')} (exit ${result.exitCode ?? result.signal})`, ...outputTail(result.stderr, 10).split('\n').filter(Boolean)];
  }

  /**
   * Polls the probe URL on fresh connections until every expected header value is served, then
   * waits until no worker of an older config accepts connections any more: the master starts the
   * new workers and only ~100 ms later tells the old ones to quit, and until then a connection
   * can land on either generation. Besides the workers seen before the reload, a generation
   * spawned by someone else's reload while ours was pending would be just as stale: so the
   * number of accepting workers must also drop back to what it was before.
   */
  private async prove(probe: NginxProbe | null, masterPid: number, oldWorkers: number[]): Promise<Proof> {
    const deadline = performance.now() + this.settings.proveTimeoutMs;
    // Without a probe, old workers that stop accepting are the only sign the reload was applied.
    const served = probe === null ? { ok: true as const } : await this.probeServes(probe, deadline);
    if (!served.ok) return served;
    for (;;) {
      const accepting = await acceptingWorkers(masterPid);
      const stale = accepting.filter((pid) => oldWorkers.includes(pid));
      if (stale.length === 0 && accepting.length <= Math.max(1, oldWorkers.length)) return { ok: true };
      const observed = `${probe === null ? 'no probe (no server block)' : 'the new config answers'}, but older workers still accept connections (accepting: ${accepting.join(', ')}; before the reload: ${oldWorkers.join(', ')})`;
      if (performance.now() + PROVE_INTERVAL_MS > deadline) return { ok: false, observed };
      await delay(PROVE_INTERVAL_MS);
    }
  }

  /** Polls the probe URL on fresh connections until every expected header value is served. */
  private async probeServes(probe: NginxProbe, deadline: number): Promise<Proof> {
    const wanted = Object.entries(probe.expectHeaders).map(([name, value]) => [name.toLowerCase(), value] as const);
    let observed = 'no response';
    for (;;) {
      const remaining = deadline - performance.now();
      try {
        const response = await httpGet(probe.url, {
          timeoutMs: Math.max(50, Math.min(1_000, remaining)),
          headers: { ...probe.headers, host: probe.hostHeader },
          maxBodyBytes: 0,
        });
        const mismatched = wanted.filter(([name, value]) => response.headers[name] !== value);
        if (mismatched.length === 0) return { ok: true };
        observed = `status ${response.status}, ${mismatched.map(([name]) => `${name}: ${response.headers[name] ?? '(absent)'}`).join(', ')}`;
      } catch (error) {
        observed = errorMessage(error);
      }
      if (performance.now() + PROVE_INTERVAL_MS > deadline) return { ok: false, observed };
      await delay(PROVE_INTERVAL_MS);
    }
  }
}
