import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SlipwayError } from '../contract/errors.js';
import { isRunning, procEnviron } from './procfs.js';

// Whether the PM2 daemon ("God") of one PM2_HOME is alive, answered without asking PM2: its
// client hangs, then retries forever, when the daemon is gone (each call waited out its full
// timeout), and it never says why.
//
// PM2's layout in PM2_HOME: pm2.pid holds the daemon's pid, rpc.sock is the socket it answers
// calls on. The daemon is spawned with PM2_HOME in its environment, which tells a live daemon
// from a stale pid file whose pid the kernel gave to another process. A daemon killed with
// SIGKILL leaves both files behind.

export type DaemonHealth =
  | { up: true; pid: number }
  | { up: false; pid: number | null; reason: string };

/** What every caller gets while the daemon is down: a refusal before anything changed. */
export function pm2DaemonDown(pm2Home: string, reason: string): SlipwayError {
  return new SlipwayError('pm2_daemon_down', `the PM2 daemon of ${pm2Home} is down: ${reason}`, {
    status: 503,
    hint: `the agent restarts it and moves the app processes back under it within seconds (deploy status shows the PM2 daemon's state); retry once it says "up". If it stays down, read ${path.join(pm2Home, 'pm2.log')}`,
  });
}

const RPC_SOCKET = 'rpc.sock';
const PID_FILE = 'pm2.pid';

function readDaemonPid(pm2Home: string): number | null {
  try {
    const text = readFileSync(path.join(pm2Home, PID_FILE), 'utf8').trim();
    return /^[0-9]+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/**
 * The daemon's pid if pm2.pid names a running process of this PM2_HOME, else why not. Synchronous
 * and cheap (three small reads under /proc): fit to run before every PM2 call.
 */
export function checkDaemonProcess(pm2Home: string): DaemonHealth {
  const pid = readDaemonPid(pm2Home);
  if (pid === null) return { up: false, pid: null, reason: `${path.join(pm2Home, PID_FILE)} names no daemon` };
  if (!isRunning(pid)) return { up: false, pid, reason: `the PM2 daemon (pid ${pid}) is not running` };
  if (procEnviron(pid)?.get('PM2_HOME') !== pm2Home) {
    return { up: false, pid, reason: `pid ${pid} from ${PID_FILE} is not the PM2 daemon of ${pm2Home} (stale pid file)` };
  }
  return { up: true, pid };
}

/** checkDaemonProcess, then a connection to the daemon's RPC socket within `socketTimeoutMs`. */
export async function probeDaemon(pm2Home: string, socketTimeoutMs = 500): Promise<DaemonHealth> {
  const byPid = checkDaemonProcess(pm2Home);
  if (!byPid.up) return byPid;
  const refused = await socketRefusal(path.join(pm2Home, RPC_SOCKET), socketTimeoutMs);
  if (refused !== null) return { up: false, pid: byPid.pid, reason: `the PM2 daemon (pid ${byPid.pid}) does not accept calls: ${refused}` };
  return byPid;
}

/** null when something accepts a connection on the unix socket, else what happened. */
function socketRefusal(socketPath: string, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const done = (result: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(`no connection on ${socketPath} within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => done(null));
    socket.once('error', (error: NodeJS.ErrnoException) => done(`${error.code ?? error.message} on ${socketPath}`));
  });
}
