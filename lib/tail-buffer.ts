/** Keeps the last `limit` bytes of a stream: enough for an error message, bounded for chatty programs. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private total = 0;
  constructor(private readonly limit: number) {}

  /** Whether output was cut: the tail no longer starts at the first byte written. */
  get truncated(): boolean {
    return this.total > this.limit;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.total += chunk.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.limit && this.chunks.length > 1) {
      this.size -= this.chunks.shift()!.length;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}

/** The tail without its first, possibly cut, line (a cut line could hide a secret from redaction). */
export function wholeLines(tail: TailBuffer): string {
  const text = tail.toString();
  return tail.truncated ? text.slice(text.indexOf('\n') + 1) : text;
}
