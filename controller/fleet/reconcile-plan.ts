import type { FleetRecord } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';
import type { FleetExpectation, HostSnapshot } from './status-view.js';

/** One drifting host brought to the fleet's release: a rollback --to it (one flip when its slot is warm). */
export interface ReconcileAction {
  host: string;
  from: string | null;
  to: string;
  /** The fleet's release is still running in the host's standby slot: one flip. */
  warm: boolean;
}

export interface ReconcilePlan {
  /** The release every host should serve (the fleet record's); null: nothing to reconcile against. */
  target: string | null;
  actions: ReconcileAction[];
  /** Hosts that could not be asked: reported, left for a later command. */
  unreachable: string[];
  /** Hosts a rollout still holds (a rollout the controller lost goes on there): wait for them first. */
  busy: string[];
  /**
   * Drifting hosts whose lock another controller still reserves (a fleet rollout keeps each host's
   * lock until the whole fleet is done; a killed controller leaves them): "holder until expiry".
   * Nothing can move them until it is released or expires by the host lock's rules.
   */
  held: { host: string; holder: string; action: string; expiresAt: string | null }[];
  /**
   * Reachable hosts on another release than the fleet's, not moved: left out of the rollout that
   * brought it (--skip-unreachable, --hosts), they are held to the rollout they were part of (or,
   * never part of one, left as they are). The next push or promotion brings them.
   */
  leftOut: string[];
  /** What the plan says, for the operator (null when there is nothing to say). */
  note: string | null;
}

export interface ReconcileOptions {
  /**
   * What each host is held to, when it differs from `record`: the newest record that names the
   * host among the ones its command acted on (recordsByHost). A host left out of the newest
   * rollout on purpose (--hosts, --skip-unreachable) is held to the rollout it was part of, never
   * to a release it may not have.
   */
  perHost?: ReadonlyMap<string, FleetExpectation>;
  /** Hosts with no record naming them among the hosts acted on, that a record names as skipped: held to nothing (skippedOnly). */
  unheld?: ReadonlySet<string>;
  /** The release a push is about to bring: a host already on it is left alone (the push finds it done). */
  alsoFine?: string | null;
}

/**
 * Pure: what reconcile-first does before a fleet command. Only the fleet record says what the fleet
 * serves: a controller killed mid-rollout writes no record, so the record of the rollout before it
 * wins and the hosts it had switched go back. Without a record nothing is changed (status names the
 * drift; a push makes the fleet one). A host whose lock a running rollout holds is busy: its agent
 * finishes or reverts on its own, and the caller waits for that before planning again.
 */
export function planReconcile(snapshots: readonly HostSnapshot[], record: FleetExpectation | null, options: ReconcileOptions = {}): ReconcilePlan {
  const unreachable = snapshots.filter((s) => s.status === null).map((s) => s.name);
  if (!record) {
    return { target: null, actions: [], unreachable, busy: [], held: [], leftOut: [], note: null };
  }
  const busy: string[] = [];
  const leftOut: string[] = [];
  const held: ReconcilePlan['held'] = [];
  const actions: ReconcileAction[] = [];
  for (const s of snapshots) {
    if (!s.status) continue;
    const expected = options.perHost?.get(s.name) ?? (options.unheld?.has(s.name) ? null : record);
    const live = s.status.liveReleaseId;
    if (options.alsoFine && live === options.alsoFine) continue;
    if (expected === null || live === expected.releaseId) {
      if (live !== record.releaseId) leftOut.push(s.name);
      continue;
    }
    if (s.lock && !s.lock.stale && s.lock.deploymentId !== null) {
      busy.push(s.name);
      continue;
    }
    if (s.lock && !s.lock.stale) {
      held.push({ host: s.name, holder: s.lock.holder, action: s.lock.action, expiresAt: s.lock.expiresAt });
      continue;
    }
    const warm = s.status.slots.some((slot) => !slot.live && slot.releaseId === expected.releaseId && slot.process?.status === 'online');
    actions.push({ host: s.name, from: s.status.liveReleaseId, to: expected.releaseId, warm });
  }
  const parts = [
    actions.length ? `reconciling ${actions.map((a) => `${a.host} (${a.from ? shortSha(a.from) : 'nothing'} → ${shortSha(a.to)}${a.warm ? ', one flip' : ''})`).join(', ')} to the fleet's release${actions.every((a) => a.to === record.releaseId) ? ` ${shortSha(record.releaseId)}${record.rolloutId ? ` (rollout ${record.rolloutId.slice(0, 8)})` : ''}` : 's of the rollouts they were part of'}` : '',
    busy.length ? `waiting for the running rollout on ${busy.join(', ')}` : '',
    unreachable.length ? `unreachable, left as they are: ${unreachable.join(', ')}` : '',
    leftOut.length ? `left out of the rollout that brought ${shortSha(record.releaseId)}, not moved: ${leftOut.join(', ')} (the next push or promotion brings them)` : '',
  ].filter(Boolean);
  return { target: record.releaseId, actions, unreachable, busy, held, leftOut, note: parts.length ? parts.join('; ') : null };
}

/**
 * Pure: for each named host, the newest record that names it among the hosts its command acted on
 * (each host keeps only the last record it was given; the others may hold a newer one about it).
 */
export function recordsByHost(records: ReadonlyArray<FleetRecord | null>, hosts: readonly string[]): Map<string, FleetRecord> {
  const byHost = new Map<string, FleetRecord>();
  for (const name of hosts) {
    for (const r of records) {
      if (!r || !r.hosts.includes(name)) continue;
      const seen = byHost.get(name);
      if (!seen || r.at > seen.at) byHost.set(name, r);
    }
  }
  return byHost;
}

/**
 * Pure: the named hosts no record names among the hosts its command acted on, but one names as
 * skipped (unreachable with --skip-unreachable, outside --hosts): they were never part of a fleet
 * rollout, so no release is theirs to be held to.
 */
export function skippedOnly(records: ReadonlyArray<FleetRecord | null>, hosts: readonly string[]): Set<string> {
  const acted = new Set(records.flatMap((r) => r?.hosts ?? []));
  const skipped = new Set(records.flatMap((r) => r?.skipped ?? []));
  return new Set(hosts.filter((h) => skipped.has(h) && !acted.has(h)));
}
