import type { DeploymentSummary, LockInfo, PromotionInfo, PromotionRecord, ReleaseListEntry } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import { formatBytes, formatMs, type Output } from '../output.js';
import { openAgentSession } from '../session.js';

/** Pure: "3h", "2d" — how long ago, for tables. */
export function age(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

/** Release id → its spec digest (null: no spec), for telling which deployments changed the spec. */
export type SpecDigests = ReadonlyMap<string, string | null>;

/** Pure: what a deployment overrode or left behind, for its history lines. */
export function historyNotes(d: DeploymentSummary, specs: SpecDigests = new Map()): string[] {
  const notes: string[] = [];
  if (d.releaseId && d.previousRelease && d.previousRelease !== d.releaseId && specs.has(d.releaseId) && specs.has(d.previousRelease)
    && specs.get(d.releaseId) !== specs.get(d.previousRelease)) {
    notes.push(`spec changed from ${shortSha(d.previousRelease)}: deploy diff ${shortSha(d.previousRelease)} ${shortSha(d.releaseId)}`);
  }
  const moved = d.outcome === 'succeeded' || d.outcome === 'rolled_back';
  if (d.kind === 'rollback' && d.previousRelease && moved) {
    notes.push(`from ${shortSha(d.previousRelease)}${d.marksPrevious ? ' (marked rolled back)' : ''}`);
  }
  if (d.promotion) notes.push(promotionNote(d.promotion));
  if (d.targetState === 'bad') {
    const mark = d.badMark === 'cleared' ? 'mark cleared by a clean watch window'
      : d.badMark === 'kept' ? 'mark kept' : d.outcome === null ? 'mark kept until its watch window passes' : 'mark kept (it never went live)';
    notes.push(`${d.forced ? 'forced: ' : ''}the target was marked bad; ${mark}`);
  }
  return notes;
}

/** Pure: a promoted deployment's note (one host's, or a fleet rollout's in the merged history). */
export function promotionNote(p: PromotionInfo): string {
  return `promoted from ${p.from ?? 'another environment'} (${p.sourceHost})${p.forced ? `, forced past its gate: ${p.reason ?? 'no reason given'}` : ''}`;
}

export function formatHistory(rows: (DeploymentSummary & { stepDurationsMs?: Record<string, number> })[], now = Date.now(), specs: SpecDigests = new Map()): string {
  if (!rows.length) return 'no deployments yet';
  return rows.map((d) => {
    const steps = Object.entries(d.stepDurationsMs ?? {}).map(([step, ms]) => `${step} ${formatMs(ms)}`).join(', ');
    const outcome = d.outcome ?? `running (${d.state})`;
    const line = `#${d.id} ${d.kind.padEnd(8)} ${(d.releaseId ? shortSha(d.releaseId) : '-').padEnd(25)} → ${d.slot.padEnd(5)} ${outcome.padEnd(11)} ${d.requestedBy}  ${age(d.startedAt, now)} ago${d.env ? `  [${d.env}]` : ''}${d.tag ? `  tag ${d.tag}` : ''}${d.forced ? '  FORCED' : ''}`;
    const detail = [
      steps && `    ${steps}`, ...historyNotes(d, specs).map((n) => `    ${n}`), d.reason && `    reason: ${d.reason}`, d.note && `    note: ${d.note}`,
    ].filter(Boolean);
    return [line, ...detail].join('\n');
  }).join('\n');
}

/**
 * Pure: the promotion records a deployment row does not already tell: on the source side every
 * forced promotion out of this environment, on the target side every refusal by the source's gate
 * (a promotion that went ahead is the target's deployment, with its "promoted from" line).
 */
export function formatPromotions(records: PromotionRecord[], now = Date.now()): string | null {
  const shown = records.filter((r) => r.side === 'source' || r.event === 'refused');
  if (!shown.length) return null;
  const lines = shown.map((r) => {
    const what = r.side === 'source'
      ? `${r.event === 'forced' ? 'FORCED promotion' : r.event === 'refused' ? 'refused promotion' : 'promotion'} of ${shortSha(r.releaseId)} to ${r.toEnv ?? 'another environment'} (${r.otherHost})`
      : `promotion of ${shortSha(r.releaseId)} from ${r.fromEnv ?? 'another environment'} (${r.otherHost}) refused`;
    return `  ${what}  ${r.actor}  ${age(r.at, now)} ago\n    gate: ${r.gate}${r.reason ? `\n    reason: ${r.reason}` : ''}`;
  });
  return ['promotions:', ...lines].join('\n');
}

export function formatReleases(rows: ReleaseListEntry[], now = Date.now()): string {
  if (!rows.length) return 'no releases on the host';
  return rows.map((r) => {
    const flags = [
      r.recordedState === 'bad' && r.state !== 'bad' ? 'marked bad' : '',
      r.rolledBack ? `rolled back by ${r.rolledBack.by} ${age(r.rolledBack.at, now)} ago${r.rolledBack.reason ? `: ${r.rolledBack.reason}` : ''}` : '',
    ].filter(Boolean);
    return `${shortSha(r.releaseId).padEnd(25)}  ${r.state.padEnd(11)}  ${age(r.createdAt, now).padStart(4)} old  ${formatBytes(r.bytes).padStart(8)}  ${r.branch ?? '-'}  ${r.author}`
      + `${r.slots.length ? `  [${r.slots.join(', ')}]` : ''}${flags.length ? `  (${flags.join('; ')})` : ''}`;
  }).join('\n');
}

export function formatLock(lock: LockInfo | null): string {
  if (!lock) return 'unlocked';
  return `locked by ${lock.holder} since ${lock.since} for ${lock.action}${lock.releaseId ? ` of ${shortSha(lock.releaseId)}` : ''}`
    + `${lock.deploymentId ? ` (deployment ${lock.deploymentId})` : lock.expiresAt ? ` (reserved until ${lock.expiresAt})` : ''}${lock.stale ? ' — stale: the next rollout takes it over' : ''}`;
}

async function withAgent<T>(config: ControllerConfig, fn: (agent: import('../agent-client.js').AgentClient) => Promise<T>): Promise<T> {
  const session = await openAgentSession(config);
  try {
    return await fn(session.agent);
  } finally {
    await session.close();
  }
}

export async function history(config: ControllerConfig, options: { json: boolean; limit: number; show?: number }, out: Output): Promise<ExitCode> {
  if (options.show !== undefined) {
    const id = options.show;
    const detail = await withAgent(config, (agent) => agent.get<DeploymentSummary>(`/apps/${config.app}/deployments/${id}`));
    out.data(options.json ? detail : formatDeploymentEvents(detail));
    return EXIT.ok;
  }
  const { deployments, releases, promotions } = await withAgent(config, async (agent) => ({
    ...await agent.get<{ deployments: DeploymentSummary[] }>(`/apps/${config.app}/deployments?limit=${options.limit}`),
    ...await agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${config.app}/releases`),
    // An agent older than promotions has no such route: its history simply has none.
    ...await agent.get<{ promotions: PromotionRecord[] }>(`/apps/${config.app}/promotions`).catch(() => ({ promotions: [] as PromotionRecord[] })),
  }));
  // Releases the host still keeps, with their spec digests: a deployment between two of them with
  // different digests changed the app's processes, routes or checks.
  const specs: SpecDigests = new Map(releases.filter((r) => r.specDigest !== undefined).map((r) => [r.releaseId, r.specDigest ?? null]));
  const promotionLines = formatPromotions(promotions.slice(0, options.limit));
  out.data(options.json ? deployments : [formatHistory(deployments, Date.now(), specs), promotionLines].filter(Boolean).join('\n'));
  return EXIT.ok;
}

/** Pure: one deployment with every event it recorded, build and release-phase output included (deploy history --show). */
export function formatDeploymentEvents(d: DeploymentSummary): string {
  const head = formatHistory([d]);
  const events = (d.events ?? []).map((e) => {
    const mark = e.status === 'ok' ? '✓' : e.status === 'failed' ? '✗' : e.status === 'started' ? '…' : '·';
    const timing = e.elapsedMs === null ? '' : ` ${formatMs(e.elapsedMs)}`;
    return `    ${e.at.slice(11, 19)} ${mark} ${e.step.padEnd(10)}${timing}  ${e.message ?? ''}`.trimEnd();
  });
  return [head, ...events].join('\n');
}

export async function releases(config: ControllerConfig, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const { releases: rows } = await withAgent(config, (agent) => agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${config.app}/releases`));
  out.data(options.json ? rows : formatReleases(rows));
  return EXIT.ok;
}

export async function cleanupReleases(config: ControllerConfig, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const result = await withAgent(config, (agent) => agent.json<{ removed: string[]; kept: string[]; skipped: string | null }>('POST', `/apps/${config.app}/releases/cleanup`));
  out.data(options.json ? result : result.skipped ? `skipped: ${result.skipped}` : `removed ${result.removed.length}, kept ${result.kept.length}`);
  return EXIT.ok;
}

export async function lockStatus(config: ControllerConfig, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const { lock } = await withAgent(config, (agent) => agent.get<{ lock: LockInfo | null }>(`/apps/${config.app}/lock`));
  out.data(options.json ? { lock } : formatLock(lock));
  return EXIT.ok;
}

export async function lockRelease(config: ControllerConfig, options: { json: boolean; force: boolean }, out: Output): Promise<ExitCode> {
  const result = await withAgent(config, (agent) => agent.delete<{ released: boolean; lock: LockInfo | null }>(`/apps/${config.app}/lock?force=${options.force}`));
  out.data(options.json ? result : result.released ? `released (${formatLock(result.lock)})` : 'there was no lock');
  return EXIT.ok;
}
