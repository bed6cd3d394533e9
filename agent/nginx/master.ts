import { readdir, readFile } from 'node:fs/promises';
import { SlipwayError } from '../../contract/errors.js';
import { readOrNull } from '../../lib/durable.js';

/**
 * Confirms the master named by the pid file is alive and is nginx. A stale pid file (dead pid,
 * or a pid since reused by another program) counts as not running.
 */
export async function checkMasterRunning(pidFile: string): Promise<{ pid: number }> {
  const notRunning = (reason: string) => new SlipwayError('nginx_not_running', `nginx is not running: ${reason}`, {
    status: 503,
    hint: `start nginx (e.g. "systemctl start nginx") and check that nginx.pidFile in the agent config matches the "pid" directive of nginx.conf; nothing was changed`,
  });
  const text = await readOrNull(pidFile);
  if (text === null) throw notRunning(`pid file ${pidFile} does not exist`);
  const trimmed = text.toString('utf8').trim();
  const pid = /^[0-9]{1,10}$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(pid) || pid <= 1) {
    throw notRunning(`pid file ${pidFile} does not hold a pid (it holds ${JSON.stringify(trimmed.slice(0, 40))})`);
  }
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM means the process exists but belongs to someone else: still worth the cmdline check.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') {
      throw notRunning(`pid ${pid} from ${pidFile} is not running (stale pid file)`);
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
    if (cmdline === null) throw notRunning(`pid ${pid} from ${pidFile} is not running (stale pid file)`);
    const described = cmdline.toString('utf8').replace(/\0+/g, ' ').trim();
    // A zombie has an empty cmdline: it has exited, only not been reaped yet.
    if (described === '') throw notRunning(`pid ${pid} from ${pidFile} has exited (stale pid file)`);
    if (!described.includes('nginx')) {
      throw notRunning(`pid ${pid} from ${pidFile} is not nginx but ${JSON.stringify(described.slice(0, 80))} (stale pid file)`);
    }
  }
  return { pid };
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
export async function acceptingWorkers(masterPid: number): Promise<number[]> {
  const accepting: number[] = [];
  for (const pid of await workerPids(masterPid)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('worker process') && !cmdline.includes('shutting down')) accepting.push(pid);
  }
  return accepting;
}
