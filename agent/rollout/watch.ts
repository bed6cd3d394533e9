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
  /** Why the window was cut short from outside (a fleet abort), else null: checked every round. */
  aborted?: () => string | null;
}

/** Runs check rounds for the window; returns the first failing verdict, or ok after the window. */
export async function watchWindow(options: WatchOptions): Promise<WatchVerdict> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  let verdict: WatchVerdict = { ok: true, failingRounds: 0, reason: null };
  const abortVerdict = (): WatchVerdict | null => {
    const reason = options.aborted?.() ?? null;
    return reason === null ? null : { ok: false, failingRounds: 0, reason: `aborted: ${reason}` };
  };
  for (;;) {
    const roundStarted = clock.now();
    const before = abortVerdict();
    if (before) return before;
    const round = await options.runChecks();
    verdict = judgeRound(verdict, round, options.threshold);
    options.onRound?.(round, verdict, clock.now() - started);
    if (!verdict.ok) return verdict;
    // A window that ends mid-streak runs on until the streak clears or reaches the threshold.
    if (clock.now() - started >= options.windowMs && verdict.failingRounds === 0) return verdict;
    await clock.sleep(Math.max(0, options.intervalMs - (clock.now() - roundStarted)));
  }
}
