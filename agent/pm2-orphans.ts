import { SlipwayError } from '../contract/errors.js';
import { isSlot, type Slot } from '../contract/names.js';
import { waitFor } from '../lib/wait.js';
import { isRunning, listPids, procEnviron, procStat } from './procfs.js';

// Slot processes PM2 no longer knows. When the PM2 daemon dies its apps live on, reparented away
// from it, and a new daemon starts with an empty list: PM2 cannot adopt a running process, so
// these orphans keep their ports (and serve traffic) until Slipway replaces and stops them.
//
// They are recognised by the environment PM2 and Slipway started them with: PM2_HOME equal to
// ours, SLIPWAY_APP and SLIPWAY_SLOT set, and older than the running daemon: whatever started
// after it is PM2's own, or was started by one of its apps (a detached worker too, although it no
// longer descends from the daemon), so it is never taken for an orphan. Nothing is stopped
// by name: only by pid, after checking the pid is still the same process (start time and
// environment unchanged).

export interface SlotOrphan {
  pid: number;
  /** With the pid, identifies the process: a reused pid has another start time. */
  startTime: number;
  app: string;
  slot: Slot;
  /** SLIPWAY_RELEASE it was started with, when set. */
  releaseId: string | null;
}

/** PM2 gives up on an app this long after SIGINT (its default kill_timeout), then SIGKILLs it. */
const STOP_GRACE_MS = 1_600;
const KILL_WAIT_MS = 5_000;

function identify(pid: number, pm2Home: string): Omit<SlotOrphan, 'startTime'> | null {
  const env = procEnviron(pid);
  if (!env || env.get('PM2_HOME') !== pm2Home) return null;
  const app = env.get('SLIPWAY_APP');
  const slot = env.get('SLIPWAY_SLOT');
  if (!app || !isSlot(slot)) return null;
  return { pid, app, slot, releaseId: env.get('SLIPWAY_RELEASE') || null };
}

/** Running processes of Slipway's slots under `pm2Home` older than the daemon `daemonPid` (null: none runs). */
export function findSlotOrphans(pm2Home: string, daemonPid: number | null): SlotOrphan[] {
  const daemonStart = daemonPid === null ? null : procStat(daemonPid)?.startTime ?? null;
  const found: SlotOrphan[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid || pid === daemonPid) continue;
    const who = identify(pid, pm2Home);
    const stat = who && procStat(pid);
    if (!who || !stat || stat.state === 'Z') continue;
    if (daemonStart !== null && stat.startTime >= daemonStart) continue;
    found.push({ ...who, startTime: stat.startTime });
  }
  return found;
}

/** Whether `pid` is still the process that was found (not exited, not a reused pid). */
function stillSame(orphan: SlotOrphan, pm2Home: string): boolean {
  const stat = procStat(orphan.pid);
  if (!stat || stat.state === 'Z' || stat.startTime !== orphan.startTime) return false;
  const who = identify(orphan.pid, pm2Home);
  return who !== null && who.app === orphan.app && who.slot === orphan.slot;
}

function signal(orphan: SlotOrphan, pm2Home: string, name: NodeJS.Signals): void {
  if (!stillSame(orphan, pm2Home)) return;
  try {
    process.kill(orphan.pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * Stops orphans as PM2 stops an app: SIGINT (apps written for PM2 shut down gracefully on it),
 * SIGKILL after PM2's grace period. Each signal goes only to a pid that is still the same process.
 */
export async function stopOrphans(orphans: SlotOrphan[], pm2Home: string): Promise<void> {
  if (orphans.length === 0) return;
  const gone = () => orphans.every((o) => !isRunning(o.pid) || !stillSame(o, pm2Home));
  for (const orphan of orphans) signal(orphan, pm2Home, 'SIGINT');
  const stopped = await waitFor(gone, { timeoutMs: STOP_GRACE_MS, intervalMs: 50, onTimeout: () => new Error('grace over') })
    .then(() => true, () => false);
  if (stopped) return;
  for (const orphan of orphans) signal(orphan, pm2Home, 'SIGKILL');
  const left = () => orphans.filter((o) => isRunning(o.pid) && stillSame(o, pm2Home)).map((o) => o.pid);
  await waitFor(gone, {
    timeoutMs: KILL_WAIT_MS,
    intervalMs: 50,
    onTimeout: () => new SlipwayError('orphan_stop_failed', `processes ${left().join(', ')} of ${orphans[0]!.app} left by a dead PM2 daemon did not exit after SIGKILL`, {
      status: 500,
      hint: `look at them with: ps -o pid,stat,cmd -p ${left().join(',')}`,
    }),
  });
}
