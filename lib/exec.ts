import { spawn } from 'node:child_process';
import { SlipwayError } from '../contract/errors.js';
import { TailBuffer } from './tail-buffer.js';

export interface CommandResult {
  argv: readonly string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Bytes of stdout/stderr kept (the tail); output beyond that is drained and dropped. */
  maxOutputBytes?: number;
  input?: string | Buffer;
  /** Called with every chunk as it arrives (to stream a build's output); must not throw. */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

/**
 * The one place Slipway runs local programs: always an argv array, never a shell, and with a
 * deadline after which the whole process group is killed (a child's children included).
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
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
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
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ argv, exitCode, signal, stdout: stdout.toString(), stderr: stderr.toString(), timedOut });
    });
    child.stdin.on('error', () => { /* the program may exit without reading its input */ });
    child.stdin.end(options.input ?? '');
  });
}

/** Last lines of a command's output, for error messages. */
export function outputTail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
