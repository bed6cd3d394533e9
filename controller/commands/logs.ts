import type { AppLogs, LogEntry, LogFollowLine } from '../../contract/api.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { ControllerConfig } from '../config.js';
import { SlipwayError } from '../../contract/errors.js';
import { EXIT, type ExitCode } from '../errors.js';
import { formatBytes, type Output } from '../output.js';
import { openAgentSession } from '../session.js';

const SINCE_UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
const MAX_SINCE_SECONDS = 366 * 86_400;

/** Pure: `--since 10m` (s, m, h or d) in seconds, at most a year; null when it is not such a duration. */
export function parseSince(value: string): number | null {
  const match = /^([1-9][0-9]{0,6})([smhd])$/.exec(value);
  if (!match) return null;
  const seconds = Number(match[1]) * SINCE_UNITS[match[2] as keyof typeof SINCE_UNITS];
  return seconds <= MAX_SINCE_SECONDS ? seconds : null;
}

/** Pure: one line as shown: its time (or a blank column), the process, the stream, the text. */
export function formatEntry(process: string, entry: LogEntry): string {
  return `${(entry.time ?? '').padEnd(24)} ${process} ${entry.stream}| ${entry.text}`;
}

/** Pure: each process's last lines with their times, stdout and stderr merged in time order. */
export function formatLogs(logs: AppLogs): string {
  const head = `${logs.app}/${logs.slot}${logs.releaseId ? ` (${shortSha(logs.releaseId)})` : ''}`;
  if (logs.processes.length === 0) return `${head}: no processes`;
  return logs.processes.map((p) => [
    `${head} ${p.name} (${p.pm2Name}):`,
    ...(p.entries.length === 0 ? ['  (no output)'] : []),
    ...p.entries.map((entry) => `  ${formatEntry(p.name, entry)}`),
  ].join('\n')).join('\n');
}

/** Pure: one line of a follow as shown; a switch and a rotation are said in words. */
export function formatFollowLine(line: LogFollowLine, several: boolean): string {
  if (line.type === 'switch') {
    return `-- ${line.at}: traffic moved ${line.from ? `from ${line.from} ` : ''}to ${line.to}${line.releaseId ? ` (${shortSha(line.releaseId)})` : ''}; following ${line.to} now`;
  }
  if (line.type === 'rotated') return `-- ${line.slot} ${line.process} ${line.stream} log rotated; reading on in the new file`;
  if (line.type === 'fell_behind') return `-- ${line.at}: the agent ended the follow: ${formatBytes(line.unreadBytes)} of log lines were left unread`;
  return formatEntry(several ? `${line.slot}/${line.process}` : line.process, line);
}

export interface LogsOptions {
  slot?: Slot;
  process?: string;
  lines: number;
  /** Only lines of the last this many seconds. */
  sinceSeconds?: number;
  /** Keep reading new lines until `stopped` resolves (Ctrl-C). */
  follow?: { stopped: Promise<void> };
  json: boolean;
}

/**
 * `deploy logs [--slot] [--process] [-n] [--since] [-f]`: the app's output without SSHing in (env
 * file values masked), with times and process names; -f follows it across log rotation and, when
 * no slot is named, across a switch.
 */
export async function logs(config: ControllerConfig, options: LogsOptions, out: Output): Promise<ExitCode> {
  const query = new URLSearchParams({
    lines: String(options.lines),
    ...(options.slot ? { slot: options.slot } : {}),
    ...(options.process ? { process: options.process } : {}),
    ...(options.sinceSeconds !== undefined ? { since: String(options.sinceSeconds) } : {}),
  });
  const session = await openAgentSession(config);
  try {
    if (!options.follow) {
      const answer = await session.agent.get<AppLogs>(`/apps/${config.app}/logs?${query.toString()}`);
      out.data(options.json ? answer : formatLogs(answer));
      return EXIT.ok;
    }
    if (!options.json) out.info(`following ${config.app}'s logs${options.slot ? ` (${options.slot})` : ' (the live slot, moving with a switch)'}; Ctrl-C to stop`);
    let several = false;
    const ended: { behind?: Extract<LogFollowLine, { type: 'fell_behind' }> } = {};
    await session.agent.follow<LogFollowLine>(`/apps/${config.app}/logs/follow?${query.toString()}`, (line) => {
      if (line.type === 'switch') several = true;
      if (line.type === 'fell_behind') ended.behind = line;
      if (options.json) out.data(line);
      else if (line.type === 'line') out.data(formatFollowLine(line, several));
      else out.info(formatFollowLine(line, several));
    }, options.follow.stopped);
    if (ended.behind) {
      throw new SlipwayError('logs_fell_behind', `the agent ended the log follow of ${config.app}: this side left ${formatBytes(ended.behind.unreadBytes)} unread (the command was stopped, e.g. Ctrl-Z, or its output was not read)`, {
        hint: 'run deploy logs -f again; lines written meanwhile are in deploy logs -n 1000',
      });
    }
    return EXIT.ok;
  } finally {
    await session.close();
  }
}

