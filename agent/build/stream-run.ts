import { errorMessage } from '../../contract/errors.js';
import { LEFT_RUNNING, runCommand } from '../../lib/exec.js';
import { LineSplitter } from './plan.js';

/** How a streamed command ended, with the last lines of its output (stdout and stderr as they interleaved). */
export interface StreamedRun {
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Set when the program could not be started at all. */
  startError: string | null;
  tail: string[];
}

/**
 * Runs a command (argv, no shell, own process group killed at the deadline) and hands every line
 * of its output to `onLine` as it comes, keeping the last `tailLines` for an error.
 */
export async function runStreaming(argv: string[], options: {
  cwd: string; env: Record<string, string>; timeoutMs: number; onLine: (line: string) => void; tailLines?: number;
}): Promise<StreamedRun> {
  const max = options.tailLines ?? 20;
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > max) tail.shift();
    // Called from the child's stream events: a listener that throws (the state database full,
    // say) must not become an uncaught exception of the agent; the tail still has the line.
    try {
      options.onLine(line);
    } catch { /* the line stays in the tail */ }
  };
  const splitters = { stdout: new LineSplitter(keep), stderr: new LineSplitter(keep) };
  try {
    const result = await runCommand(argv, {
      cwd: options.cwd, env: options.env, timeoutMs: options.timeoutMs, maxOutputBytes: 16 * 1024,
      onOutput: (stream, chunk) => splitters[stream].push(chunk),
    });
    splitters.stdout.end();
    splitters.stderr.end();
    if (result.outputHeld) keep(`(${LEFT_RUNNING})`);
    return { ok: result.exitCode === 0 && !result.timedOut, exitCode: result.exitCode, signal: result.signal, timedOut: result.timedOut, startError: null, tail };
  } catch (error) {
    tail.push(errorMessage(error));
    return { ok: false, exitCode: null, signal: null, timedOut: false, startError: errorMessage(error), tail };
  }
}

/** "exited with code 1", "timed out after 5000 ms", "was killed by SIGKILL", "could not start: …". */
export function describeEnd(run: StreamedRun, timeoutMs: number): string {
  if (run.startError) return `could not start: ${run.startError}`;
  if (run.timedOut) return `timed out after ${timeoutMs} ms`;
  if (run.exitCode !== null) return `exited with code ${run.exitCode}`;
  return `was killed by ${run.signal ?? 'a signal'}`;
}
