import type { TlsRunAnswer, TlsRunView, TlsStatus } from '../../contract/tls.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { formatMs } from '../output.js';
import { openAgentSession } from '../session.js';

const DAY_MS = 86_400_000;

/** Pure: one run as a history line. */
export function formatTlsRun(run: TlsRunView): string {
  return `  #${run.id} ${run.at} ${run.outcome.padEnd(9)} ${run.trigger} by ${run.actor} (${formatMs(run.durationMs)})${run.reason ? `: ${run.reason}` : ''}`;
}

/** Pure: `deploy tls` as it prints: how HTTPS is served, the certificate, the runs. */
export function formatTlsStatus(s: TlsStatus, now: number): string {
  const hsts = s.hstsMaxAgeSeconds === null ? 'no HSTS' : `HSTS max-age=${s.hstsMaxAgeSeconds}`;
  const lines = [`${s.app}: TLS from ${s.source === 'acme' ? 'ACME (certbot)' : 'the host\'s certificate files'}, HTTPS on port ${s.httpsPort}, ${s.redirect ? 'HTTP redirected' : 'HTTP served too'}, ${hsts}`];
  const cert = s.certificate;
  if (cert === null) {
    lines.push('  no certificate installed yet: the app is served over plain HTTP');
  } else {
    const days = Math.floor((Date.parse(cert.notAfter) - now) / DAY_MS);
    lines.push(`  certificate ${cert.fingerprint.slice(0, 16)} for ${cert.names.join(', ') || '(no DNS names)'}`);
    lines.push(`  valid until ${cert.notAfter} (${days < 0 ? 'EXPIRED' : `${days} d left`}), issued by ${cert.issuer}, installed ${cert.installedAt}`);
  }
  const lastFailure = s.runs.find((run) => run.outcome === 'failed');
  const lastGood = s.runs.find((run) => run.outcome === 'installed' || run.outcome === 'unchanged');
  if (lastFailure && (!lastGood || lastFailure.id > lastGood.id)) lines.push(`  LAST RUN FAILED (the served certificate and config are unchanged): ${lastFailure.reason ?? ''}`);
  if (s.nextRunAt) lines.push(`  next scheduled run ${s.nextRunAt}`);
  if (s.runs.length > 0) lines.push('runs (newest first):', ...s.runs.map(formatTlsRun));
  return lines.join('\n');
}

/**
 * `deploy tls [--renew [--force]]`: the app's certificate and its run history; with --renew a
 * run now (certbot only asks the CA when the certificate is due or --force; nginx is reloaded
 * only when the certificate changed). A failed run exits 3: nothing served changed.
 */
export async function tls(config: ControllerConfig, options: { renew: boolean; force: boolean; json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const path = `/apps/${config.app}/tls`;
    if (!options.renew) {
      const status = await session.agent.get<TlsStatus>(path);
      out.data(options.json ? status : formatTlsStatus(status, Date.now()));
      return EXIT.ok;
    }
    const answer = await session.agent.json<TlsRunAnswer>('POST', `${path}/runs`, { force: options.force });
    out.data(options.json ? answer : `${formatTlsRun(answer.run).trim()}\n${formatTlsStatus(answer.status, Date.now())}`);
    return answer.run.outcome === 'failed' ? EXIT.failedBeforeSwitch : EXIT.ok;
  } finally {
    await session.close();
  }
}
