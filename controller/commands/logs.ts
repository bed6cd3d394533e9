import type { AppLogs } from '../../contract/api.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';

/** Pure: each process's last lines, stdout then stderr, labelled like `pm2 logs`. */
export function formatLogs(logs: AppLogs): string {
  const head = `${logs.app}/${logs.slot}${logs.releaseId ? ` (${shortSha(logs.releaseId)})` : ''}`;
  if (logs.processes.length === 0) return `${head}: no processes`;
  return logs.processes.map((p) => [
    `${head} ${p.name} (${p.pm2Name}):`,
    ...(p.out.length + p.err.length === 0 ? ['  (no output)'] : []),
    ...p.out.map((l) => `  out| ${l}`),
    ...p.err.map((l) => `  err| ${l}`),
  ].join('\n')).join('\n');
}

/** `deploy logs [--slot] [--process] [-n]`: the app's output without SSHing in (env file values masked). */
export async function logs(config: ControllerConfig, options: { slot?: Slot; process?: string; lines: number; json: boolean }, out: Output): Promise<ExitCode> {
  const query = new URLSearchParams({ lines: String(options.lines), ...(options.slot ? { slot: options.slot } : {}), ...(options.process ? { process: options.process } : {}) });
  const session = await openAgentSession(config);
  try {
    const answer = await session.agent.get<AppLogs>(`/apps/${config.app}/logs?${query.toString()}`);
    out.data(options.json ? answer : formatLogs(answer));
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
