import type { AppStatus, NotificationsStatus } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';
import type { TlsSummary } from '../../contract/tls.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';

/** Pure: the TLS line: the certificate served, and a failed last run (deploy tls has the rest). */
export function tlsLine(tls: TlsSummary): string {
  const served = tls.fingerprint === null
    ? `https :${tls.httpsPort}: no certificate yet (plain HTTP)`
    : `https :${tls.httpsPort}: certificate for ${tls.names.join(', ') || '(no DNS names)'} valid until ${tls.notAfter}`;
  const failed = tls.lastRun?.outcome === 'failed' ? `; LAST CERTIFICATE RUN FAILED ${tls.lastRun.at}: ${tls.lastRun.reason ?? ''} (see deploy tls)` : '';
  return `${served}${failed}`;
}

/** Pure: the human view of an app's slots and releases. */
export function formatStatus(status: AppStatus): string {
  const lines = [`${status.app}${status.env ? ` [${status.env}]` : ''}: live ${status.liveSlot ?? 'none'}${status.liveReleaseId ? ` (${shortSha(status.liveReleaseId)})` : ''} at ${status.publicUrl}`];
  const pm2Down = status.pm2 !== undefined && status.pm2.state !== 'up';
  if (status.pm2 && pm2Down) lines.push(`  PM2 daemon ${status.pm2.state} since ${status.pm2.since}: ${status.pm2.message ?? ''}`);
  if (status.tls) lines.push(`  ${tlsLine(status.tls)}`);
  for (const s of status.slots) {
    const proc = s.process ? `${s.process.status} pid ${s.process.pid ?? '-'} restarts ${s.process.restarts}` : pm2Down ? `not known to PM2 (daemon ${status.pm2!.state})` : 'no process';
    const health = s.health ? (s.health.ok ? 'healthy' : `unhealthy (${s.health.status ?? s.health.error ?? '?'})`) : '-';
    lines.push(`  ${s.live ? '*' : ' '} ${s.slot.padEnd(5)} :${s.port ?? '-'}  ${(s.releaseId ? shortSha(s.releaseId) : '-').padEnd(25)}  ${s.state.padEnd(8)}  ${proc}  ${health}`);
    // A slot of several processes (a release with deploy.spec.json) lists each of them.
    if (s.processes && s.processes.length > 1) {
      for (const p of s.processes) {
        const processHealth = p.health ? (p.health.ok ? 'healthy' : `unhealthy (${p.health.status ?? p.health.error ?? '?'})`) : '';
        lines.push(`        ${p.name.padEnd(12)} ${p.port === null ? 'no port' : `:${p.port}`}  ${p.status ?? 'not in PM2'} ${p.online}/${p.instances} online  restarts ${p.restarts}  ${processHealth}`.trimEnd());
      }
    }
  }
  if (status.releases.length) lines.push('  releases:');
  for (const r of status.releases) {
    lines.push(`    ${shortSha(r.releaseId).padEnd(25)}  ${r.state.padEnd(6)}  ${r.createdAt}  ${r.manifest.branch ?? '-'}  ${r.manifest.author.name}${r.slots.length ? `  [${r.slots.join(', ')}]` : ''}`);
  }
  return lines.join('\n');
}

/** Pure: one line per webhook that is retrying or has given up on an event; nothing when all is delivered. */
export function formatNotificationProblems(status: NotificationsStatus): string[] {
  const lines: string[] = [];
  for (const w of status.webhooks) {
    if (w.retrying) lines.push(`  notifications: ${w.webhook} retrying ${w.retrying.event} (${w.retrying.attempts} attempt(s), last: ${w.retrying.lastError ?? '?'}); ${w.pending} waiting`);
    if (w.failed > 0 && w.lastFailure) lines.push(`  notifications: ${w.webhook} gave up on ${w.failed} event(s), last ${w.lastFailure.event} at ${w.lastFailure.at}: ${w.lastFailure.error ?? '?'}`);
  }
  return lines;
}

export async function status(config: ControllerConfig, json: boolean, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const appStatus = await session.agent.get<AppStatus>(`/apps/${config.app}`);
    // Agents before notifications have no such route.
    const notifications = await session.agent.find<NotificationsStatus>('/notifications');
    if (json) out.data({ ...appStatus, ...(notifications ? { notifications } : {}) });
    else out.data([formatStatus(appStatus), ...(notifications ? formatNotificationProblems(notifications) : [])].join('\n'));
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
