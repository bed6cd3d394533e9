import { rename, rm, stat } from 'node:fs/promises';

/**
 * Log rotation of the processes' PM2 log files, so app output cannot fill the disk. PM2's own
 * rotation is a module installed from the npm registry (pm2-logrotate), which a host may not
 * reach; this is the same scheme in the agent: when a file passes `maxBytes`, it is renamed to
 * <file>.1 (older ones shift to .2 … .<keep>, the oldest removed) and PM2 is told to reopen its
 * log files (reloadLogs). Renaming loses nothing: PM2 keeps writing into the renamed file until it
 * reopens the path, and a follower (agent/logs/follow.ts) reads the old file to its end first.
 */
export interface LogRotationSettings {
  /** A log file over this many bytes is rotated. */
  maxBytes: number;
  /** Rotated files kept per log file (<file>.1 … <file>.<keep>). */
  keep: number;
  /** How often the agent checks the sizes. */
  checkIntervalMs: number;
}

export const LOG_ROTATION_DEFAULTS: LogRotationSettings = { maxBytes: 10 * 1024 * 1024, keep: 5, checkIntervalMs: 30_000 };

export type RotationStep = { op: 'remove'; path: string } | { op: 'rename'; from: string; to: string };

/** Pure: the steps that rotate one file: drop the oldest, shift the others up by one, the file becomes .1. */
export function rotationSteps(file: string, keep: number): RotationStep[] {
  const steps: RotationStep[] = [{ op: 'remove', path: `${file}.${keep}` }];
  for (let n = keep - 1; n >= 1; n--) steps.push({ op: 'rename', from: `${file}.${n}`, to: `${file}.${n + 1}` });
  steps.push({ op: 'rename', from: file, to: `${file}.1` });
  return steps;
}

async function sizeOf(file: string): Promise<number | null> {
  try {
    return (await stat(file)).size;
  } catch {
    return null;
  }
}

/**
 * Rotates every file of `files` over the limit, then calls `reopen` (PM2's reloadLogs) once if any
 * was. Returns the files rotated. A missing file is skipped (a process with no output yet).
 */
export async function rotateLogs(files: Iterable<string>, settings: Pick<LogRotationSettings, 'maxBytes' | 'keep'>, reopen: () => Promise<void>): Promise<string[]> {
  const rotated: string[] = [];
  for (const file of new Set(files)) {
    const size = await sizeOf(file);
    if (size === null || size <= settings.maxBytes) continue;
    for (const step of rotationSteps(file, settings.keep)) {
      if (step.op === 'remove') await rm(step.path, { force: true });
      else await rename(step.from, step.to).catch((error: NodeJS.ErrnoException) => { if (error.code !== 'ENOENT') throw error; });
    }
    rotated.push(file);
  }
  if (rotated.length > 0) await reopen();
  return rotated;
}

/** What the rotation job needs from PM2 (Pm2Adapter): every process's log files, and reopening them. */
export interface LogFilesOwner {
  list(): Promise<{ outLog: string | null; errLog: string | null }[]>;
  reloadLogs(): Promise<void>;
}

/**
 * Checks the log files of every process of the agent's PM2 daemon (the apps', and the agent's own
 * when it runs there) every `checkIntervalMs`, one check at a time.
 */
export class LogRotationJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly pm2: LogFilesOwner, private readonly settings: LogRotationSettings, private readonly onError: (error: unknown) => void) {}

  start(): void {
    if (this.timer) return;
    let busy = false;
    this.timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.running = this.runOnce().catch(this.onError).finally(() => { busy = false; });
    }, this.settings.checkIntervalMs);
    this.timer.unref();
  }

  /** One check now: the files rotated. */
  async runOnce(): Promise<string[]> {
    const files = (await this.pm2.list()).flatMap((p) => [p.outLog, p.errLog]).filter((f): f is string => typeof f === 'string');
    return rotateLogs(files, this.settings, () => this.pm2.reloadLogs());
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running.catch(() => undefined);
  }
}
