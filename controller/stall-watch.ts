/**
 * Pure: whether a transfer is stalled, and for how long, from the byte count and the clock.
 * SSH keepalives cannot see this: when the receiving process stops reading (stopped, hung on a
 * disk), sshd still answers them, the link looks healthy, and only the byte count stands still.
 */
export class StallWatch {
  private bytes = 0;
  private lastProgressAt: number;

  constructor(readonly limitMs: number, startedAt: number) {
    this.lastProgressAt = startedAt;
  }

  /** Records the running total of bytes accepted so far. */
  progress(totalBytes: number, now: number): void {
    if (totalBytes <= this.bytes) return;
    this.bytes = totalBytes;
    this.lastProgressAt = now;
  }

  stalledMs(now: number): number {
    return Math.max(0, now - this.lastProgressAt);
  }

  expired(now: number): boolean {
    return this.stalledMs(now) >= this.limitMs;
  }
}
