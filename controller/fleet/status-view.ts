import type { AppStatus, LockInfo } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';

/**
 * What one host of a fleet said when asked (or why it did not answer). Collected in parallel, one
 * per host; everything below is pure over a list of these.
 */
export interface HostSnapshot {
  name: string;
  /** null: the host could not be reached (connect, token, version check, or the request). */
  status: AppStatus | null;
  lock: LockInfo | null;
  /** Why it was not reached (null when it was). */
  error: string | null;
}

/** The fleet's release as its last completed rollout recorded it (the fleet record), if known. */
export interface FleetExpectation {
  releaseId: string;
  /** Where it came from: the fleet record's rollout id, for messages. */
  rolloutId: string | null;
}

export type HostHealth = 'healthy' | 'unhealthy' | 'no process' | 'unknown';

export type DriftKind = 'unreachable' | 'other_release' | 'no_live_release';

export interface FleetHostRow {
  name: string;
  reachable: boolean;
  liveSlot: string | null;
  releaseId: string | null;
  health: HostHealth;
  /** "locked by X for deploy" / "stale lock" / null. */
  lock: string | null;
  drift: DriftKind | null;
  error: string | null;
}

export interface FleetView {
  hosts: FleetHostRow[];
  /** The release the fleet should serve: the fleet record's, else the one most reachable hosts serve (null: no majority). */
  expected: string | null;
  /** Where `expected` comes from. */
  expectedFrom: 'record' | 'majority' | null;
  /** Distinct live releases among reachable hosts. */
  releases: string[];
  /** Every reachable host serves `expected` and every host was reached. */
  consistent: boolean;
  /** One line per drift, naming the host and what is wrong. */
  drift: string[];
}

/** Pure: the live slot's health as one word. */
export function hostHealth(status: AppStatus): HostHealth {
  const live = status.slots.find((s) => s.live);
  if (!live) return 'unknown';
  if (!live.process) return 'no process';
  if (!live.health) return 'unknown';
  return live.health.ok ? 'healthy' : 'unhealthy';
}

/** Pure: a host's lock in a few words (null: unlocked). */
export function lockWords(lock: LockInfo | null): string | null {
  if (!lock) return null;
  if (lock.stale) return `stale (${lock.holder})`;
  return `${lock.holder} (${lock.action}${lock.deploymentId ? ` #${lock.deploymentId}` : ''})`;
}

/** Pure: the release most reachable hosts serve; null on a tie or when none serves one. */
export function majorityRelease(releases: readonly (string | null)[]): string | null {
  const counts = new Map<string, number>();
  for (const r of releases) if (r) counts.set(r, (counts.get(r) ?? 0) + 1);
  const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  if (ranked.length === 0) return null;
  if (ranked.length > 1 && ranked[0]![1] === ranked[1]![1]) return null;
  return ranked[0]![0];
}

/**
 * Pure: the fleet's table and its drift. The fleet record says what the fleet serves; without one,
 * the majority of reachable hosts does (a tie names every release and expects none).
 */
export function fleetView(snapshots: readonly HostSnapshot[], expectation: FleetExpectation | null): FleetView {
  const reached = snapshots.filter((s) => s.status !== null);
  const majority = majorityRelease(reached.map((s) => s.status!.liveReleaseId));
  const expected = expectation?.releaseId ?? majority;
  const expectedFrom = expectation ? 'record' : majority ? 'majority' : null;
  const releases = [...new Set(reached.map((s) => s.status!.liveReleaseId).filter((r): r is string => r !== null))];
  const drift: string[] = [];
  const hosts = snapshots.map((s): FleetHostRow => {
    if (!s.status) {
      drift.push(`${s.name}: unreachable (${s.error ?? 'no answer'})`);
      return { name: s.name, reachable: false, liveSlot: null, releaseId: null, health: 'unknown', lock: null, drift: 'unreachable', error: s.error };
    }
    const releaseId = s.status.liveReleaseId;
    let kind: DriftKind | null = null;
    if (releaseId === null) {
      kind = 'no_live_release';
      drift.push(`${s.name}: serves no release`);
    } else if (expected !== null && releaseId !== expected) {
      kind = 'other_release';
      drift.push(`${s.name}: serves ${shortSha(releaseId)}, the fleet ${shortSha(expected)}${expectedFrom === 'record' ? ' (fleet record)' : ''}`);
    } else if (expected === null && releases.length > 1) {
      kind = 'other_release';
      drift.push(`${s.name}: serves ${shortSha(releaseId)} (no release has a majority)`);
    }
    return {
      name: s.name, reachable: true, liveSlot: s.status.liveSlot, releaseId, health: hostHealth(s.status),
      lock: lockWords(s.lock), drift: kind, error: null,
    };
  });
  return { hosts, expected, expectedFrom, releases, consistent: drift.length === 0, drift };
}

/** Pure: the human table of a fleet: one row per host, then the drift, if any. */
export function formatFleetView(view: FleetView, heading: string): string {
  const header = ['host', 'live', 'release', 'health', 'lock'];
  const rows = view.hosts.map((h) => [
    `${h.drift ? '!' : ' '} ${h.name}`,
    h.reachable ? (h.liveSlot ?? 'none') : '-',
    h.reachable ? (h.releaseId ? shortSha(h.releaseId) : '-') : 'unreachable',
    h.reachable ? h.health : '-',
    h.lock ?? (h.reachable ? '-' : ''),
  ]);
  const widths = header.map((title, i) => Math.max(title.length + (i === 0 ? 2 : 0), ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const summary = view.consistent
    ? `${heading}: ${view.hosts.length} host(s) on ${view.expected ? shortSha(view.expected) : 'no release'}`
    : `${heading}: DRIFT (${view.drift.length}): ${view.expected ? `the fleet's release is ${shortSha(view.expected)}${view.expectedFrom === 'record' ? ' (fleet record)' : ' (majority)'}` : `hosts serve ${view.releases.map(shortSha).join(', ') || 'nothing'}`}`;
  return [summary, line(['  host', ...header.slice(1)]), ...rows.map(line), ...view.drift.map((d) => `  drift: ${d}`)].join('\n');
}
