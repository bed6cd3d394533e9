import { spawn } from 'node:child_process';
import { SlipwayError } from '../contract/errors.js';
import { StdioGrace } from './stdio-grace.js';
import { TailBuffer } from './tail-buffer.js';

export interface CommandResult {
  argv: readonly string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /**
   * Its output pipes were still open a grace after it exited (or was killed at the deadline): a
   * process it started in the background held them. That process was left running, and what it
   * wrote after the grace was not read.
   */
  outputHeld: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Bytes of stdout/stderr kept (the tail); output beyond that is drained and dropped. */
  maxOutputBytes?: number;
  input?: string | Buffer;
  /** Sees every chunk of output as it arrives (to stream a build's lines), besides the kept tail. */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

/**
 * The one place Slipway runs local programs: always an argv array, never a shell, and with a
 * deadline after which the whole process group is killed (a child's children included).
 *
 * The program's exit is what counts, not the end of its output: a process it started in the
 * background holds copies of the pipes, and the result comes at the latest STDIO_GRACE_MS after the
 * exit (or the deadline's kill) all the same. Such a process is left running: a caller may start a
 * daemon on purpose (nginx, pm2, a build step's own server), and it may still be starting up.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('runCommand needs a program to run');
  const limit = options.maxOutputBytes ?? 64 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // own process group, so a timeout can kill everything it started
    });
    const stdout = new TailBuffer(limit);
    const stderr = new TailBuffer(limit);
    let timedOut = false;
    const grace = new StdioGrace([child.stdout, child.stderr]);
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
          grace.start();
        }, options.timeoutMs)
      : undefined;
    child.stdout.on('data', (c: Buffer) => { stdout.push(c); options.onOutput?.('stdout', c); });
    child.stderr.on('data', (c: Buffer) => { stderr.push(c); options.onOutput?.('stderr', c); });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new SlipwayError('command_not_started', `could not run ${file}: ${error.message}`, {
        hint: `check that ${file} is installed and on PATH`,
        cause: error,
      }));
    });
    child.on('exit', () => {
      // In time: whatever still holds its output, the program did not time out.
      clearTimeout(timer);
      grace.start();
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      grace.stop();
      resolve({ argv, exitCode, signal, stdout: stdout.toString(), stderr: stderr.toString(), timedOut, outputHeld: grace.held });
    });
    child.stdin.on('error', () => { /* the program may exit without reading its input */ });
    child.stdin.end(options.input ?? '');
  });
}

/** For a build's log when `outputHeld`: why the step's output may end early, and what became of the process. */
export const LEFT_RUNNING = 'a process it started in the background still held its output; it was left running';

/** Last lines of a command's output, for error messages. */
export function outputTail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
