import { existsSync, readFileSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export interface NginxHandle {
  /** Private prefix directory (conf/, logs/, temp/, conf.d/); removed by stop(). */
  prefix: string;
  /** Loopback port of the default server (404 for any host no app include claims). */
  port: number;
  /** Directory included from http{} as <includeDir>/*.conf */
  includeDir: string;
  pidFile: string;
  confPath: string;
  errorLogPath: string;
  /** How to invoke this instance: ['nginx', '-p', prefix, '-c', conf, '-e', errorLog]. */
  command: string[];
  /** The master's pid (a reload keeps it; only the workers change). */
  pid: number;
  /** Current worker pids (children of the master). */
  workerPids(): number[];
  /** SIGKILLs master and workers but leaves the pid file behind: a stale pid file, as after a crash. */
  crash(): Promise<void>;
  /** SIGQUIT (graceful), SIGKILL after a deadline, then removes the prefix. Safe to call twice. */
  stop(): Promise<void>;
}

/** True while `pid` exists and is not a zombie (a zombie still answers kill(pid, 0)). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Pids whose parent is `pid`, from /proc. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) children.push(Number(entry));
    } catch {
      // exited while we were looking
    }
  }
  return children;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function killAndWait(pids: number[], description: string): Promise<void> {
  for (const pid of pids) killQuietly(pid, 'SIGKILL');
  await waitFor(() => pids.every((pid) => !isAlive(pid)), { timeoutMs: 5_000, description });
}

export function nginxConf(options: { prefix: string; port: number; includeDir: string; pidFile: string; errorLogPath: string; listenHost?: string }): string {
  const { prefix, port, includeDir, pidFile, errorLogPath } = options;
  const listenHost = options.listenHost ?? '127.0.0.1';
  const temp = (name: string) => path.join(prefix, 'temp', name);
  return `# Private nginx for Slipway tests: every path inside ${prefix}.
worker_processes 1;
pid ${pidFile};
# notice level logs every reload ("reconfiguring") and why one was not applied.
error_log ${errorLogPath} notice;

events {
    worker_connections 512;
}

http {
    access_log ${path.join(prefix, 'logs', 'access.log')};
    client_body_temp_path ${temp('client_body')};
    proxy_temp_path ${temp('proxy')};
    fastcgi_temp_path ${temp('fastcgi')};
    uwsgi_temp_path ${temp('uwsgi')};
    scgi_temp_path ${temp('scgi')};

    server {
        listen ${listenHost}:${port} default_server;
        server_name _;
        return 404;
    }

    include ${includeDir}/*.conf;
}
`;
}

/**
 * Starts a private nginx master (daemonised, as in production) on a free loopback port. Only
 * this instance's pids are ever signalled.
 */
export interface NginxOptions {
  /** Address of the default server (default 127.0.0.1), e.g. a network namespace's address. */
  listenHost?: string;
  /** Fixed port of the default server (e.g. inside a namespace); default a free loopback port. */
  port?: number;
  /** argv prefix the master is started with, e.g. `ip netns exec NS`; `command` stays without it. */
  spawnPrefix?: readonly string[];
}

export async function startNginx(options: NginxOptions = {}): Promise<NginxHandle> {
  const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-nginx-'));
  // Workers run as "nobody" when the master is root: they must be able to reach temp/.
  await fs.chmod(prefix, 0o755);
  const includeDir = path.join(prefix, 'conf.d');
  const confPath = path.join(prefix, 'conf', 'nginx.conf');
  const pidFile = path.join(prefix, 'logs', 'nginx.pid');
  const errorLogPath = path.join(prefix, 'logs', 'error.log');
  for (const dir of ['conf', 'logs', 'temp', 'conf.d']) await fs.mkdir(path.join(prefix, dir), { recursive: true });
  const command = ['nginx', '-p', prefix, '-c', confPath, '-e', errorLogPath];

  try {
    let port = 0;
    // freePort() can race with another process taking the port before nginx binds it.
    for (let attempt = 1; ; attempt++) {
      port = options.port ?? await freePort();
      await fs.writeFile(confPath, nginxConf({ prefix, port, includeDir, pidFile, errorLogPath, ...(options.listenHost ? { listenHost: options.listenHost } : {}) }));
      const started = await runCommand([...(options.spawnPrefix ?? []), ...command], { timeoutMs: 10_000 });
      if (started.exitCode === 0) break;
      if (attempt >= 3 || options.port !== undefined || !/Address already in use/.test(started.stderr)) {
        throw new Error(`nginx did not start (exit ${started.exitCode}): ${started.stderr.trim()}`);
      }
    }
    // The daemonised master writes its pid file after the starting process has exited.
    const pid = await waitFor(() => {
      const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
      const value = Number(text);
      return /^[0-9]+$/.test(text) && isAlive(value) ? value : null;
    }, { timeoutMs: 5_000, description: `nginx pid file ${pidFile}` });

    let stopped = false;
    return {
      prefix, port, includeDir, pidFile, confPath, errorLogPath, command, pid,
      workerPids: () => childPids(pid),
      async crash() {
        const all = [pid, ...childPids(pid)];
        await killAndWait(all, `crashed nginx ${all.join(', ')} to exit`);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        if (isAlive(pid)) {
          const workers = childPids(pid);
          killQuietly(pid, 'SIGQUIT');
          try {
            await waitFor(() => !isAlive(pid) && workers.every((w) => !isAlive(w)), { timeoutMs: 5_000, description: `nginx ${pid} to quit` });
          } catch {
            await killAndWait([pid, ...workers, ...childPids(pid)], `nginx ${pid} to die after SIGKILL`);
          }
        }
        await fs.rm(prefix, { recursive: true, force: true });
      },
    };
  } catch (error) {
    // A master that did start must not outlive a failed setup.
    const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
    if (/^[0-9]+$/.test(text)) await killAndWait([Number(text), ...childPids(Number(text))], 'nginx to die').catch(() => undefined);
    await fs.rm(prefix, { recursive: true, force: true });
    throw error;
  }
}
