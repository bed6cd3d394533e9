// Pure helpers of the benchmark: summaries of repeated measurements and the analysis of what a
// poller saw while traffic moved from one release to another. No I/O here.

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** Nearest-rank 95th percentile (equals max for fewer than 20 values). */
  p95: number;
}

/** Value at the nearest rank for `p` (0..100) of an ascending array; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Median (mean of the middle two for an even count), min, max, p95; null for no values. */
export function summarize(values: readonly number[]): Summary | null {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, median, min: sorted[0]!, max: sorted[sorted.length - 1]!, p95: percentile(sorted, 95) };
}

/** slipway / baseline of the medians; null when either is missing or the baseline is 0. */
export function ratioOf(slipway: Summary | null, baseline: Summary | null): number | null {
  if (!slipway || !baseline || baseline.median === 0) return null;
  return slipway.median / baseline.median;
}

/** MB/s (10^6 bytes) for `bytes` moved in `ms`. */
export function throughput(bytes: number, ms: number): number {
  return ms > 0 ? bytes / 1e6 / (ms / 1000) : Number.NaN;
}

/** One probe of the poller: a GET on a fresh connection. Times are epoch milliseconds (fractional). */
export interface Sample {
  sentAt: number;
  doneAt: number;
  status: number;
  /** The release the app reported in its body, for a 200; null otherwise. */
  release: string | null;
  error: string | null;
}

export interface Transition {
  /** doneAt of the first answer from the new release after `from`, minus `from`; null if none. */
  firstMs: number | null;
  /** Like firstMs, but for the first new answer after which the old release never answered again. */
  settledMs: number | null;
  /** Probes in the window answered by neither release (error, non-200 or another release). */
  misses: number;
  /** Longest stretch in which neither release answered, from a failed probe to the next good one. */
  maxGapMs: number;
  /** Probes sent in the window. */
  probes: number;
}

/**
 * Whether a reported release is the expected one. Slipway's apps report release ids
 * (<commit12>-<content digest12>), the baselines the full commit SHA: both start with the commit,
 * so a label of at least 12 hex characters matches another one starting with the same 12.
 */
export function sameCommit(reported: string | null, expected: string | null): boolean {
  if (reported === null || expected === null) return false;
  if (reported === expected) return true;
  return /^[0-9a-f]{12}/.test(reported) && /^[0-9a-f]{12}/.test(expected) && reported.slice(0, 12) === expected.slice(0, 12);
}

/**
 * What clients saw while traffic moved from `oldRelease` to `newRelease`, from the samples sent in
 * [from, to]. A gap runs from the first probe that neither release answered to the next probe
 * either did answer (or `to`).
 */
export function analyzeTransition(
  samples: readonly Sample[],
  window: { from: number; to: number; oldRelease: string | null; newRelease: string },
): Transition {
  const inWindow = samples.filter((s) => s.sentAt >= window.from && s.sentAt <= window.to).sort((a, b) => a.sentAt - b.sentAt);
  const isNew = (s: Sample) => s.status === 200 && sameCommit(s.release, window.newRelease);
  const isOld = (s: Sample) => window.oldRelease !== null && s.status === 200 && sameCommit(s.release, window.oldRelease);
  let firstMs: number | null = null;
  let misses = 0;
  let maxGapMs = 0;
  let gapStart: number | null = null;
  let lastOldIndex = -1;
  inWindow.forEach((s, i) => {
    if (isOld(s)) lastOldIndex = i;
  });
  let settledMs: number | null = null;
  inWindow.forEach((s, i) => {
    const good = isNew(s) || isOld(s);
    if (!good) {
      misses += 1;
      gapStart ??= s.sentAt;
    } else if (gapStart !== null) {
      maxGapMs = Math.max(maxGapMs, s.sentAt - gapStart);
      gapStart = null;
    }
    if (isNew(s)) {
      firstMs ??= s.doneAt - window.from;
      if (settledMs === null && i > lastOldIndex) settledMs = s.doneAt - window.from;
    }
  });
  if (gapStart !== null) maxGapMs = Math.max(maxGapMs, window.to - gapStart);
  return { firstMs, settledMs, misses, maxGapMs, probes: inWindow.length };
}

export interface WrkResult {
  requests: number;
  durationS: number;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
}

/** Parses wrk's summary ("N requests in Xs", "Socket errors: ...", "Non-2xx or 3xx responses: N"). */
export function parseWrk(output: string): WrkResult | null {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)\b/.exec(output);
  if (!total) return null;
  const scale: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60 };
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  return {
    requests: Number(total[1]),
    durationS: Number(total[2]) * (scale[total[3]!] ?? 1),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: {
      connect: errors ? Number(errors[1]) : 0,
      read: errors ? Number(errors[2]) : 0,
      write: errors ? Number(errors[3]) : 0,
      timeout: errors ? Number(errors[4]) : 0,
    },
  };
}

export function totalSocketErrors(result: WrkResult): number {
  const e = result.socketErrors;
  return e.connect + e.read + e.write + e.timeout;
}
