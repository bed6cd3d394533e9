import { systemClock, type Clock } from './deps.js';

export interface WatchCheck {
  name: 'public' | 'slot' | 'process' | 'smoke';
  ok: boolean;
  /** What was seen, for the rollback reason: "HTTP 502", "restarts 0 → 1", ... */
  detail: string;
}

export interface WatchVerdict {
  ok: boolean;
  /** Consecutive failing rounds so far. */
  failingRounds: number;
  /** Set when the window failed: which check, what it saw. */
  reason: string | null;
}

/**
 * Pure: folds one round of checks into the running verdict. A round fails when any check fails;
 * `threshold` consecutive failing rounds fail the window, so one dropped probe does not roll back
 * a healthy release, while a crash (restart count up, which never recovers) always does.
 */
export function judgeRound(previous: WatchVerdict, round: WatchCheck[], threshold: number): WatchVerdict {
  const failed = round.filter((c) => !c.ok);
  if (failed.length === 0) return { ok: true, failingRounds: 0, reason: null };
  const failingRounds = previous.failingRounds + 1;
  const reason = `${failed.map((c) => `${c.name} check: ${c.detail}`).join('; ')} (${failingRounds} round(s) in a row)`;
  return { ok: failingRounds < threshold, failingRounds, reason };
}

export interface WatchOptions {
  windowMs: number;
  intervalMs: number;
  threshold: number;
  runChecks: () => Promise<WatchCheck[]>;
  onRound?: (round: WatchCheck[], verdict: WatchVerdict, elapsedMs: number) => void;
  clock?: Clock;
  /**
   * Aborted from outside (a fleet abort: another host failed), its reason a string: the window
   * ends at once, whether it sleeps between rounds or a round's checks are still out.
   */
  signal?: AbortSignal;
}

/** What `untilAborted` gives back when the signal fired first. */
const ABORTED: unique symbol = Symbol('aborted');

/**
 * `work`, or ABORTED as soon as `signal` aborts, whichever comes first. The listener is removed
 * once `work` settles, so a long window adds none per round. Work left behind is only read-only
 * checks: its result (or failure) is dropped.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T | typeof ABORTED> {
  if (!signal) return work;
  return new Promise<T | typeof ABORTED>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined);
      resolve(ABORTED);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error instanceof Error ? error : new Error(String(error))); },
    );
  });
}

/** Runs check rounds for the window; returns the first failing verdict, or ok after the window. */
export async function watchWindow(options: WatchOptions): Promise<WatchVerdict> {
  const clock = options.clock ?? systemClock;
  const { signal } = options;
  const started = clock.now();
  let verdict: WatchVerdict = { ok: true, failingRounds: 0, reason: null };
  const abortVerdict = (): WatchVerdict => ({ ok: false, failingRounds: 0, reason: `aborted: ${String(signal?.reason)}` });
  for (;;) {
    const roundStarted = clock.now();
    if (signal?.aborted) return abortVerdict();
    const round = await untilAborted(options.runChecks(), signal);
    if (round === ABORTED) return abortVerdict();
    verdict = judgeRound(verdict, round, options.threshold);
    options.onRound?.(round, verdict, clock.now() - started);
    if (!verdict.ok) return verdict;
    // A window that ends mid-streak runs on until the streak clears or reaches the threshold.
    if (clock.now() - started >= options.windowMs && verdict.failingRounds === 0) return verdict;
    await clock.sleep(Math.max(0, options.intervalMs - (clock.now() - roundStarted)), signal);
  }
}
