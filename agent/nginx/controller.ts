import { fsyncDir } from '../../lib/durable.js';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { httpGet } from '../health.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { outputTail, runCommand, type CommandResult } from '../../lib/exec.js';
import { isAppName, type Slot } from '../../contract/names.js';
import { persistLiveSlot, pointLiveAt, readLiveSlot, LIVE_LINK } from './slot-switch.js';

export interface NginxControllerOptions {
  /** How nginx is invoked, e.g. ['nginx'] or ['nginx', '-p', prefix, '-c', conf]. */
  command: string[];
  testArgs?: string[];
  reloadArgs?: string[];
  /** The master's pid file (the "pid" directive of nginx.conf). */
  pidFile: string;
  /** Directory included from nginx's http{} block as <includeDir>/*.conf. */
  includeDir: string;
  /** Deadline for each nginx command. */
  timeoutMs?: number;
  /** How long to wait for the new config's markers to be served after a reload. */
  proveTimeoutMs?: number;
  /** nginx's error log, quoted in errors when a reload is not applied. */
  errorLogPath?: string;
  /** Root of the per-app switch flags (agent/nginx/slot-switch.ts); must be searchable by nginx's workers. */
  switchDir: string;
}

export interface NginxProbe {
  /** A URL served by the new config, e.g. http://127.0.0.1:80/ */
  url: string;
  /** Host header that selects the app's server{} block. */
  hostHeader: string;
  /** Response headers the new config adds (e.g. X-Slipway-Generation); all must be seen. */
  expectHeaders: Record<string, string>;
}

export interface ApplyRequest {
  app: string;
  config: string;
  probe: NginxProbe;
}

export interface ApplyTimings {
  testMs: number;
  reloadMs: number;
  proveMs: number;
}

export interface FlipRequest {
  app: string;
  slot: Slot;
  /** Expected headers once the flag is seen: the slot's marker, its release, `x-slipway-switch: file`. */
  probe: NginxProbe;
}

export interface FlipTimings {
  /** From the flag's rename to the first answer through nginx with the new slot's markers. */
  proveMs: number;
}

const PROVE_INTERVAL_MS = 20;

/** nginx's own diagnosis: the [emerg]/[alert]/[crit] lines of `nginx -t` (its stderr tail otherwise). */
export function nginxDiagnosis(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trim()).filter(Boolean);
  const serious = lines.filter((line) => /\[(emerg|alert|crit)\]/.test(line));
  return (serious.length > 0 ? serious : lines.slice(-5)).join('\n') || '(nginx printed nothing)';
}

async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}


async function writeDurable(file: string, data: string | Buffer): Promise<void> {
  const handle = await open(file, 'w', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Temp file in the same directory, fsync, rename, fsync the directory. */
async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  // The temp name must not end in ".conf", or nginx's include glob could pick it up.
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeDurable(temp, data);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/** Worker processes of an nginx master, from /proc (empty where /proc is unavailable). */
async function workerPids(masterPid: number): Promise<number[]> {
  // The master's own list of children (Linux ≥ 3.5) is one read; scanning the stat file of every
  // process took 40–140 ms on a busy 2-core box, between `nginx -t` and the reload of every switch.
  let entries: string[] | null = await readFile(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8')
    .then((text) => text.split(/\s+/).filter(Boolean), () => null);
  try {
    entries ??= await readdir('/proc');
  } catch {
    return [];
  }
  const workers: number[] = [];
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== masterPid) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('worker process')) workers.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return workers;
}

/** nginx retitles a worker "worker process is shutting down" right before closing its listeners. */
async function acceptingWorkers(masterPid: number): Promise<number[]> {
  const accepting: number[] = [];
  for (const pid of await workerPids(masterPid)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('worker process') && !cmdline.includes('shutting down')) accepting.push(pid);
  }
  return accepting;
}

/**
 * Switches an app's nginx include safely: test in place, reload, and prove the reload took effect
 * by reading the new config's marker headers through nginx; on any failure the previous file is
 * put back byte for byte. Applies are serialised because `nginx -t` tests the whole config: a
 * candidate of another app being tested at the same moment would make ours fail.
 */
export class NginxController {
  private readonly command: string[];
  private readonly testArgs: string[];
  private readonly reloadArgs: string[];
  private readonly pidFile: string;
  private readonly includeDir: string;
  private readonly timeoutMs: number;
  private readonly proveTimeoutMs: number;
  private readonly errorLogPath: string | undefined;
  private readonly switchDir: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: NginxControllerOptions) {
    if (options.command.length === 0) throw new Error('NginxController needs a command');
    this.command = [...options.command];
    this.testArgs = [...(options.testArgs ?? ['-t'])];
    this.reloadArgs = [...(options.reloadArgs ?? ['-s', 'reload'])];
    this.pidFile = options.pidFile;
    this.includeDir = options.includeDir;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.proveTimeoutMs = options.proveTimeoutMs ?? 5_000;
    this.errorLogPath = options.errorLogPath;
    this.switchDir = options.switchDir;
  }

  /** The app's switch flag directory, rendered into its include. */
  switchDirOf(app: string): string {
    return path.join(this.switchDir, this.checkedApp(app));
  }

  /** The slot the app's switch flag points at, or null before there is one. */
  liveFlag(app: string): Promise<Slot | null> {
    return readLiveSlot(this.switchDirOf(app));
  }

  /** Creates the app's flag pointing at `slot` if it has none yet (nothing moves if one exists). */
  async ensureFlag(app: string, slot: Slot): Promise<Slot> {
    const dir = this.switchDirOf(app);
    const current = await readLiveSlot(dir);
    if (current !== null) return current;
    await pointLiveAt(dir, slot);
    await persistLiveSlot(dir);
    return slot;
  }

  /**
   * Moves the app's traffic to `slot` without a reload: flips the flag, then proves through nginx
   * that the slot's markers are served; if they are not, the flag goes back and nothing moved.
   */
  flip(request: FlipRequest): Promise<FlipTimings> {
    const run = this.queue.then(() => this.flipNow(request));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The live include of an app: <includeDir>/<app>.conf */
  configPath(app: string): string {
    return path.join(this.includeDir, `${this.checkedApp(app)}.conf`);
  }

  /** The rendered include nginx currently has on disk for `app`, or null before its first switch. */
  async currentConfig(app: string): Promise<string | null> {
    const bytes = await readOrNull(this.configPath(app));
    return bytes === null ? null : bytes.toString('utf8');
  }

  /**
   * Confirms the master named by the pid file is alive and is nginx. A stale pid file (dead pid,
   * or a pid since reused by another program) counts as not running.
   */
  async checkMasterRunning(): Promise<{ pid: number }> {
    const notRunning = (reason: string) => new SlipwayError('nginx_not_running', `nginx is not running: ${reason}`, {
      status: 503,
      hint: `start nginx (e.g. "systemctl start nginx") and check that nginx.pidFile in the agent config matches the "pid" directive of nginx.conf; nothing was changed`,
    });
    const text = await readOrNull(this.pidFile);
    if (text === null) throw notRunning(`pid file ${this.pidFile} does not exist`);
    const trimmed = text.toString('utf8').trim();
    const pid = /^[0-9]{1,10}$/.test(trimmed) ? Number(trimmed) : NaN;
    if (!Number.isSafeInteger(pid) || pid <= 1) {
      throw notRunning(`pid file ${this.pidFile} does not hold a pid (it holds ${JSON.stringify(trimmed.slice(0, 40))})`);
    }
    try {
      process.kill(pid, 0);
    } catch (error) {
      // EPERM means the process exists but belongs to someone else: still worth the cmdline check.
      if ((error as NodeJS.ErrnoException).code !== 'EPERM') {
        throw notRunning(`pid ${pid} from ${this.pidFile} is not running (stale pid file)`);
      }
    }
    let cmdline: Buffer | null;
    try {
      cmdline = await readOrNull(`/proc/${pid}/cmdline`);
    } catch {
      cmdline = null;
    }
    const procMounted = await readOrNull('/proc/self/cmdline').then((b) => b !== null, () => false);
    if (procMounted) {
      if (cmdline === null) throw notRunning(`pid ${pid} from ${this.pidFile} is not running (stale pid file)`);
      const described = cmdline.toString('utf8').replace(/\0+/g, ' ').trim();
      // A zombie has an empty cmdline: it has exited, only not been reaped yet.
      if (described === '') throw notRunning(`pid ${pid} from ${this.pidFile} has exited (stale pid file)`);
      if (!described.includes('nginx')) {
        throw notRunning(`pid ${pid} from ${this.pidFile} is not nginx but ${JSON.stringify(described.slice(0, 80))} (stale pid file)`);
      }
    }
    return { pid };
  }

  /** Writes, tests, reloads and proves an app's include; see the class comment. */
  apply(request: ApplyRequest): Promise<ApplyTimings> {
    const run = this.queue.then(() => this.applyNow(request));
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

    const next = `${live}.next`;
    const lastGood = `${live}.last-good`;
    const previous = await readOrNull(live);
    try {
      await writeDurable(next, config);
      // last-good is the last config proven live; a crash from here on is recovered from it.
      if (previous !== null && !previous.equals((await readOrNull(lastGood)) ?? Buffer.alloc(0))) {
        await writeAtomic(lastGood, previous);
      }
    } catch (error) {
      await rm(next, { force: true });
      throw new SlipwayError('nginx_write_failed', `could not stage nginx config for app ${app}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: `check free space and permissions of ${this.includeDir}; the live config was not touched`,
      });
    }

    // `nginx -t` tests the whole config tree, so the candidate has to be in place to be tested.
    await rename(next, live);
    await fsyncDir(this.includeDir);
    let restored = false;
    const restore = async () => {
      restored = true;
      if (previous === null) {
        await rm(live, { force: true });
        await fsyncDir(this.includeDir);
      } else {
        await writeAtomic(live, previous);
      }
    };

    let step: 'test' | 'reload' | 'prove' = 'test';
    try {
      let started = performance.now();
      const test = await this.nginx(this.testArgs);
      const testMs = performance.now() - started;
      if (test.exitCode !== 0) {
        await restore();
        throw this.testFailure(app, live, test);
      }

      step = 'reload';
      const logOffset = await this.errorLogSize();
      const oldWorkers = await acceptingWorkers(masterPid);
      started = performance.now();
      const reload = await this.nginx(this.reloadArgs);
      const reloadMs = performance.now() - started;
      if (reload.exitCode !== 0) {
        await restore();
        throw new SlipwayError('nginx_reload_failed',
          `nginx reload failed for app ${app}: ${nginxDiagnosis(reload.stderr)}`, {
            status: 502,
            hint: 'the previous config file was restored; check that the nginx master is running and the agent may signal it',
            details: this.commandDetails(reload),
          });
      }

      step = 'prove';
      started = performance.now();
      const proof = await this.prove(probe, masterPid, oldWorkers);
      const proveMs = performance.now() - started;
      if (!proof.ok) {
        // Read nginx's reason before the second reload buries it.
        const logged = await this.errorLogSince(logOffset);
        await restore();
        const again = await this.nginx(this.reloadArgs).catch((error: unknown) => errorMessage(error));
        const details = [
          `expected ${Object.entries(probe.expectHeaders).map(([k, v]) => `${k}: ${v}`).join(', ')} from ${probe.url} (Host: ${probe.hostHeader})`,
          `last observed: ${proof.observed}`,
          ...logged,
          typeof again === 'string' || again.exitCode !== 0
            ? `reloading the restored config failed too: ${typeof again === 'string' ? again : nginxDiagnosis(again.stderr)}`
            : 'the previous config was restored and nginx reloaded again',
        ];
        throw new SlipwayError('nginx_reload_not_applied',
          `nginx did not serve the new config for app ${app} within ${this.proveTimeoutMs} ms after reload`, {
            status: 502,
            details,
            hint: this.errorLogPath
              ? `nginx keeps its old config when a reload fails (e.g. a port it cannot bind): see the lines from ${this.errorLogPath} above`
              : 'nginx keeps its old config when a reload fails (e.g. a port it cannot bind): check nginx\'s error.log',
          });
      }
      await writeAtomic(lastGood, config);
      return { testMs: Math.round(testMs), reloadMs: Math.round(reloadMs), proveMs: Math.round(proveMs) };
    } catch (error) {
      // Unexpected failures (a command timing out, the binary vanishing) must not leave an
      // unproven file live either; once a reload may have been sent, send one for the old file.
      if (!restored) {
        await restore();
        if (step !== 'test') await this.nginx(this.reloadArgs).catch(() => undefined);
      }
      throw error;
    }
  }

  private async flipNow({ app, slot, probe }: FlipRequest): Promise<FlipTimings> {
    const dir = this.switchDirOf(app);
    const before = await readLiveSlot(dir);
    const started = performance.now();
    try {
      await pointLiveAt(dir, slot);
    } catch (error) {
      throw new SlipwayError('nginx_switch_failed', `could not move the switch flag of app ${app} to ${slot}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: `check free space and permissions of ${dir}; traffic did not move`,
      });
    }
    const proof = await this.probeServes(probe, performance.now() + this.proveTimeoutMs);
    const proveMs = performance.now() - started;
    if (!proof.ok) {
      if (before !== null) await pointLiveAt(dir, before);
      else await rm(path.join(dir, LIVE_LINK), { force: true });
      await persistLiveSlot(dir);
      const unseen = /x-slipway-switch: default/.test(proof.observed);
      throw new SlipwayError('nginx_switch_not_applied',
        `nginx did not serve slot ${slot} of app ${app} within ${this.proveTimeoutMs} ms after its switch flag moved`, {
          status: 502,
          details: [
            `expected ${Object.entries(probe.expectHeaders).map(([k, v]) => `${k}: ${v}`).join(', ')} from ${probe.url} (Host: ${probe.hostHeader})`,
            `last observed: ${proof.observed}`,
            before === null ? 'the flag was removed again' : `the flag points at ${before} again`,
          ],
          hint: unseen
            ? `nginx's workers cannot see ${dir}/${LIVE_LINK}/${slot}: every directory on that path must be searchable (o+x) by nginx's worker user`
            : `the app's include must route by the switch flags (see nginx/app.conf.njk) and nginx must be running; ${app}'s traffic did not move`,
        });
    }
    await persistLiveSlot(dir);
    return { proveMs: Math.round(proveMs * 10) / 10 };
  }

  private async nginx(args: string[]): Promise<CommandResult> {
    const argv = [...this.command, ...args];
    const result = await runCommand(argv, { timeoutMs: this.timeoutMs });
    if (result.timedOut) {
      throw new SlipwayError('nginx_command_timeout', `${argv.join(' ')} did not finish within ${this.timeoutMs} ms`, {
        status: 504,
        hint: 'the previous config file was restored; check the machine\'s load and nginx.timeoutMs in the agent config',
      });
    }
    return result;
  }

  private testFailure(app: string, live: string, test: CommandResult): SlipwayError {
    const diagnosis = nginxDiagnosis(test.stderr);
    const ours = diagnosis.includes(live);
    return new SlipwayError('nginx_config_invalid', `nginx -t rejected the config for app ${app}: ${diagnosis}`, {
      status: 400,
      details: this.commandDetails(test),
      hint: ours
        ? `the rendered config was rejected; nothing was reloaded and ${live} is unchanged. Fix the app's nginx values or template`
        : `the error is in a file Slipway did not write (see the path above); fix it first. Nothing was reloaded and ${live} is unchanged`,
    });
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
  private async prove(probe: NginxProbe, masterPid: number, oldWorkers: number[]): Promise<{ ok: true } | { ok: false; observed: string }> {
    const deadline = performance.now() + this.proveTimeoutMs;
    const served = await this.probeServes(probe, deadline);
    if (!served.ok) return served;
    for (;;) {
      const accepting = await acceptingWorkers(masterPid);
      const stale = accepting.filter((pid) => oldWorkers.includes(pid));
      if (stale.length === 0 && accepting.length <= Math.max(1, oldWorkers.length)) return { ok: true };
      const observed = `the new config answers, but older workers still accept connections (accepting: ${accepting.join(', ')}; before the reload: ${oldWorkers.join(', ')})`;
      if (performance.now() + PROVE_INTERVAL_MS > deadline) return { ok: false, observed };
      await delay(PROVE_INTERVAL_MS);
    }
  }

  /** Polls the probe URL on fresh connections until every expected header value is served. */
  private async probeServes(probe: NginxProbe, deadline: number): Promise<{ ok: true } | { ok: false; observed: string }> {
    const wanted = Object.entries(probe.expectHeaders).map(([name, value]) => [name.toLowerCase(), value] as const);
    let observed = 'no response';
    for (;;) {
      const remaining = deadline - performance.now();
      try {
        const response = await httpGet(probe.url, {
          timeoutMs: Math.max(50, Math.min(1_000, remaining)),
          headers: { host: probe.hostHeader },
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

  private async errorLogSize(): Promise<number> {
    if (!this.errorLogPath) return 0;
    return stat(this.errorLogPath).then((info) => info.size, () => 0);
  }

  /** What nginx logged since `offset`: its [emerg]/[alert]/[crit] lines, or the last few lines. */
  private async errorLogSince(offset: number): Promise<string[]> {
    if (!this.errorLogPath) return [];
    try {
      const bytes = await readFile(this.errorLogPath);
      // A rotated (shorter) log starts over.
      const start = bytes.length >= offset ? offset : 0;
      const text = bytes.subarray(Math.max(start, bytes.length - 64 * 1024)).toString('utf8');
      const lines = text.split('\n').map((line) => line.trim()).filter(Boolean);
      const serious = lines.filter((line) => /\[(emerg|alert|crit)\]/.test(line));
      const shown = serious.length > 0 ? serious.slice(-5) : lines.slice(-8);
      return shown.length > 0 ? [`${this.errorLogPath}:`, ...shown] : [`${this.errorLogPath}: nothing logged since the reload`];
    } catch (error) {
      return [`could not read ${this.errorLogPath}: ${errorMessage(error)}`];
    }
  }
}
