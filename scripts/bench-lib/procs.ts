// Child processes of the bench: timed runs whose output lines are timestamped as they arrive,
// wrk in the background, and memory readings from /proc. Every child gets its own process group
// and a deadline; on expiry the whole group is killed by its pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { epochMs } from './poller.js';
import { parseWrk, type WrkResult } from './stats.js';

export interface TimedLine { at: number; stream: 'stdout' | 'stderr'; text: string }

export interface TimedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  startedAt: number;
  endedAt: number;
  ms: number;
  stdout: string;
  stderr: string;
  lines: TimedLine[];
  timedOut: boolean;
}

const live = new Set<ChildProcess>();
let aborted = false;

/** From now on no child may start, and every running one is killed: the bench is stopping. */
export function abortChildren(): void {
  aborted = true;
  killAllChildren();
}

function refuseIfAborted(file: string): void {
  if (aborted) throw new Error(`not starting ${file}: the bench is stopping`);
}

/** Kills every child still running (their whole process groups); for the exit path. */
export function killAllChildren(): void {
  for (const child of live) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

export function runTimed(argv: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number; stdinFile?: number; onLine?: (line: TimedLine) => void }): Promise<TimedRun> {
  const [file, ...args] = argv;
  if (!file) throw new Error('runTimed needs a program');
  refuseIfAborted(file);
  return new Promise((resolve, reject) => {
    const startedAt = epochMs();
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.stdinFile ?? 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    live.add(child);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, options.timeoutMs);
    const lines: TimedLine[] = [];
    const out = { stdout: '', stderr: '' };
    const pending = { stdout: '', stderr: '' };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const at = epochMs();
      const text = chunk.toString('utf8');
      if (out[stream].length < 1_000_000) out[stream] += text;
      pending[stream] += text;
      let newline: number;
      while ((newline = pending[stream].indexOf('\n')) >= 0) {
        const line: TimedLine = { at, stream, text: pending[stream].slice(0, newline) };
        pending[stream] = pending[stream].slice(newline + 1);
        lines.push(line);
        options.onLine?.(line);
      }
    };
    child.stdout!.on('data', onData('stdout'));
    child.stderr!.on('data', onData('stderr'));
    child.once('error', (error) => {
      clearTimeout(timer);
      live.delete(child);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      const endedAt = epochMs();
      resolve({ code, signal, startedAt, endedAt, ms: endedAt - startedAt, stdout: out.stdout, stderr: out.stderr, lines, timedOut });
    });
  });
}

/** Resident set size of a process in MB (VmRSS), or null if it is gone. */
export async function rssMb(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far in ms, or null if it is gone. */
export async function cpuMs(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // utime and stime, in clock ticks (USER_HZ: 100 on Linux).
    return ((fields[11] ?? 0) + (fields[12] ?? 0)) * 10;
  } catch {
    return null;
  }
}

export interface WrkRun {
  stop(): Promise<WrkResult & { output: string }>;
}

/**
 * Starts `wrk` against `url` with a hard upper bound on its duration; stop() ends it with SIGINT
 * (wrk then prints its summary as if the duration had run out) and parses the summary.
 */
export function startWrk(url: string, options: { threads: number; connections: number; maxSeconds: number }): WrkRun {
  refuseIfAborted('wrk');
  const child = spawn('wrk', [`-t${options.threads}`, `-c${options.connections}`, `-d${options.maxSeconds}s`, '--timeout', '5s', url], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
  const exited = new Promise<void>((resolve) => child.once('close', () => { live.delete(child); resolve(); }));
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        try { child.kill('SIGINT'); } catch { /* gone */ }
      }
      const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
      await exited;
      clearTimeout(timer);
      const parsed = parseWrk(output);
      if (!parsed) throw new Error(`could not parse wrk's output:\n${output.slice(-2000)}`);
      return { ...parsed, output };
    },
  };
}

/** Waits until `ms` has passed; the bench's only sleeps are pacing, never synchronisation. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
