/**
 * A small, bounded HTTP load generator for loopback tests: GETs at a steady rate over keep-alive
 * connections, counting every outcome. Nothing is hidden: a request that fails because nginx
 * closed an idle keep-alive connection during a reload, and then succeeds when sent again (as
 * browsers and HTTP clients retry idempotent requests on a reused connection), is counted as
 * `retriedAfterReset`, apart from plain successes and from real failures.
 */
import http from 'node:http';

export interface LoadOptions {
  /** A loopback URL (127.0.0.1, ::1 or localhost); anything else is refused. */
  url: string;
  /** Requests started per second. */
  rps: number;
  /** Hard upper bound on the run; at most 15 s. */
  maxDurationMs: number;
  /** Keep-alive sockets in the pool. */
  maxSockets?: number;
  /** Per-request deadline; a request that takes longer is a failure. */
  timeoutMs?: number;
  /** Response header whose values are tallied (e.g. x-slipway-slot). */
  tallyHeader?: string;
  /** Request headers of every request (e.g. the agent's probe secret, for nginx's markers). */
  headers?: Record<string, string>;
}

export interface LoadReport {
  durationMs: number;
  /** Requests started (retries not counted twice). */
  total: number;
  /** Answered 2xx on the first try. */
  ok: number;
  /** Failed with ECONNRESET / socket hang up on a reused keep-alive socket, then answered 2xx when sent again. */
  retriedAfterReset: number;
  /** Answered with a status other than 2xx (after a retry, if there was one). */
  non2xx: number;
  statusCounts: Record<string, number>;
  /** Failed without an answer, retry included. */
  errors: number;
  errorSamples: string[];
  /** Requests not started because `maxInFlight` were outstanding (the target is too slow). */
  skipped: number;
  achievedRps: number;
  latencyMs: { p50: number; p99: number; max: number };
  tally: Record<string, number>;
}

export interface LoadRun {
  /** Stops starting requests, waits for those in flight, and reports. */
  stop(): Promise<LoadReport>;
  /** Resolves with the report when maxDurationMs is reached (or stop() was called). */
  done: Promise<LoadReport>;
}

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);
const MAX_DURATION_MS = 60_000;
const TICK_MS = 10;
/**
 * Requests started and not yet answered before the generator skips one (a bound on its memory,
 * not a part of the schedule): 4 s of answers at 250 rps. On a loaded 2-core machine the answers
 * around a switch took up to 1.5 s (p99 1.4 s at load 11), which filled the old cap of 256 and made
 * the generator skip its schedule, failing RELIABILITY 19 on the generator, not on Slipway.
 */
const MAX_IN_FLIGHT = 1_024;

interface Outcome { status?: number; error?: NodeJS.ErrnoException; reused: boolean; header?: string }

/** `agent: false` sends on a fresh connection of its own. */
function once(agent: http.Agent | false, url: URL, options: { timeoutMs: number; tallyHeader?: string; headers?: Record<string, string> }): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: Outcome) => { if (!settled) { settled = true; resolve(outcome); } };
    const req = http.get(url, { agent, timeout: options.timeoutMs, headers: options.headers ?? {} }, (res) => {
      const header = options.tallyHeader ? res.headers[options.tallyHeader.toLowerCase()] : undefined;
      res.resume();
      res.on('end', () => finish({ status: res.statusCode ?? 0, reused: req.reusedSocket, ...(typeof header === 'string' ? { header } : {}) }));
      res.on('error', (error) => finish({ error, reused: req.reusedSocket }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) => finish({ error, reused: req.reusedSocket }));
  });
}

/** The race a reload opens: the server closed an idle keep-alive socket as we sent on it. */
function isResetOfReusedSocket(outcome: Outcome): boolean {
  return outcome.reused && outcome.error !== undefined
    && (outcome.error.code === 'ECONNRESET' || outcome.error.message === 'socket hang up' || outcome.error.code === 'EPIPE');
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function startLoad(options: LoadOptions): LoadRun {
  const url = new URL(options.url);
  if (!LOOPBACK.has(url.hostname)) throw new Error(`load generator: ${url.hostname} is not a loopback address`);
  if (options.maxDurationMs > MAX_DURATION_MS) throw new Error(`load generator: runs are limited to ${MAX_DURATION_MS} ms`);
  if (!(options.rps > 0 && options.rps <= 2_000)) throw new Error('load generator: rps must be in (0, 2000]');
  const timeoutMs = options.timeoutMs ?? 5_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 16 });
  const report: LoadReport = {
    durationMs: 0, total: 0, ok: 0, retriedAfterReset: 0, non2xx: 0, statusCounts: {}, errors: 0, errorSamples: [],
    skipped: 0, achievedRps: 0, latencyMs: { p50: 0, p99: 0, max: 0 }, tally: {},
  };
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveDone!: (r: LoadReport) => void;
  const done = new Promise<LoadReport>((resolve) => { resolveDone = resolve; });

  const record = (outcome: Outcome, retried: boolean, since: number) => {
    if (outcome.status !== undefined) {
      latencies.push(performance.now() - since);
      report.statusCounts[outcome.status] = (report.statusCounts[outcome.status] ?? 0) + 1;
      if (outcome.header !== undefined) report.tally[outcome.header] = (report.tally[outcome.header] ?? 0) + 1;
      if (outcome.status >= 200 && outcome.status < 300) {
        if (retried) report.retriedAfterReset += 1;
        else report.ok += 1;
      } else {
        report.non2xx += 1;
      }
      return;
    }
    report.errors += 1;
    if (report.errorSamples.length < 10) report.errorSamples.push(`${outcome.error?.code ?? ''} ${outcome.error?.message ?? ''}${retried ? ' (on retry)' : ''}`.trim());
  };

  const fire = () => {
    report.total += 1;
    const since = performance.now();
    const task = (async () => {
      const first = await once(agent, url, { timeoutMs, ...(options.tallyHeader ? { tallyHeader: options.tallyHeader } : {}), ...(options.headers ? { headers: options.headers } : {}) });
      if (isResetOfReusedSocket(first)) {
        // Sent again on a fresh connection, as a browser would (another pooled socket may have been
        // closed by the same reload); counted apart from plain successes.
        const second = await once(false, url, { timeoutMs, ...(options.tallyHeader ? { tallyHeader: options.tallyHeader } : {}), ...(options.headers ? { headers: options.headers } : {}) });
        record(second, true, since);
      } else {
        record(first, false, since);
      }
    })();
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
  };

  const finish = async (): Promise<LoadReport> => {
    stopping = true;
    clearTimeout(timer);
    const elapsed = performance.now() - started;
    await Promise.all([...inFlight]);
    agent.destroy();
    latencies.sort((a, b) => a - b);
    report.durationMs = Math.round(elapsed);
    report.achievedRps = Math.round(report.total / (elapsed / 1000));
    report.latencyMs = { p50: Math.round(percentile(latencies, 50)), p99: Math.round(percentile(latencies, 99)), max: Math.round(latencies.at(-1) ?? 0) };
    resolveDone(report);
    return report;
  };

  const tick = () => {
    if (stopping) return;
    const elapsed = performance.now() - started;
    if (elapsed >= options.maxDurationMs) {
      void finish();
      return;
    }
    // Catch up to the schedule: the number of requests that should have started by now.
    const due = Math.floor((elapsed / 1000) * options.rps) - report.total - report.skipped;
    for (let i = 0; i < due; i++) {
      if (inFlight.size >= MAX_IN_FLIGHT) report.skipped += 1;
      else fire();
    }
    timer = setTimeout(tick, TICK_MS);
  };
  tick();

  let finishing: Promise<LoadReport> | undefined;
  return {
    stop: () => (stopping ? done : (finishing ??= finish())),
    done,
  };
}

/** One GET on its own connection, for the long request that must outlive a switch. */
export function longRequest(url: string, timeoutMs: number): Promise<{ status: number; body: string; ms: number; headers: http.IncomingHttpHeaders }> {
  const parsed = new URL(url);
  if (!LOOPBACK.has(parsed.hostname)) return Promise.reject(new Error(`${parsed.hostname} is not a loopback address`));
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(parsed, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: Math.round(performance.now() - started), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
