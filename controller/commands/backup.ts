import type { BackupJobView, BackupRunView, BackupsOverview, RestoreView } from '../../contract/backups.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import { formatBytes, formatMs, type Output } from '../output.js';
import { openAgentSession } from '../session.js';

/** Pure: "3 s", "5 min", "2 h", "4 d". */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** Pure: one line per run. */
export function formatRunLine(run: BackupRunView): string {
  const size = run.bytes === null ? '-' : formatBytes(run.bytes);
  const took = run.durationMs === null ? '-' : formatMs(run.durationMs);
  const state = `${run.status}${run.prunedAt ? ' (pruned)' : ''}`;
  const why = run.reason && run.status !== 'verified' ? `  ${run.reason}` : '';
  return `  #${String(run.id).padEnd(5)} ${run.job.padEnd(14)} ${state.padEnd(19)} ${run.startedAt}  ${size.padStart(9)}  ${took.padStart(9)}  ${run.trigger}${why}`;
}

function formatJob(job: BackupJobView, now: number): string[] {
  const last = job.lastRun;
  const facts = last ? [last.bytes !== null && last.file ? formatBytes(last.bytes) : null, last.durationMs !== null ? formatMs(last.durationMs) : null].filter(Boolean) : [];
  const lastLine = last
    ? `#${last.id} ${last.status} ${formatAge(now - Date.parse(last.startedAt))} ago${facts.length ? ` (${facts.join(' in ')})` : ''}${last.reason && last.status !== 'verified' ? `: ${last.reason}` : ''}`
    : 'never';
  const verified = job.lastVerified
    ? `#${job.lastVerified.id}, ${formatAge(job.lastVerified.ageMs)} old${job.lastVerified.bytes !== null ? ` (${formatBytes(job.lastVerified.bytes)})` : ''}, checked by ${job.lastVerified.level ?? '-'}`
    : 'none: there is no verified backup of this job';
  const r = job.retention;
  return [
    `${job.job}  (app ${job.app}, ${job.kind}, schedule "${job.schedule}"${job.nextRunAt ? `, next ${job.nextRunAt}` : ''})${job.running ? `  RUNNING #${job.running.id} since ${job.running.startedAt}` : ''}`,
    `  last run:      ${lastLine}`,
    `  last success:  ${job.lastSuccessAt ? `${formatAge(now - Date.parse(job.lastSuccessAt))} ago` : 'never'}`,
    `  last verified: ${verified}`,
    `  kept:          ${job.kept.count} backup(s), ${formatBytes(job.kept.bytes)} (${job.kept.verified} verified); retention ${r.daily} daily, ${r.weekly} weekly, ${r.monthly} monthly`,
    `  offsite:       ${job.offsite.note}${job.offsite.lastStatus ? `; last ${job.offsite.lastStatus}${job.offsite.lastAt ? ` ${job.offsite.lastAt}` : ''}${job.offsite.lastError ? `: ${job.offsite.lastError}` : ''}` : ''}`,
  ];
}

/** Pure: the human view of GET /backups. */
export function formatBackupList(overview: BackupsOverview, now: number): string {
  if (!overview.jobs.length) return 'no backup jobs are configured on this host (backups.jobs in the agent config)';
  const lines = overview.jobs.flatMap((job) => formatJob(job, now));
  if (!overview.notifications) lines.push('notifications: off (set backups.notifyWebhook to hear about failures)');
  if (overview.runs.length) lines.push('recent runs:', ...overview.runs.map(formatRunLine));
  return lines.join('\n');
}

/** Pure: what one run did, check by check. */
export function formatRun(run: BackupRunView): string {
  const lines = [`backup #${run.id} of ${run.job} (${run.kind}): ${run.status}${run.reason && run.status !== 'verified' ? `: ${run.reason}` : ''}`];
  if (run.file) lines.push(`  file:   ${run.file}`);
  const took = run.durationMs !== null ? ` in ${formatMs(run.durationMs)}` : '';
  if (run.bytes !== null && run.file) lines.push(`  size:   ${formatBytes(run.bytes)}${took}, sha256 ${run.sha256 ?? '-'}`);
  else if (run.bytes !== null) lines.push(`  output: ${formatBytes(run.bytes)} written${took}, then removed`);
  for (const check of run.verification?.checks ?? []) {
    lines.push(`  ${check.skipped ? '-' : check.ok ? '✓' : '✗'} ${check.name}: ${check.detail}`);
  }
  if (run.status !== 'verified' && run.stderrTail) {
    lines.push('  stderr (last lines):', ...run.stderrTail.trimEnd().split('\n').slice(-8).map((l) => `    ${l}`));
  }
  if (run.offsite) lines.push(`  offsite: ${run.offsite.status}${run.offsite.error ? `: ${run.offsite.error}` : ''}`);
  return lines.join('\n');
}

export async function backupList(config: ControllerConfig, options: { job?: string; json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const overview = await session.agent.get<BackupsOverview>(`/backups${options.job ? `?job=${encodeURIComponent(options.job)}` : ''}`);
    out.data(options.json ? overview : formatBackupList(overview, Date.now()));
    return EXIT.ok;
  } finally {
    await session.close();
  }
}

export async function backupRun(config: ControllerConfig, job: string, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  let run: BackupRunView;
  try {
    out.info(`running backup job ${job} on the host (waits for the dump and its verification)…`);
    ({ backup: run } = await session.agent.json<{ backup: BackupRunView }>('POST', `/backups/${encodeURIComponent(job)}/run`, {}));
  } finally {
    await session.close();
  }
  out.data(options.json ? run : formatRun(run));
  if (run.status === 'verified') return EXIT.ok;
  throw new SlipwayError(`backup_${run.status}`, `backup #${run.id} of ${job} is ${run.status}${run.reason ? `: ${run.reason}` : ''}`, {
    hint: run.status === 'skipped' ? 'another run of this job is still going; see: deploy backup list'
      : run.status === 'unverified' ? 'the file is kept but does not count as a good backup; check the failed check above'
      : 'earlier backups are untouched; fix the cause shown above and run it again',
  });
}

export async function backupRestore(
  config: ControllerConfig, id: string, options: { to?: string; yes: boolean; force: boolean; json: boolean }, out: Output,
): Promise<ExitCode> {
  if (!/^[1-9][0-9]{0,11}$/.test(id)) throw new SlipwayError('usage', `backup id must be a number, got "${id}"`, { hint: 'ids are listed by: deploy backup list' });
  if (!options.yes) {
    throw new SlipwayError('usage', `restoring backup #${id} replaces the data in ${options.to ? 'the database given by --to' : 'its job\'s database'}`, {
      hint: `check the id with \`deploy backup list\`, then run again with --yes${options.force ? '' : ' (add --force for a backup that is not verified)'}`,
    });
  }
  const session = await openAgentSession(config);
  try {
    out.info(`restoring backup #${id}…`);
    const { restore } = await session.agent.json<{ restore: RestoreView }>('POST', `/backups/${id}/restore`, {
      confirm: true, ...(options.force ? { force: true } : {}), ...(options.to !== undefined ? { to: options.to } : {}),
    });
    out.data(options.json ? restore : `✓ restored backup #${restore.backupId} of ${restore.job} into ${restore.target} in ${formatMs(restore.durationMs)}${restore.forced ? ' (forced)' : ''}`);
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
