import { spawn } from 'node:child_process';
import { accessSync, constants, closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { STDIO_GRACE_MS, StdioGrace } from '../../lib/stdio-grace.js';
import { TailBuffer, wholeLines } from '../../lib/tail-buffer.js';

// The backups' one way to run programs whose output is streamed rather than buffered (a dump
// written straight into its file, pg_restore's data counted line by line). Like runCommand: an
// argv, never a shell; the program gets its own process group, and at the deadline the whole
// group is killed, so a dump tool's children cannot outlive it. What is left of the group when the
// program exits is killed then (a backup program has no business leaving a daemon behind), and
// the result comes at its exit: a process that left the group (setsid) and still holds the
// output pipes holds them at most STDIO_GRACE_MS longer (lib/stdio-grace.ts).

export interface GroupRunOptions {
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  cwd?: string;
  /** Given to the program as its stdin (the file itself, not a copy through the agent). */
  stdinFile?: string;
  /** Consumes stdout; without it, the tail of stdout is kept. A rejection kills the group. */
  consumeStdout?: (stdout: Readable) => Promise<void>;
  /**
   * Given to the program as its stdout, as `program > file` in a shell: its output goes to the
   * file without passing through the agent. Once the program has exited, what is left of its
   * process group is killed (as for every run), so nothing it started can still write to the file
   * afterwards.
   */
  stdoutFd?: number;
  /** Bytes of stderr (and stdout) tail kept; default 8 KiB. */
  tailBytes?: number;
  /** Called once the program started, with its pid (= its process group id). */
  onSpawn?: (pid: number) => void;
}

export interface GroupRunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdoutTail: string;
  stderrTail: string;
  durationMs: number;
  /**
   * The program could not be started, or consumeStdout failed (say, ENOSPC). A program writing
   * to stdoutFd meets a full disk itself: it reports that on stderr and exits non-zero.
   */
  error: string | null;
}

export function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function runGroup(argv: readonly string[], options: GroupRunOptions): Promise<GroupRunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('runGroup needs a program to run');
  if (options.consumeStdout && options.stdoutFd !== undefined) throw new Error('runGroup takes consumeStdout or stdoutFd, not both');
  const limit = options.tailBytes ?? 8 * 1024;
  const started = performance.now();
  return new Promise((resolve) => {
    let stdinFd: number | null = null;
    try {
      if (options.stdinFile) stdinFd = openSync(options.stdinFile, 'r');
    } catch (error) {
      resolve({ exitCode: null, signal: null, timedOut: false, stdoutTail: '', stderrTail: '', durationMs: 0, error: `cannot read ${options.stdinFile}: ${(error as Error).message}` });
      return;
    }
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: [stdinFd ?? 'ignore', options.stdoutFd ?? 'pipe', 'pipe'],
      detached: true,
    });
    if (stdinFd !== null) closeSync(stdinFd);
    const stdoutTail = new TailBuffer(limit);
    const stderrTail = new TailBuffer(limit);
    let timedOut = false;
    let error: string | null = null;
    const kill = () => { if (child.pid) killGroup(child.pid); };
    const grace = new StdioGrace([child.stdout, child.stderr]);
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
      grace.start();
    }, options.timeoutMs);
    if (child.pid) options.onSpawn?.(child.pid);
    child.stderr!.on('data', (c: Buffer) => stderrTail.push(c));
    const consumed = drainStdout(child.stdout, options.consumeStdout, stdoutTail, (message) => {
      error ??= grace.held ? `a process it started outside its process group still held its output ${STDIO_GRACE_MS} ms after it exited: the output was cut there` : message;
      kill();
    });
    child.once('exit', () => {
      clearTimeout(timer);
      // Before waiting for the pipes: a leftover of the group holds them (and, for stdoutFd, the
      // file: it could change it after it was hashed). While any member lives the group id cannot
      // be reused, so this kills only what the program left behind.
      kill();
      grace.start();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
      child.once('error', (e) => {
        error ??= `could not run ${file}: ${e.message}`;
        done({ code: null, signal: null });
      });
      child.once('close', (code, signal) => done({ code, signal }));
    });
    void Promise.all([exited, consumed]).then(([{ code, signal }]) => {
      clearTimeout(timer);
      grace.stop();
      resolve({
        exitCode: code, signal, timedOut, error,
        stdoutTail: wholeLines(stdoutTail), stderrTail: wholeLines(stderrTail),
        durationMs: Math.round(performance.now() - started),
      });
    });
  });
}

/**
 * Reads the program's stdout pipe to its end: through `consume` when given (its failure is
 * reported through `failed` and the rest of the output discarded), else into `tail`. No pipe
 * (stdout is a file): nothing to read.
 */
function drainStdout(stdout: Readable | null, consume: GroupRunOptions['consumeStdout'], tail: TailBuffer, failed: (message: string) => void): Promise<void> {
  if (!stdout) return Promise.resolve();
  if (consume) {
    return consume(stdout).catch((e: unknown) => {
      failed(`writing the output failed: ${(e as Error).message}`);
      stdout.resume();
    });
  }
  return new Promise<void>((done) => {
    stdout.on('data', (c: Buffer) => tail.push(c));
    stdout.once('close', done);
  });
}

/** The program's path if it can be run: an absolute path that is executable, or a name found on PATH. */
export function findTool(tool: string, envPath = process.env.PATH ?? ''): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (tool.includes('/')) return executable(tool) ? tool : null;
  for (const dir of envPath.split(':').filter(Boolean)) {
    const candidate = path.join(dir, tool);
    if (executable(candidate)) return candidate;
  }
  return null;
}

/** The start time of a process (field 22 of /proc/<pid>/stat), which tells a pid from a reused one. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export function succeeded(run: GroupRunResult): boolean {
  return run.error === null && !run.timedOut && run.exitCode === 0;
}

/** "exit 2: <last stderr lines>" / "timed out after ..." / the spawn error, for messages (callers scrub secrets). */
export function describeFailure(run: GroupRunResult): string {
  const tail = run.stderrTail.trim().split('\n').slice(-5).join(' | ');
  const what = run.error ?? (run.timedOut ? 'timed out (its process group was killed)'
    : run.signal ? `killed by ${run.signal}` : `exit code ${run.exitCode}`);
  return tail ? `${what}: ${tail}` : what;
}
