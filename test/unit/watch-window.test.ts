import { describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../agent/rollout/deps.js';
import { watchWindow, type WatchCheck, type WatchVerdict } from '../../agent/rollout/watch.js';

/**
 * A clock whose sleeps end only when the test moves time on (or their signal aborts), so a test
 * can see what the watch window does while it sleeps between rounds.
 */
class ManualClock implements Clock {
  private t = 0;
  private sleepers: { until: number; wake: () => void }[] = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      const sleeper = {
        until: this.t + ms,
        wake: () => {
          this.sleepers = this.sleepers.filter((s) => s !== sleeper);
          signal?.removeEventListener('abort', sleeper.wake);
          resolve();
        },
      };
      this.sleepers.push(sleeper);
      signal?.addEventListener('abort', sleeper.wake, { once: true });
    });
  }
  advance(ms: number): void {
    this.t += ms;
    for (const s of this.sleepers.filter((x) => x.until <= this.t)) s.wake();
  }
  get sleeping(): number {
    return this.sleepers.length;
  }
}

/** Lets every pending promise reaction run (no time passes on any clock). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const OK: WatchCheck[] = [{ name: 'public', ok: true, detail: 'HTTP 200' }];

/** Starts a window and tracks whether it has ended. */
function start(clock: ManualClock, signal: AbortSignal, runChecks: () => Promise<WatchCheck[]>) {
  let verdict: WatchVerdict | null = null;
  const done = watchWindow({ windowMs: 60_000, intervalMs: 1_000, threshold: 3, clock, runChecks, signal }).then((v) => { verdict = v; return v; });
  return { done, verdict: () => verdict };
}

describe('the watch window and a fleet abort (issue 15: fleet revert)', () => {
  it('an abort while the window sleeps between rounds ends it at once, not at the next round', async () => {
    const clock = new ManualClock();
    const abort = new AbortController();
    let rounds = 0;
    const window = start(clock, abort.signal, async () => { rounds++; return OK; });
    await settle();
    expect(rounds).toBe(1);
    expect(clock.sleeping).toBe(1);
    clock.advance(1_000);
    await settle();
    expect(rounds).toBe(2);

    abort.abort('h3: its watch window failed');
    await settle();
    // No time passed on the clock: the sleep was cut short, and no further round ran.
    expect(window.verdict()).toEqual({ ok: false, failingRounds: 0, reason: 'aborted: h3: its watch window failed' });
    expect(clock.now()).toBe(1_000);
    expect(rounds).toBe(2);
    expect(clock.sleeping).toBe(0);
  });

  it('an abort while a round\'s checks are still out ends the window without waiting for them (their result is dropped)', async () => {
    const clock = new ManualClock();
    const abort = new AbortController();
    let answer: (round: WatchCheck[]) => void = () => undefined;
    let judged = 0;
    const window = watchWindow({
      windowMs: 60_000, intervalMs: 1_000, threshold: 1, clock, signal: abort.signal,
      runChecks: () => new Promise<WatchCheck[]>((resolve) => { answer = resolve; }),
      onRound: () => { judged++; },
    });
    await settle();
    abort.abort('h1 failed');
    expect(await window).toEqual({ ok: false, failingRounds: 0, reason: 'aborted: h1 failed' });
    // A failing answer arriving afterwards changes nothing.
    answer([{ name: 'public', ok: false, detail: 'HTTP 502' }]);
    await settle();
    expect(judged).toBe(0);
  });

  it('without an abort the window runs its rounds to the end (the abort listener does not pile up)', async () => {
    const clock = new ManualClock();
    const abort = new AbortController();
    let rounds = 0;
    const window = start(clock, abort.signal, async () => { rounds++; return OK; });
    for (let i = 0; i < 60; i++) {
      await settle();
      clock.advance(1_000);
    }
    expect(await window.done).toEqual({ ok: true, failingRounds: 0, reason: null });
    expect(rounds).toBe(61);
  });

  it('an abort asked before the window opens ends it before any round', async () => {
    const abort = new AbortController();
    abort.abort('h2 failed its health gate');
    let rounds = 0;
    const verdict = await watchWindow({ windowMs: 60_000, intervalMs: 1_000, threshold: 3, clock: new ManualClock(), signal: abort.signal, runChecks: async () => { rounds++; return OK; } });
    expect(verdict.reason).toBe('aborted: h2 failed its health gate');
    expect(rounds).toBe(0);
  });

  it('the system clock\'s sleep ends when its signal aborts (a long interval is not waited out)', async () => {
    const abort = new AbortController();
    const sleeping = systemClock.sleep(3_600_000, abort.signal);
    abort.abort('stop');
    await sleeping;
    await systemClock.sleep(3_600_000, abort.signal);
  });
});
