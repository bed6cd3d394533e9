import { readlink, realpath, stat } from 'node:fs/promises';
import { PM2_LOG_DATE_FORMAT } from './logs/log-line.js';
import { createRequire } from 'node:module';
import path from 'node:path';
import { SlipwayError, errorMessage } from '../contract/errors.js';
import { checkDaemonProcess, pm2DaemonDown, probeDaemon, type DaemonHealth } from './pm2-daemon.js';

// Every PM2 quirk Slipway knows about lives in this file; nothing else imports pm2.
//
// - `import pm2 from 'pm2'` builds a default client at load time, and that client creates
//   ~/.pm2/{logs,pids,modules} even if another PM2_HOME is used afterwards. So only the API class
//   (pm2/lib/API.js) is loaded, after setting PM2_PROGRAMMATIC as pm2's index.js would (it
//   silences PM2's console output and its process.exit() paths).
// - PM2 keeps its paths in a module-level object that every client instance overwrites: one
//   process can talk to one PM2_HOME at a time (enforced below).
// - The daemon is spawned with the caller's environment, and PM2_HOME from that environment
//   wins over the pm2_home option: a different PM2_HOME in the agent's env is refused.
// - `filter_env: true` is a no-op in PM2 7 (it tests `filter_env.length > 0`). The array form
//   drops every variable whose name contains one of its strings, and every name contains "".
// - `start` of a name that already exists restarts the old process with its old env, and a
//   different script under the same name gives two processes with one name: refused here, the
//   caller deletes first.
// - A script path containing a space is run through `bash -c`; a script that does not exist is
//   looked up on $PATH. Both are refused before PM2 sees them.
// - Names are also ids ("3"), "all", regexes ("/x/") and config files ("x.json"): only plain
//   names are accepted.
// - Callbacks return arrays of processes (or arrays of errors); `describe` crashes the caller
//   on an RPC error, so list() is used and filtered here instead.
// - killDaemon leaves process.env.PM2_STATUS = 'stopping', which makes later calls misbehave;
//   start sets process.env.PWD and PM2_JSON_PROCESSING. All are put back.
// - Apps still see PM2's own bookkeeping as env (name, pm_id, pm_cwd, PM2_HOME, ...), and the
//   daemon itself keeps the agent's full environment (it is spawned with it).
// - When the daemon dies (SIGKILL), its apps live on, and the client does not fail: each call
//   waits out its timeout, and the client keeps reconnecting, so a call sent while the daemon was
//   down is delivered to the next daemon that comes up (a start would run then). So the daemon is
//   checked (pm2-daemon.ts) before every call and while one waits, a dead daemon fails the call at
//   once (pm2_daemon_down), and restartDaemon() drops the old client before making a new one.
// - Cluster mode (instances > 1) gives N processes under one name: start expects N, describe
//   folds them into one (status online only when every instance is). A non-Node command runs
//   with `interpreter: 'none'` (PM2 would otherwise run the file with node); its script is the
//   resolved absolute path of argv[0].
// - With merge_logs, every instance of a name writes one out and one err file; their paths are in
//   pm2_env.pm_out_log_path / pm_err_log_path (read for a failed health gate's log tail).

const NAME_PATTERN = /^[a-z][a-z0-9-]{0,79}$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface Pm2StartSpec {
  name: string;
  /** Absolute path of the entry script. */
  script: string;
  /** Absolute, fully resolved release dir: never a symlink (PM2 resolves it once, at start). */
  cwd: string;
  args?: string[];
  /** The app's complete environment; only PATH is added (from the agent) when absent. */
  env: Record<string, string>;
  nodeArgs?: string[];
  /** 'none': run `script` itself (a non-Node program) instead of with Node. */
  interpreter?: 'none';
  /** More than one: PM2 cluster mode for a Node script, N forks under the name for a command. Default 1. */
  instances?: number;
  /** How long PM2 waits after SIGINT before SIGKILL on stop/delete. */
  killTimeoutMs?: number;
  /** PM2 max_memory_restart, e.g. "300M". */
  maxMemoryRestart?: string;
}

export interface Pm2Process {
  name: string;
  /** null when the process is not running. */
  pid: number | null;
  /** PM2's status: online, launching, stopping, stopped, errored, ... ("online" is not health). */
  status: string;
  pmCwd: string;
  restarts: number;
  uptimeMs: number;
  /** Instances under the name (cluster mode) and how many of them are online. */
  instances: number;
  online: number;
  /** PM2's log files of the process (merged over instances), when it reports them. */
  outLog: string | null;
  errLog: string | null;
}

export interface Pm2ConnectOptions {
  pm2Home: string;
  callTimeoutMs?: number;
}

/** How often a waiting call checks that the daemon still runs. */
const DAEMON_CHECK_INTERVAL_MS = 250;
/** Calls that need a live daemon; connect, disconnect and killDaemon do not. */
const DAEMON_CALLS = new Set(['start', 'delete', 'stop', 'list']);

type Callback = (error: unknown, value?: unknown) => void;

/** The part of PM2's API class this adapter uses (its own typings only describe the default instance). */
interface Pm2Api {
  connect(cb: Callback): void;
  start(options: Record<string, unknown>, cb: Callback): void;
  delete(name: string, cb: Callback): void;
  stop(name: string, cb: Callback): void;
  list(cb: Callback): void;
  disconnect(cb: Callback): void;
  killDaemon(cb: Callback): void;
  reloadLogs(cb: Callback): void;
}

type Pm2ApiClass = new (options: { pm2_home: string; daemon_mode: boolean }) => Pm2Api;

interface RawProcess {
  name?: unknown;
  pid?: unknown;
  pm_id?: unknown;
  pm2_env?: {
    status?: unknown; pm_cwd?: unknown; restart_time?: unknown; pm_uptime?: unknown; exec_mode?: unknown; instances?: unknown;
    pm_out_log_path?: unknown; pm_err_log_path?: unknown;
  };
}

let apiClass: Pm2ApiClass | undefined;
let homeInUse: string | undefined;

function loadApiClass(): Pm2ApiClass {
  if (!apiClass) {
    process.env.PM2_PROGRAMMATIC = 'true';
    apiClass = createRequire(import.meta.url)('pm2/lib/API.js') as Pm2ApiClass;
  }
  return apiClass;
}

function pm2ErrorText(error: unknown): string {
  if (Array.isArray(error)) return error.map(pm2ErrorText).join('; ');
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && 'message' in error) return String((error as { message: unknown }).message);
  return String(error);
}

function toProcess(raw: RawProcess): Pm2Process {
  const env = raw.pm2_env ?? {};
  const status = typeof env.status === 'string' ? env.status : 'unknown';
  const pid = typeof raw.pid === 'number' && raw.pid > 0 ? raw.pid : null;
  const startedAt = typeof env.pm_uptime === 'number' ? env.pm_uptime : null;
  return {
    name: String(raw.name),
    pid,
    status,
    pmCwd: typeof env.pm_cwd === 'string' ? env.pm_cwd : '',
    restarts: typeof env.restart_time === 'number' ? env.restart_time : 0,
    uptimeMs: status === 'online' && startedAt !== null ? Math.max(0, Date.now() - startedAt) : 0,
    instances: 1,
    online: status === 'online' ? 1 : 0,
    outLog: typeof env.pm_out_log_path === 'string' ? env.pm_out_log_path : null,
    errLog: typeof env.pm_err_log_path === 'string' ? env.pm_err_log_path : null,
  };
}

/** One of several instances started under one name (cluster mode, or forks of a command). */
function isInstance(raw: RawProcess): boolean {
  const instances = raw.pm2_env?.instances;
  return raw.pm2_env?.exec_mode === 'cluster_mode' || (typeof instances === 'number' && instances > 1);
}

/** The instances of one cluster-mode name as one process: online only when every instance is. */
function foldInstances(procs: Pm2Process[]): Pm2Process {
  const first = procs[0]!;
  const down = procs.find((p) => p.status !== 'online');
  return {
    ...first,
    status: down ? down.status : 'online',
    restarts: procs.reduce((sum, p) => sum + p.restarts, 0),
    uptimeMs: Math.min(...procs.map((p) => p.uptimeMs)),
    instances: procs.length,
    online: procs.filter((p) => p.status === 'online').length,
  };
}

function invalidSpec(name: string, message: string): SlipwayError {
  return new SlipwayError('pm2_invalid_start', `cannot start ${name} under PM2: ${message}`, { status: 400 });
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name) || name === 'all') {
    throw new SlipwayError('pm2_invalid_name', `${JSON.stringify(name)} is not a valid PM2 process name`, {
      status: 400,
      hint: `use a name matching ${NAME_PATTERN.source} (e.g. "<app>-<slot>")`,
    });
  }
  return name;
}

/**
 * One connection to one isolated PM2 daemon. Calls are serialised (PM2's client is not safe to
 * use concurrently, and compound operations like "check the name is free, then start" must not
 * interleave) and each has a deadline.
 */
export class Pm2Adapter {
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Set while restartDaemon() replaces the client: calls fail at once instead of queueing. */
  private restarting = false;
  /** Rejects every call still waiting on the client that restartDaemon() drops. */
  private readonly pending = new Set<(error: SlipwayError) => void>();
  private readonly downListeners: ((health: DaemonHealth) => void)[] = [];

  private constructor(
    private api: Pm2Api,
    readonly pm2Home: string,
    private readonly callTimeoutMs: number,
  ) {}

  static async connect({ pm2Home, callTimeoutMs = 15_000 }: Pm2ConnectOptions): Promise<Pm2Adapter> {
    if (!path.isAbsolute(pm2Home)) {
      throw new SlipwayError('pm2_home_invalid', `PM2 home ${JSON.stringify(pm2Home)} must be an absolute path`, { status: 500 });
    }
    const home = path.resolve(pm2Home);
    if (process.env.PM2_HOME !== undefined && path.resolve(process.env.PM2_HOME) !== home && process.env.pm_id !== undefined) {
      // The agent is a process of another PM2 daemon (deploy setup runs it as slipway-agent in a
      // daemon of its own, apart from the apps'): PM2 sets that daemon's PM2_HOME in every child's
      // environment, whatever the process file says. Not the operator's choice, and the apps'
      // daemon must not inherit it: the config's home replaces it.
      process.env.PM2_HOME = home;
    }
    if (process.env.PM2_HOME !== undefined && path.resolve(process.env.PM2_HOME) !== home) {
      throw new SlipwayError('pm2_home_conflict',
        `the agent's environment sets PM2_HOME=${process.env.PM2_HOME}, but the config says ${home}`, {
          status: 500,
          hint: 'unset PM2_HOME in the agent\'s environment (or make it equal pm2.home): PM2 would start its daemon there',
        });
    }
    if (homeInUse !== undefined && homeInUse !== home) {
      throw new SlipwayError('pm2_home_conflict', `this process is already connected to PM2 home ${homeInUse}; PM2 supports one per process`, {
        status: 500,
        hint: 'disconnect the other adapter first',
      });
    }
    const Api = loadApiClass();
    homeInUse = home;
    const adapter = new Pm2Adapter(new Api({ pm2_home: home, daemon_mode: true }), home, callTimeoutMs);
    try {
      await adapter.exclusive(() => adapter.raw('connect', (cb) => adapter.api.connect(cb)), { daemon: false });
    } catch (error) {
      homeInUse = undefined;
      throw error;
    }
    return adapter;
  }

  /** Whether the daemon runs and accepts calls, without asking PM2 (which would hang). */
  daemonHealth(): Promise<DaemonHealth> {
    return probeDaemon(this.pm2Home);
  }

  /** Called (once per failed call) when a call finds the daemon down. */
  onDaemonDown(listener: (health: DaemonHealth) => void): void {
    this.downListeners.push(listener);
  }

  /**
   * Replaces the client with a new one, which starts a new daemon unless one answers. The old
   * client is closed first and its waiting calls fail: left alone, it would deliver them to the
   * new daemon. Processes the dead daemon ran are not adopted (PM2 cannot): see rehome.ts.
   */
  async restartDaemon(): Promise<{ pid: number }> {
    if (this.closed) throw new SlipwayError('pm2_disconnected', 'the PM2 connection is closed', { status: 500 });
    if (this.restarting) throw pm2DaemonDown(this.pm2Home, 'it is being restarted');
    this.restarting = true;
    try {
      const dropped = pm2DaemonDown(this.pm2Home, 'the agent replaced its connection to restart the daemon');
      for (const reject of [...this.pending]) reject(dropped);
      const old = this.api;
      await this.raw('disconnect', (cb) => old.disconnect(cb), 1_000).catch(() => undefined);
      this.api = new (loadApiClass())({ pm2_home: this.pm2Home, daemon_mode: true });
      await this.raw('connect', (cb) => this.api.connect(cb));
      const health = await this.daemonHealth();
      if (!health.up) throw pm2DaemonDown(this.pm2Home, `it did not come back: ${health.reason}`);
      return { pid: health.pid };
    } finally {
      this.restarting = false;
    }
  }

  /**
   * Starts a fresh process (fork mode, autorestart) with exactly `env` (+ PATH), then confirms
   * PM2 recorded the requested cwd. Refuses a name that already exists: delete it first.
   */
  start(spec: Pm2StartSpec): Promise<{ pid: number }> {
    return this.exclusive(async () => {
      const name = checkName(spec.name);
      await this.checkSpec(spec);
      if ((await this.find(name)).length > 0) {
        throw new SlipwayError('pm2_name_in_use', `PM2 already has a process named ${name}`, {
          status: 409,
          hint: `delete it first: PM2 would restart the old process with its old environment instead of starting ${spec.cwd}`,
        });
      }
      const instances = spec.instances ?? 1;
      const env: Record<string, string> = { ...spec.env };
      if (env.PATH === undefined && process.env.PATH !== undefined) env.PATH = process.env.PATH;
      const started = await this.keepingProcessEnv(['PWD', 'PM2_JSON_PROCESSING'], () => this.raw('start', (cb) => this.api.start({
        name,
        script: spec.script,
        cwd: spec.cwd,
        args: [...(spec.args ?? [])],
        node_args: [...(spec.nodeArgs ?? [])],
        env,
        filter_env: [''],
        // Several instances of a non-Node command are N forks under one name (cluster mode is Node's).
        exec_mode: instances > 1 && !spec.interpreter ? 'cluster' : 'fork',
        instances,
        ...(spec.interpreter ? { interpreter: spec.interpreter } : {}),
        ...(spec.killTimeoutMs !== undefined ? { kill_timeout: spec.killTimeoutMs } : {}),
        ...(spec.maxMemoryRestart !== undefined ? { max_memory_restart: spec.maxMemoryRestart } : {}),
        autorestart: true,
        watch: false,
        vizion: false,
        pmx: false,
        automation: false,
        merge_logs: true,
        // Every line with the time it was written: deploy logs shows it and picks lines by it (--since).
        log_date_format: PM2_LOG_DATE_FORMAT,
      }, cb)));
      const procs = (Array.isArray(started) ? started : []) as Array<{ pid?: unknown; pm2_env?: { pm_cwd?: unknown } }>;
      if (instances > 1) return this.confirmCluster(name, spec.cwd, instances, procs.length);
      if (procs.length !== 1) {
        throw new SlipwayError('pm2_start_failed', `PM2 did not start ${name} (it reported ${procs.length} processes)`, {
          status: 500,
          hint: `look at ${path.join(this.pm2Home, 'pm2.log')}`,
        });
      }
      // The pid PM2 spawned; describe may already show a restart's pid if the app died at once.
      const spawnedPid = typeof procs[0]!.pid === 'number' && procs[0]!.pid > 0 ? procs[0]!.pid : null;
      const proc = (await this.find(name))[0];
      const pid = spawnedPid ?? proc?.pid ?? null;
      const pmCwd = proc?.pmCwd ?? '';
      const actualCwd = pid === null ? null : await readlink(`/proc/${pid}/cwd`).catch(() => null);
      if (pmCwd !== spec.cwd || (actualCwd !== null && actualCwd !== spec.cwd) || pid === null) {
        // Never leave a process running that is not the one asked for.
        await this.raw('delete', (cb) => this.api.delete(name, cb)).catch(() => undefined);
        if (pid === null) {
          throw new SlipwayError('pm2_start_failed', `PM2 registered ${name} but reported no pid (status ${proc?.status ?? 'unknown'})`, {
            status: 500,
            hint: `look at ${path.join(this.pm2Home, 'pm2.log')}`,
          });
        }
        throw new SlipwayError('pm2_cwd_mismatch',
          `PM2 started ${name} in ${actualCwd ?? pmCwd} (pm_cwd ${pmCwd || 'unknown'}), not ${spec.cwd}; it was deleted again`, {
            status: 500,
            hint: 'pass the resolved release dir as cwd and check that nothing replaces it while starting',
          });
      }
      return { pid };
    });
  }

  /** The instances of a cluster start: all there, each in the asked cwd; otherwise deleted again. */
  private async confirmCluster(name: string, cwd: string, instances: number, reported: number): Promise<{ pid: number }> {
    const found = await this.find(name);
    // pm_cwd only: a cluster worker is forked from the daemon and changes into pm_cwd itself, a
    // moment after PM2 reports it started, so /proc/<pid>/cwd may still show the daemon's.
    const wrong = found.filter((p) => p.pmCwd !== cwd);
    if (found.length !== instances || wrong.length > 0 || found[0]?.pid == null) {
      await this.raw('delete', (cb) => this.api.delete(name, cb)).catch(() => undefined);
      throw new SlipwayError('pm2_start_failed',
        `PM2 did not start ${instances} instances of ${name} in ${cwd} (it reported ${reported}, runs ${found.length}${wrong.length ? `, ${wrong.length} elsewhere` : ''}); it was deleted again`, {
          status: 500, hint: `look at ${path.join(this.pm2Home, 'pm2.log')}`,
        });
    }
    return { pid: found[0].pid };
  }

  /** Deletes (stops, then forgets) every process named `name`. A missing name is not an error. */
  delete(name: string): Promise<void> {
    return this.exclusive(async () => {
      checkName(name);
      if ((await this.find(name)).length === 0) return;
      await this.raw('delete', (cb) => this.api.delete(name, cb));
    });
  }

  stop(name: string): Promise<void> {
    return this.exclusive(async () => {
      checkName(name);
      if ((await this.find(name)).length === 0) {
        throw new SlipwayError('pm2_not_found', `PM2 has no process named ${name}`, { status: 404 });
      }
      await this.raw('stop', (cb) => this.api.stop(name, cb));
    });
  }

  /** The process named `name`, or null. */
  describe(name: string): Promise<Pm2Process | null> {
    return this.exclusive(async () => {
      checkName(name);
      const raw = await this.findRaw(name);
      const found = raw.map(toProcess);
      if (found.length > 1 && raw.every(isInstance)) return foldInstances(found);
      if (found.length > 1) {
        throw new SlipwayError('pm2_duplicate_name', `PM2 has ${found.length} processes named ${name}`, {
          status: 500,
          hint: `remove them all (PM2_HOME=${this.pm2Home} pm2 delete ${name}) and deploy again`,
        });
      }
      return found[0] ?? null;
    });
  }

  list(): Promise<Pm2Process[]> {
    return this.exclusive(() => this.listRaw());
  }

  /** Makes PM2 reopen every process's log files at their paths (after agent/logs/rotation.ts renamed them). */
  reloadLogs(): Promise<void> {
    return this.exclusive(async () => { await this.raw('reloadLogs', (cb) => this.api.reloadLogs(cb)); });
  }

  /** Closes this connection; the daemon and its processes keep running. */
  async disconnect(): Promise<void> {
    if (this.closed) return;
    const daemonUp = checkDaemonProcess(this.pm2Home).up;
    await this.exclusive(() => this.raw('disconnect', (cb) => this.api.disconnect(cb)), { daemon: false })
      // A client whose daemon is gone has nothing to close cleanly ("RPC already being closed").
      .catch((error: unknown) => { if (daemonUp) throw error; })
      .finally(() => this.markClosed());
  }

  /** Stops every process and the daemon, then disconnects. */
  async killDaemon(): Promise<void> {
    if (this.closed) return;
    const saved = { status: process.env.PM2_STATUS, silent: process.env.PM2_SILENT };
    try {
      await this.exclusive(() => this.raw('killDaemon', (cb) => this.api.killDaemon(cb)), { daemon: false });
      await this.exclusive(() => this.raw('disconnect', (cb) => this.api.disconnect(cb)), { daemon: false }).catch(() => undefined);
    } finally {
      for (const [key, value] of [['PM2_STATUS', saved.status], ['PM2_SILENT', saved.silent]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      this.markClosed();
    }
  }

  /** PM2's start writes PWD and PM2_JSON_PROCESSING into the caller's process.env; undo that. */
  private async keepingProcessEnv<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const saved = keys.map((key) => [key, process.env[key]] as const);
    try {
      return await fn();
    } finally {
      for (const [key, value] of saved) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  }

  private markClosed(): void {
    this.closed = true;
    if (homeInUse === this.pm2Home) homeInUse = undefined;
  }

  private async checkSpec(spec: Pm2StartSpec): Promise<void> {
    const { name } = spec;
    for (const [field, value] of [['script', spec.script], ['cwd', spec.cwd]] as const) {
      if (typeof value !== 'string' || !path.isAbsolute(value) || /\s/.test(value) || path.normalize(value) !== value) {
        throw invalidSpec(name, `${field} must be a normalised absolute path without whitespace (got ${JSON.stringify(value)})`);
      }
    }
    const cwdStat = await stat(spec.cwd).catch(() => null);
    if (!cwdStat?.isDirectory()) throw invalidSpec(name, `cwd ${spec.cwd} is not a directory`);
    const resolved = await realpath(spec.cwd);
    if (resolved !== spec.cwd) {
      throw invalidSpec(name, `cwd ${spec.cwd} goes through a symlink (it resolves to ${resolved}); pass the resolved release dir`);
    }
    const scriptStat = await stat(spec.script).catch(() => null);
    if (!scriptStat?.isFile()) throw invalidSpec(name, `script ${spec.script} is not a file`);
    for (const [key, value] of Object.entries(spec.env)) {
      if (!ENV_NAME_PATTERN.test(key) || typeof value !== 'string') {
        throw invalidSpec(name, `env ${JSON.stringify(key)} must be a NAME=string pair`);
      }
    }
    for (const arg of [...(spec.args ?? []), ...(spec.nodeArgs ?? [])]) {
      if (typeof arg !== 'string') throw invalidSpec(name, 'args and nodeArgs must be strings');
    }
  }

  private async listRaw(): Promise<Pm2Process[]> {
    const list = await this.raw('list', (cb) => this.api.list(cb));
    return (Array.isArray(list) ? list as RawProcess[] : []).map(toProcess);
  }

  private async find(name: string): Promise<Pm2Process[]> {
    return (await this.listRaw()).filter((proc) => proc.name === name);
  }

  private async findRaw(name: string): Promise<RawProcess[]> {
    const list = await this.raw('list', (cb) => this.api.list(cb));
    return (Array.isArray(list) ? list as RawProcess[] : []).filter((proc) => String(proc.name) === name);
  }

  /**
   * Runs `fn` after every earlier call has finished. A call that needs the daemon fails at once
   * when it is down (checked when the call is made and again when its turn comes), instead of
   * queueing behind calls that wait for a daemon that is gone.
   */
  private exclusive<T>(fn: () => Promise<T>, options: { daemon?: boolean } = {}): Promise<T> {
    if (this.closed) {
      return Promise.reject(new SlipwayError('pm2_disconnected', 'the PM2 connection is closed', { status: 500 }));
    }
    const needsDaemon = options.daemon ?? true;
    if (needsDaemon) {
      const problem = this.daemonProblem(checkDaemonProcess(this.pm2Home));
      if (problem) return Promise.reject(problem);
    }
    const run = this.queue.then(async () => {
      if (needsDaemon) {
        const problem = this.daemonProblem(await this.daemonHealth());
        if (problem) throw problem;
      }
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private daemonProblem(health: DaemonHealth): SlipwayError | null {
    if (this.restarting) return pm2DaemonDown(this.pm2Home, 'it is being restarted');
    if (health.up) return null;
    for (const listener of this.downListeners) listener(health);
    return pm2DaemonDown(this.pm2Home, health.reason);
  }

  /**
   * One PM2 callback call with a deadline; PM2's error shapes become one SlipwayError. A call to
   * the daemon also ends as soon as the daemon is seen gone, or its client is replaced.
   */
  private raw(operation: string, call: (cb: Callback) => void, timeoutMs = this.callTimeoutMs): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = () => {
        settled = true;
        clearTimeout(timer);
        if (daemonCheck) clearInterval(daemonCheck);
        this.pending.delete(abandon);
      };
      const abandon = (error: SlipwayError) => {
        if (settled) return;
        finish();
        reject(error);
      };
      this.pending.add(abandon);
      const timer = setTimeout(() => abandon(new SlipwayError('pm2_timeout', `PM2 ${operation} did not answer within ${timeoutMs} ms`, {
        status: 504,
        hint: `check the PM2 daemon (PM2_HOME=${this.pm2Home} pm2 ls) and ${path.join(this.pm2Home, 'pm2.log')}`,
      })), timeoutMs);
      const daemonCheck = DAEMON_CALLS.has(operation) ? setInterval(() => {
        const health = checkDaemonProcess(this.pm2Home);
        if (!health.up) abandon(pm2DaemonDown(this.pm2Home, `${health.reason} (PM2 ${operation} was waiting for it)`));
      }, DAEMON_CHECK_INTERVAL_MS) : null;
      const done: Callback = (error, value) => {
        if (settled) return;
        finish();
        const failed = Array.isArray(error) ? error.length > 0 : error !== null && error !== undefined;
        if (failed) {
          reject(new SlipwayError('pm2_failed', `PM2 ${operation} failed: ${pm2ErrorText(error)}`, {
            status: 500,
            cause: error,
            hint: `see ${path.join(this.pm2Home, 'pm2.log')}`,
          }));
        } else {
          resolve(value);
        }
      };
      try {
        call(done);
      } catch (error) {
        done(error ?? new Error(errorMessage(error)));
      }
    });
  }
}
