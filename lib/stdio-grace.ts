import type { Readable } from 'node:stream';

/** How long a program's output pipes may stay open once it exited (or was killed at its deadline). */
export const STDIO_GRACE_MS = 2_000;

/**
 * Bounds the wait for a child's output pipes once the program itself is gone. A pipe ends only when
 * every process holding its write end has closed it, and a process the program started in the
 * background (`tool &`, a daemon that kept its stdio, one that left the group with setsid) holds it
 * for as long as it lives. `start()` (at the exit, at the deadline's kill) gives the pipes `graceMs`
 * to end: what is already in them is still read. Then it destroys those still open, so the child's
 * 'close' comes, and `held` says so. A pipe whose reader is still working through buffered output
 * (a slow consumer, not a holder) gets another grace. `stop()` once the child's 'close' came.
 */
export class StdioGrace {
  /** The grace ran out with a pipe still open: output written after that was not read. */
  held = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pipes: readonly (Readable | null)[], private readonly graceMs = STDIO_GRACE_MS) {}

  start(): void {
    this.timer ??= setTimeout(() => this.expire(), this.graceMs);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private expire(): void {
    const open = this.pipes.filter((pipe): pipe is Readable => pipe !== null && !pipe.destroyed && !pipe.readableEnded);
    if (open.some((pipe) => pipe.readableLength > 0)) {
      this.timer = setTimeout(() => this.expire(), this.graceMs);
      return;
    }
    if (open.length > 0) this.held = true;
    for (const pipe of open) pipe.destroy();
  }
}
