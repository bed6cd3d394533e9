import { parse, type ParsedFields } from 'node-cron';
import { SlipwayError, errorMessage } from '../contract/errors.js';

// node-cron parses and validates the expressions (the config is checked with it, so the syntax
// accepted is exactly node-cron's), but its matcher reads the local time through
// Intl.DateTimeFormat on every computation, and the first Intl formatter pages in ~5 MB of ICU
// data and code from the node binary: more than the rest of the retention job's cost in the
// agent's resident memory. The local time here comes from Date's own getters instead, with
// node-cron's semantics: all six fields must match (day of month AND day of week), L / nW / LW /
// L-n in the day of month, nL and n#k in the day of week; a local time that does not exist (a DST
// gap) never matches, and one that exists twice (the hour repeated when DST ends) fires once, at
// its second occurrence.

const MAX_DAYS = 366 * 100;
/** setTimeout's largest delay; a later run is re-armed when this one fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DAY_OF_MONTH_WEEKDAY = /^(\d{1,2}|L)W$/;
const DAY_OF_MONTH_FROM_LAST = /^L-(\d{1,2})$/;
const LAST_WEEKDAY_OF_MONTH = /^([0-7])L$/;
const NTH_WEEKDAY_OF_MONTH = /^([0-7])#([1-5])$/;

export interface CronSchedule {
  readonly expression: string;
  readonly fields: ParsedFields;
}

/** Parses a node-cron expression (5 fields, or 6 with seconds first, or a nickname like @daily). */
export function parseCron(expression: string): CronSchedule {
  try {
    return { expression, fields: parse(expression) };
  } catch (error) {
    throw new SlipwayError('cron_invalid', `"${expression}" is not a valid cron expression: ${errorMessage(error)}`, {
      status: 500, hint: 'fix the schedule in the agent config (e.g. "0 3 * * *" for 03:00 daily)', cause: error,
    });
  }
}

function lastDayOfMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function weekdayOf(year: number, month: number, day: number): number {
  return new Date(Date.UTC(year, month - 1, day)).getUTCDay();
}

/** The weekday (Mon-Fri) nearest to `target` within the same month, as Quartz's "nW". */
function nearestWeekday(year: number, month: number, target: number): number {
  const last = lastDayOfMonth(year, month);
  if (target < 1 || target > last) return -1;
  const weekday = weekdayOf(year, month, target);
  if (weekday === 6) return target === 1 ? target + 2 : target - 1;
  if (weekday === 0) return target === last ? target - 2 : target + 1;
  return target;
}

function matchesDayOfMonth(field: readonly (number | string)[], year: number, month: number, day: number): boolean {
  for (const value of field) {
    if (value === day) return true;
    if (typeof value !== 'string') continue;
    if (value === 'L' && day === lastDayOfMonth(year, month)) return true;
    const weekday = DAY_OF_MONTH_WEEKDAY.exec(value);
    if (weekday) {
      const target = weekday[1] === 'L' ? lastDayOfMonth(year, month) : Number(weekday[1]);
      if (nearestWeekday(year, month, target) === day) return true;
    }
    const fromLast = DAY_OF_MONTH_FROM_LAST.exec(value);
    if (fromLast) {
      const target = lastDayOfMonth(year, month) - Number(fromLast[1]);
      if (target >= 1 && target === day) return true;
    }
  }
  return false;
}

function matchesDayOfWeek(field: readonly (number | string)[], year: number, month: number, day: number): boolean {
  const weekday = weekdayOf(year, month, day);
  for (const value of field) {
    if (value === weekday) return true;
    if (typeof value !== 'string') continue;
    const nth = NTH_WEEKDAY_OF_MONTH.exec(value);
    if (nth) {
      if (Number(nth[1]) % 7 === weekday && Math.floor((day - 1) / 7) + 1 === Number(nth[2])) return true;
      continue;
    }
    const last = LAST_WEEKDAY_OF_MONTH.exec(value);
    if (last && Number(last[1]) % 7 === weekday && day + 7 > lastDayOfMonth(year, month)) return true;
  }
  return false;
}

/** The instant a local wall-clock time denotes (its later one if it occurs twice), or null if it does not exist. */
function localInstant(year: number, month: number, day: number, hour: number, minute: number, second: number): number | null {
  // Date picks the earlier instant of a repeated time, and moves a time in a gap forward.
  const first = new Date(year, month - 1, day, hour, minute, second);
  if (first.getDate() !== day || first.getHours() !== hour || first.getMinutes() !== minute) return null;
  // When the offset grows shorter within the next hours (DST ends), the same wall time recurs that much later.
  const repeatMs = (first.getTimezoneOffset() - new Date(first.getTime() + 6 * 3_600_000).getTimezoneOffset()) * -60_000;
  if (repeatMs > 0) {
    const repeated = new Date(first.getTime() + repeatMs);
    if (repeated.getDate() === day && repeated.getHours() === hour && repeated.getMinutes() === minute) return repeated.getTime();
  }
  return first.getTime();
}

function ascending(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** The first time the schedule fires strictly after `after` (whole seconds, local time). */
export function nextCronRun(schedule: CronSchedule, after: Date): Date {
  const { fields } = schedule;
  const seconds = ascending(fields.second);
  const minutes = ascending(fields.minute);
  const hours = ascending(fields.hour);
  const baseMs = Math.floor(after.getTime() / 1000) * 1000;
  const base = new Date(baseMs);
  const baseSecondOfDay = base.getHours() * 3600 + base.getMinutes() * 60 + base.getSeconds();
  // Days are walked as calendar dates (UTC arithmetic), so a DST change never skips or repeats one.
  const cursor = new Date(Date.UTC(base.getFullYear(), base.getMonth(), base.getDate()));
  for (let i = 0; i < MAX_DAYS; i++, cursor.setUTCDate(cursor.getUTCDate() + 1)) {
    const year = cursor.getUTCFullYear();
    const month = cursor.getUTCMonth() + 1;
    const day = cursor.getUTCDate();
    if (!fields.month.includes(month) || !matchesDayOfMonth(fields.dayOfMonth, year, month, day)
      || !matchesDayOfWeek(fields.dayOfWeek, year, month, day)) continue;
    for (const hour of hours) {
      if (i === 0 && (hour + 1) * 3600 <= baseSecondOfDay) continue;
      for (const minute of minutes) {
        for (const second of seconds) {
          if (i === 0 && hour * 3600 + minute * 60 + second <= baseSecondOfDay) continue;
          const at = localInstant(year, month, day, hour, minute, second);
          if (at !== null && at > baseMs) return new Date(at);
        }
      }
    }
  }
  throw new SlipwayError('cron_never', `the cron expression "${schedule.expression}" never fires within ${MAX_DAYS / 366} years`, {
    status: 500, hint: 'fix the schedule in the agent config',
  });
}

export interface CronJobOptions {
  /** Skip a tick while the previous run of this job has not finished. */
  noOverlap?: boolean;
  /** Called with what a run threw or rejected with. */
  onError: (error: unknown) => void;
}

/** Runs `task` on a cron schedule until stop(); the timer never keeps the process alive on its own. */
export class CronJob {
  private timer: NodeJS.Timeout | undefined;
  private next: Date | null = null;
  private running = false;
  private stopped = false;

  constructor(private readonly schedule: CronSchedule, private readonly task: () => unknown, private readonly options: CronJobOptions) {
    this.arm(new Date());
  }

  static start(expression: string, task: () => unknown, options: CronJobOptions): CronJob {
    return new CronJob(parseCron(expression), task, options);
  }

  /** When the job fires next; null once stopped. */
  nextRun(): Date | null {
    return this.next;
  }

  stop(): void {
    this.stopped = true;
    this.next = null;
    clearTimeout(this.timer);
  }

  private arm(after: Date): void {
    if (this.stopped) return;
    const next = nextCronRun(this.schedule, after);
    this.next = next;
    this.wait(next);
  }

  private wait(next: Date): void {
    this.timer = setTimeout(() => this.tick(next), Math.min(MAX_TIMER_MS, Math.max(0, next.getTime() - Date.now())));
    this.timer.unref();
  }

  private tick(due: Date): void {
    if (this.stopped) return;
    // A delay longer than setTimeout allows, or a timer that fired a little early: wait on.
    if (Date.now() < due.getTime()) return this.wait(due);
    // A tick that came late (a blocked event loop, a suspended VM) runs once; missed ones are not replayed.
    this.arm(new Date(Math.max(Date.now(), due.getTime())));
    if (this.running && this.options.noOverlap) return;
    this.running = true;
    let result: unknown;
    try {
      result = this.task();
    } catch (error) {
      this.running = false;
      this.options.onError(error);
      return;
    }
    void Promise.resolve(result).then(
      () => { this.running = false; },
      (error: unknown) => { this.running = false; this.options.onError(error); },
    );
  }
}
