import type { LogEntry, LogStream } from '../../contract/api.js';

/**
 * PM2 writes each line of a process's output with this date prefix ("<date>: <line>"; in cluster
 * mode once per write, so the lines after the first of a write carry none): the agent starts every
 * process with it (agent/pm2.ts), so `deploy logs` can show when a line was written and `--since`
 * can pick lines by time. ISO 8601 with the offset, in dayjs's format syntax.
 */
export const PM2_LOG_DATE_FORMAT = 'YYYY-MM-DDTHH:mm:ss.SSSZ';

const STAMPED = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2})): (.*)$/s;

/** A line longer than this is cut: one minified stack trace should not fill the terminal. */
export const MAX_LINE = 2_000;

/**
 * Pure: the raw lines of one log file as entries. A line without a date prefix (a log written
 * before timestamps, or a continuation of a multi-line write) takes the time of the line before
 * (`carry` for the first: the last time seen earlier in the same file), or null.
 */
export function parseLogLines(lines: readonly string[], stream: LogStream, carry: string | null = null): LogEntry[] {
  let time = carry;
  return lines.map((raw) => {
    const match = STAMPED.exec(raw);
    const text = match ? match[2]! : raw;
    if (match) time = new Date(match[1]!).toISOString();
    return { time, stream, text: text.length > MAX_LINE ? `${text.slice(0, MAX_LINE)}…` : text };
  });
}

/** Pure: entries at or after `cutoff` (ms since the epoch); entries without a time are kept only with no cutoff. */
export function entriesSince(entries: readonly LogEntry[], cutoff: number | null): LogEntry[] {
  if (cutoff === null) return [...entries];
  return entries.filter((entry) => entry.time !== null && Date.parse(entry.time) >= cutoff);
}

/**
 * Pure: stdout and stderr of one process merged in time order (stable: lines of one stream keep
 * their order; entries without a time stay in their stream's order, before the timed ones).
 */
export function mergeStreams(out: readonly LogEntry[], err: readonly LogEntry[]): LogEntry[] {
  const merged: LogEntry[] = [];
  let i = 0;
  let j = 0;
  const at = (entry: LogEntry) => (entry.time === null ? -Infinity : Date.parse(entry.time));
  while (i < out.length || j < err.length) {
    if (j >= err.length || (i < out.length && at(out[i]!) <= at(err[j]!))) merged.push(out[i++]!);
    else merged.push(err[j++]!);
  }
  return merged;
}
