import type { DeploymentSummary, PromotionInfo } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';
import { age, promotionNote } from '../commands/history.js';

/** A deployment row as a fleet member's agent lists it: fleet rollouts carry their rollout id. */
export type FleetDeploymentRow = DeploymentSummary & { rolloutId?: string | null };

/**
 * One host's rows, newest first, as GET /apps/:app/deployments answers; `more`: the host was asked
 * for this many rows and may hold older ones (its answer was cut at the limit).
 */
export interface HostHistory { name: string; rows: FleetDeploymentRow[]; more?: boolean }

export interface FleetHistoryHostPart {
  name: string;
  /** The deployment's id on that host. */
  id: number;
  /** deploy, switch or rollback (a fleet rollout's revert is a switch on the hosts it reverted). */
  kind: string;
  outcome: string;
  slot: string;
  releaseId: string | null;
}

/** One line of a fleet's history: a fleet rollout (every host's row of one rollout id), or one host's own deployment. */
export interface FleetHistoryEntry {
  rolloutId: string | null;
  kind: string;
  releaseId: string | null;
  /** The earliest start among its rows. */
  startedAt: string;
  requestedBy: string;
  /** Why it failed (the first host's), if it did. */
  reason: string | null;
  /** Why it was asked for (--reason; a --hosts command names its hosts here). */
  note: string | null;
  hosts: FleetHistoryHostPart[];
  /** Every host's outcome when they agree; "running" while one has none; "mixed" otherwise. */
  outcome: string;
  /** Hosts of the fleet the entry did not touch (a --hosts command, a host skipped): drift made on purpose or by fault. */
  missing: string[];
  /** Where the release was promoted from, when the entry is a promotion (deploy promote): every host's deployment carries it. */
  promotion: PromotionInfo | null;
}

/**
 * Pure: every host's outcome when they agree, else "running" (one still runs), "rolled_back" when no
 * host kept the release (some failed, the others were rolled back: the fleet ended where it began),
 * or "mixed".
 */
export function combinedOutcome(outcomes: readonly (string | null)[]): string {
  if (outcomes.some((o) => o === null)) return 'running';
  const distinct = new Set(outcomes);
  if (distinct.size === 1) return [...distinct][0]!;
  return distinct.has('succeeded') ? 'mixed' : 'rolled_back';
}

/**
 * Pure: each host's outcome in one rollout, in host order: its last row's, except that a host whose
 * deployment was followed by a revert in the same rollout (a switch back, its last row) was rolled back.
 */
export function hostOutcomes(rows: readonly { name: string; row: FleetDeploymentRow }[]): (string | null)[] {
  const byHost = new Map<string, FleetDeploymentRow[]>();
  for (const { name, row } of rows) byHost.set(name, [...(byHost.get(name) ?? []), row]);
  return [...byHost.values()].map((hostRows) => {
    const ordered = [...hostRows].sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id - b.id);
    const last = ordered.at(-1)!;
    const reverted = ordered.length > 1 && last.kind !== ordered[0]!.kind && last.outcome === 'succeeded';
    return reverted ? 'rolled_back' : last.outcome;
  });
}

/**
 * Pure: the fleet's history: rows of one rollout id merged into one entry (hosts in fleet order),
 * other rows one entry each; newest first, at most `limit`. `fleetHosts` (names in fleet order)
 * tells which hosts an entry left out. Entries older than the oldest row of a host whose answer was
 * cut (`more`) are left out: that host's part of them is unknown, and showing them would name it
 * "not on" a rollout it took part in.
 */
export function mergeFleetHistory(histories: readonly HostHistory[], fleetHosts: readonly string[], limit: number): FleetHistoryEntry[] {
  const byRollout = new Map<string, { rows: { name: string; row: FleetDeploymentRow }[] }>();
  const entries: { rolloutId: string | null; rows: { name: string; row: FleetDeploymentRow }[] }[] = [];
  for (const { name, rows } of histories) {
    for (const row of rows) {
      const id = row.rolloutId ?? null;
      if (id === null) {
        entries.push({ rolloutId: null, rows: [{ name, row }] });
        continue;
      }
      let group = byRollout.get(id);
      if (!group) {
        group = { rows: [] };
        byRollout.set(id, group);
        entries.push({ rolloutId: id, rows: group.rows });
      }
      // A rollout may run several deployments on one host (a deploy, then its revert): one part each.
      group.rows.push({ name, row });
    }
  }
  const order = new Map(fleetHosts.map((n, i) => [n, i]));
  const merged = entries.map(({ rolloutId, rows }): FleetHistoryEntry => {
    rows.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0) || a.row.startedAt.localeCompare(b.row.startedAt));
    const first = rows.reduce((a, b) => (b.row.startedAt < a.row.startedAt ? b : a));
    const touched = new Set(rows.map((r) => r.name));
    return {
      rolloutId,
      kind: first.row.kind,
      releaseId: first.row.releaseId,
      startedAt: first.row.startedAt,
      requestedBy: first.row.requestedBy,
      reason: first.row.reason,
      note: first.row.note,
      hosts: rows.map(({ name, row }) => ({ name, id: row.id, kind: row.kind, outcome: row.outcome ?? `running (${row.state})`, slot: row.slot, releaseId: row.releaseId })),
      outcome: rolloutId === null ? combinedOutcome(rows.map((r) => r.row.outcome)) : combinedOutcome(hostOutcomes(rows)),
      missing: rolloutId === null ? [] : fleetHosts.filter((n) => !touched.has(n)),
      promotion: rows.find((r) => r.row.promotion)?.row.promotion ?? null,
    };
  });
  const horizon = histories.filter((h) => h.more && h.rows.length > 0).map((h) => h.rows.at(-1)!.startedAt).reduce((a, b) => (b > a ? b : a), '');
  merged.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  return merged.filter((e) => e.startedAt >= horizon).slice(0, limit);
}

/** Pure: the human view of a fleet's history. */
export function formatFleetHistory(entries: readonly FleetHistoryEntry[], now = Date.now()): string {
  if (entries.length === 0) return 'no deployments yet';
  return entries.map((e) => {
    const what = e.rolloutId ? `rollout ${e.rolloutId.slice(0, 8)}` : `${e.hosts[0]!.name} #${e.hosts[0]!.id}`;
    const head = `${what.padEnd(17)} ${e.kind.padEnd(8)} ${(e.releaseId ? shortSha(e.releaseId) : '-').padEnd(25)} ${e.outcome.padEnd(11)} ${e.requestedBy}  ${age(e.startedAt, now)} ago`;
    const lines = [head];
    if (e.rolloutId) lines.push(`    ${e.hosts.map((h) => `${h.name} #${h.id} ${h.kind !== e.kind ? `${h.kind} ` : ''}${h.outcome}${h.releaseId !== e.releaseId && h.releaseId ? ` (${shortSha(h.releaseId)})` : ''}`).join(', ')}`);
    if (e.missing.length) lines.push(`    not on: ${e.missing.join(', ')}`);
    if (e.promotion) lines.push(`    ${promotionNote(e.promotion)}`);
    if (e.note) lines.push(`    note: ${e.note}`);
    if (e.reason) lines.push(`    reason: ${e.reason}`);
    return lines.join('\n');
  }).join('\n');
}
