import type { DoraFigures, Spread } from '../../contract/api.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { formatMs } from '../output.js';
import { openAgentSession } from '../session.js';

function spreadText(s: Spread): string {
  if (s.count === 0) return 'no data';
  return `median ${formatMs(s.medianMs!)}, p90 ${formatMs(s.p90Ms!)} (${s.count})`;
}

/** Pure: the DORA figures as `deploy metrics` prints them. */
export function formatDora(app: string, f: DoraFigures): string {
  const rate = f.changeFailures.rate === null ? 'no deployments' : `${Math.round(f.changeFailures.rate * 100)}% (${f.changeFailures.failed} of ${f.changeFailures.total})`;
  return [
    `${app}: DORA figures from ${f.since} to ${f.until}`,
    `  deployment frequency   ${f.deployments} in ${f.days} d (${f.perDay}/day)`,
    `  lead time for changes  ${spreadText(f.leadTime)}`,
    `  change failure rate    ${rate}`,
    `  time to restore        ${spreadText(f.timeToRestore)}${f.timeToRestore.open ? `; ${f.timeToRestore.open} not restored yet` : ''}`,
  ].join('\n');
}

/** `deploy metrics [--since 30d]`: the DORA figures computed by the agent from its history. */
export async function metrics(config: ControllerConfig, options: { since: string; json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const figures = await session.agent.get<DoraFigures>(`/apps/${config.app}/dora?since=${encodeURIComponent(options.since)}`);
    out.data(options.json ? figures : formatDora(config.app, figures));
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
