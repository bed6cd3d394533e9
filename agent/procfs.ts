import { readFileSync, readdirSync } from 'node:fs';

// Facts about a process read from /proc (Linux). A pid is only a name: before acting on one, the
// caller compares what it read earlier (start time, environment) with what is there now, so a
// pid the kernel reused for another process is never mistaken for the one that was seen.

export interface ProcStat {
  /** R, S, D, Z (zombie: exited, not yet reaped), T, ... */
  state: string;
  ppid: number;
  /** Clock ticks after boot; with the pid, it identifies one process for its whole life. */
  startTime: number;
}

export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const startTime = Number(fields[19]);
  if (!fields[0] || !Number.isInteger(ppid) || !Number.isFinite(startTime)) return null;
  return { state: fields[0], ppid, startTime };
}

/** The environment the process was started with, or null when it is gone or not readable. */
export function procEnviron(pid: number): Map<string, string> | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return null;
  }
  const env = new Map<string, string>();
  for (const entry of text.split('\0')) {
    const at = entry.indexOf('=');
    if (at > 0) env.set(entry.slice(0, at), entry.slice(at + 1));
  }
  return env;
}

/** Whether `pid` runs: a zombie has exited (where pid 1 does not reap, it stays one for good). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(pid);
  return stat !== null && stat.state !== 'Z';
}

export function listPids(): number[] {
  return readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name)).map(Number);
}
