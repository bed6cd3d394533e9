// Watches which release answers a URL, the way a stream of new visitors would: a GET on a fresh
// connection every few milliseconds, whatever the previous one is still doing (so a slow answer
// never hides a gap), each recorded with when it was sent and answered.
import http from 'node:http';
import { sameCommit, type Sample } from './stats.js';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with the agent's timestamps. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface PollerOptions {
  intervalMs: number;
  /** A probe unanswered after this long counts as a miss. */
  timeoutMs?: number;
  /** Probes allowed in flight; a tick that would exceed it is skipped (and counted). */
  maxInFlight?: number;
  /** Extra request headers (e.g. Host, for an app routed by server name). */
  headers?: Record<string, string>;
}

export class ReleasePoller {
  readonly samples: Sample[] = [];
  skipped = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private running = false;
  private waiters: (() => void)[] = [];
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly headers: Record<string, string>;

  constructor(private readonly url: string, options: PollerOptions) {
    this.intervalMs = options.intervalMs;
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.maxInFlight = options.maxInFlight ?? 16;
    this.headers = options.headers ?? {};
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    let next = epochMs();
    const tick = () => {
      if (!this.running) return;
      if (this.inFlight < this.maxInFlight) this.probe();
      else this.skipped += 1;
      // Scheduled against the clock, so timer lateness does not accumulate into a slower rate.
      next += this.intervalMs;
      const now = epochMs();
      if (next < now) next = now;
      this.timer = setTimeout(tick, next - now);
    };
    tick();
    return this;
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    const deadline = Date.now() + this.timeoutMs + 500;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    this.notify();
  }

  /** The first sample sent at or after `since` for which `match` holds; rejects after `timeoutMs`. */
  async waitFor(match: (s: Sample) => boolean, since: number, timeoutMs: number, description: string): Promise<Sample> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0;
    for (;;) {
      for (; checked < this.samples.length; checked++) {
        const s = this.samples[checked]!;
        if (s.sentAt >= since && match(s)) return s;
      }
      if (Date.now() >= deadline) {
        const last = this.samples[this.samples.length - 1];
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${description} at ${this.url}; last probe: ${last ? `status ${last.status} release ${last.release ?? '-'} ${last.error ?? ''}` : 'none'}`);
      }
      if (!this.running) throw new Error(`poller of ${this.url} stopped while waiting for ${description}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, Math.min(50, deadline - Date.now())));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  waitForRelease(release: string, since: number, timeoutMs: number): Promise<Sample> {
    return this.waitFor((s) => s.status === 200 && sameCommit(s.release, release), since, timeoutMs, `release ${release.slice(0, 12)}`);
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private probe(): void {
    this.inFlight += 1;
    const sentAt = epochMs();
    const record = (status: number, release: string | null, error: string | null) => {
      this.inFlight -= 1;
      this.samples.push({ sentAt, doneAt: epochMs(), status, release, error });
      this.notify();
    };
    let settled = false;
    const once = (status: number, release: string | null, error: string | null) => {
      if (settled) return;
      settled = true;
      record(status, release, error);
    };
    const req = http.get(this.url, { agent: false, headers: { ...this.headers, connection: 'close' }, timeout: this.timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { if (body.length < 4096) body += chunk; });
      res.on('error', (error) => once(res.statusCode ?? 0, null, error.message));
      res.on('end', () => {
        let release: string | null = null;
        if (res.statusCode === 200) {
          try {
            const parsed = JSON.parse(body) as { release?: unknown };
            release = typeof parsed.release === 'string' ? parsed.release : null;
          } catch {
            release = null;
          }
        }
        once(res.statusCode ?? 0, release, null);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
    req.on('error', (error) => once(0, null, error.message));
  }
}
