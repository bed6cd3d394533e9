import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTask } from 'node-cron';
import { CronJob, nextCronRun, parseCron } from '../../agent/cron.js';
import { expectSlipwayError } from '../helpers/expect-error.js';

// A zone with DST, so the gap and the overlap are exercised; set before node-cron builds (and
// caches) its Intl formatter in this process.
const savedTz = process.env.TZ;
beforeAll(() => { process.env.TZ = 'Europe/Paris'; });
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

/** node-cron's own matcher (Intl-based): the reference the agent's matcher must agree with. */
function nodeCronNext(expression: string, after: Date): Date {
  const task = createTask(expression, () => undefined) as unknown as { timeMatcher: { getNextMatch(d: Date): Date }; destroy(): void };
  try {
    return task.timeMatcher.getNextMatch(after);
  } finally {
    task.destroy();
  }
}

const EXPRESSIONS = [
  '17 * * * *', '0 3 * * *', '*/15 9-17 * * mon-fri', '0 0 L * *', '0 12 15W * *', '0 12 1W * *', '0 12 LW * *',
  '30 6 L-3 * *', '0 0 * * 5L', '0 9 * * 1#2', '@daily', '@weekly', '@monthly', '0 0 1,15 jan,jul sun', '0 0 * * 7',
  '0 0 ? * *', '*/20 * * * * *', '5 4 3 2 *', '0 0 29 2 *', '0 0 29 2 1', '0 2-3 * * *', '30 2 * * *', '59 23 31 12 *',
];
const BASES = ['2025-01-01T00:00:00Z', '2025-03-30T00:59:59.500Z', '2025-03-30T01:30:00Z', '2025-10-26T00:30:00Z',
  '2025-10-26T01:15:00Z', '2025-02-28T22:59:59Z', '2025-12-31T22:59:00Z', '2025-06-15T10:17:00Z'];

describe('cron schedule (node-cron syntax, Date-based matcher)', () => {
  it('agrees with node-cron\'s own matcher across the syntax, month ends, leap days and both DST changes', () => {
    const mismatches: string[] = [];
    for (const expression of EXPRESSIONS) {
      const schedule = parseCron(expression);
      for (const base of BASES) {
        let after = new Date(base);
        // A few consecutive runs: each from the previous one, as the job re-arms.
        for (let i = 0; i < 4; i++) {
          const ours = nextCronRun(schedule, after);
          const theirs = nodeCronNext(expression, after);
          if (ours.getTime() !== theirs.getTime()) mismatches.push(`${expression} after ${after.toISOString()}: ${ours.toISOString()} vs node-cron ${theirs.toISOString()}`);
          after = theirs;
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('never fires at a local time that does not exist, and fires an hourly job every hour across the DST changes', () => {
    // 2025-03-30 02:30 does not exist in Paris: the next 02:30 is the day after.
    expect(nextCronRun(parseCron('30 2 * * *'), new Date('2025-03-29T02:00:00Z')).toISOString()).toBe('2025-03-31T00:30:00.000Z');
    const hourly = parseCron('17 * * * *');
    const runs: string[] = [];
    for (let at = new Date('2025-03-29T23:00:00Z'), i = 0; i < 4; i++) runs.push((at = nextCronRun(hourly, at)).toISOString());
    expect(runs).toEqual(['2025-03-29T23:17:00.000Z', '2025-03-30T00:17:00.000Z', '2025-03-30T01:17:00.000Z', '2025-03-30T02:17:00.000Z']);
  });

  it('refuses an expression node-cron refuses, naming it', async () => {
    for (const bad of ['61 * * * *', '* * *', '0 0 31 2 *', 'every day']) {
      const error = await expectSlipwayError((async () => parseCron(bad))(), 'cron_invalid');
      expect(error.message).toContain(`"${bad}"`);
    }
  });
});

describe('CronJob', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('runs on schedule, re-arms, skips a tick while a noOverlap run is still going, and stops', async () => {
    vi.useFakeTimers({ now: new Date('2025-05-01T10:00:30Z') });
    let runs = 0;
    let finish: () => void = () => undefined;
    const errors: unknown[] = [];
    const job = CronJob.start('* * * * *', () => {
      runs += 1;
      return new Promise<void>((resolve) => { finish = resolve; });
    }, { noOverlap: true, onError: (e) => errors.push(e) });
    expect(job.nextRun()?.toISOString()).toBe('2025-05-01T10:01:00.000Z');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(runs).toBe(1);
    expect(job.nextRun()?.toISOString()).toBe('2025-05-01T10:02:00.000Z');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toBe(1);
    finish();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toBe(2);
    job.stop();
    expect(job.nextRun()).toBeNull();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(runs).toBe(2);
    expect(errors).toEqual([]);
  });

  it('overlaps by default, and hands a failed run to onError without stopping', async () => {
    vi.useFakeTimers({ now: new Date('2025-05-01T10:00:00Z') });
    const errors: unknown[] = [];
    let runs = 0;
    const job = CronJob.start('*/10 * * * * *', () => {
      runs += 1;
      if (runs === 2) throw new Error('boom');
      return runs === 3 ? Promise.reject(new Error('async boom')) : new Promise(() => undefined);
    }, { onError: (e) => errors.push(e) });
    await vi.advanceTimersByTimeAsync(40_000);
    job.stop();
    expect(runs).toBe(4);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom', 'async boom']);
  });

  it('waits out a run further away than setTimeout\'s largest delay', async () => {
    vi.useFakeTimers({ now: new Date('2025-01-01T00:00:00Z') });
    let runs = 0;
    const job = CronJob.start('0 0 1 3 *', () => { runs += 1; }, { onError: () => undefined });
    await vi.advanceTimersByTimeAsync(2 ** 31); // ~24.9 days: the first timer fires early and re-waits
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(Date.parse('2025-03-01T00:00:00+01:00') - Date.now() + 1);
    expect(runs).toBe(1);
    job.stop();
  });
});
