import type { LockInfo, PromotionRecord, ReleaseListEntry } from '../../contract/api.js';
import { errorMessage } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { settleBounded } from '../../lib/bounded.js';
import { EXIT, type ExitCode } from '../errors.js';
import { mergeFleetHistory, formatFleetHistory, type FleetDeploymentRow } from '../fleet/history-merge.js';
import { openFleet, unreachableError, type FleetMember, type FleetSession } from '../fleet/session.js';
import { readFleetRecord } from '../fleet/record.js';
import { snapshotFleet } from '../fleet/snapshot.js';
import { fleetView, formatFleetView } from '../fleet/status-view.js';
import { hostName, type FleetTarget } from '../fleet/target.js';
import { formatLock, formatPromotions } from './history.js';
import type { Output } from '../output.js';

/** Opens the fleet; none reached is unreachable (a read command shows whatever it reaches). */
async function withFleet<T>(fleet: FleetTarget, what: string, fn: (session: FleetSession) => Promise<T>): Promise<T> {
  const session = await openFleet(fleet);
  try {
    if (session.members.length === 0) throw unreachableError(session.unreachable, what);
    return await fn(session);
  } finally {
    await session.close();
  }
}

/** Each member's answer, in member order; a host that fails is left out with its error. */
async function askEach<T>(session: FleetSession, concurrency: number, fn: (m: FleetMember) => Promise<T>): Promise<{ name: string; value: T | null; error: string | null }[]> {
  const settled = await settleBounded(session.members, concurrency, fn);
  return session.members.map((m, i) => {
    const r = settled[i]!;
    return r.status === 'fulfilled' ? { name: m.name, value: r.value, error: null } : { name: m.name, value: null, error: (r.reason as Error).message };
  });
}

const heading = (fleet: FleetTarget) => `${fleet.app}${fleet.env ? ` [${fleet.env}]` : ''}`;

/** `deploy status` on a fleet: one row per host (live slot, release, health, lock) and the drift. */
export async function fleetStatus(fleet: FleetTarget, options: { json: boolean }, out: Output): Promise<ExitCode> {
  return withFleet(fleet, 'status', async (session) => {
    const [snapshots, record] = await Promise.all([snapshotFleet(session, fleet), readFleetRecord(session.members, fleet.app)]);
    const view = fleetView(snapshots, record ? { releaseId: record.releaseId, rolloutId: record.rolloutId } : null);
    out.data(options.json ? { fleet: view, record } : formatFleetView(view, heading(fleet)));
    return EXIT.ok;
  });
}

/** `deploy history` on a fleet: each host's rows merged by rollout id. */
export async function fleetHistory(fleet: FleetTarget, options: { json: boolean; limit: number }, out: Output): Promise<ExitCode> {
  return withFleet(fleet, 'history', async (session) => {
    // A rollout is several rows on one host (a deploy and its revert): ask each host for more rows than
    // entries wanted, so cutting at the oldest row a host gave (mergeFleetHistory) leaves `limit` of them.
    const perHost = Math.min(9999, options.limit * 3 + 2);
    const answers = await askEach(session, fleet.rollout.concurrency, async (m) => ({
      rows: (await m.session.agent.get<{ deployments: FleetDeploymentRow[] }>(`/apps/${fleet.app}/deployments?limit=${perHost}`)).deployments,
      // A promotion is recorded once per side (a fleet's on its primary): every host's records, newest first.
      promotions: (await m.session.agent.get<{ promotions: PromotionRecord[] }>(`/apps/${fleet.app}/promotions`).catch(() => ({ promotions: [] as PromotionRecord[] }))).promotions,
    }));
    const entries = mergeFleetHistory(answers.map((a) => ({ name: a.name, rows: a.value?.rows ?? [], more: (a.value?.rows.length ?? 0) >= perHost })), fleet.hosts.map(hostName), options.limit);
    const promotions = answers.flatMap((a) => a.value?.promotions ?? []).sort((a, b) => b.at.localeCompare(a.at)).slice(0, options.limit);
    const missing = [...session.unreachable.map((u) => u.name), ...answers.filter((a) => a.error).map((a) => a.name)];
    if (options.json) out.data({ history: entries, unreachable: missing, promotions });
    else out.data([formatFleetHistory(entries), formatPromotions(promotions), ...(missing.length ? [`(not reached: ${missing.join(', ')})`] : [])].filter(Boolean).join('\n'));
    return EXIT.ok;
  });
}

/** Pure: one row per release any host keeps, with its state on each host. */
export function formatFleetReleases(perHost: readonly { name: string; rows: ReleaseListEntry[] | null }[]): string {
  const ids: string[] = [];
  for (const h of perHost) for (const r of h.rows ?? []) if (!ids.includes(r.releaseId)) ids.push(r.releaseId);
  if (ids.length === 0) return 'no releases on the fleet';
  return ids.map((id) => `${shortSha(id).padEnd(25)}  ${perHost.map((h) => {
    if (!h.rows) return `${h.name}: unreachable`;
    return `${h.name}: ${h.rows.find((r) => r.releaseId === id)?.state ?? 'absent'}`;
  }).join('  ')}`).join('\n');
}

/** `deploy releases` on a fleet: which host keeps which release, in what state. */
export async function fleetReleases(fleet: FleetTarget, options: { json: boolean }, out: Output): Promise<ExitCode> {
  return withFleet(fleet, 'releases', async (session) => {
    const answers = await askEach(session, fleet.rollout.concurrency, async (m) => (await m.session.agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${fleet.app}/releases`)).releases);
    const perHost = fleet.hosts.map(hostName).map((name) => ({ name, rows: answers.find((a) => a.name === name)?.value ?? null }));
    out.data(options.json ? { releases: perHost } : formatFleetReleases(perHost));
    return EXIT.ok;
  });
}

/** `deploy lock status` on a fleet: each host's lock. */
export async function fleetLockStatus(fleet: FleetTarget, options: { json: boolean }, out: Output): Promise<ExitCode> {
  return withFleet(fleet, 'lock status', async (session) => {
    const answers = await askEach(session, fleet.rollout.concurrency, async (m) => (await m.session.agent.get<{ lock: LockInfo | null }>(`/apps/${fleet.app}/lock`)).lock);
    const rows = fleet.hosts.map(hostName).map((name) => {
      const a = answers.find((x) => x.name === name);
      return { host: name, lock: a?.value ?? null, error: a ? a.error : 'unreachable' };
    });
    out.data(options.json ? { locks: rows } : rows.map((r) => `${r.host.padEnd(16)} ${r.error ? `unreachable (${r.error})` : formatLock(r.lock)}`).join('\n'));
    return EXIT.ok;
  });
}

/** `deploy lock release` on a fleet: each host's lock, by the host lock's own rules (stale, own, or --force). */
export async function fleetLockRelease(fleet: FleetTarget, options: { json: boolean; force: boolean }, out: Output): Promise<ExitCode> {
  return withFleet(fleet, 'lock release', async (session) => {
    const answers = await askEach(session, fleet.rollout.concurrency, (m) =>
      m.session.agent.delete<{ released: boolean; lock: LockInfo | null }>(`/apps/${fleet.app}/lock?force=${options.force}`));
    // Every host of the fleet has a row: one not reached keeps its lock, and says so.
    const rows = fleet.hosts.map(hostName).map((name) => {
      const a = answers.find((x) => x.name === name);
      const miss = session.unreachable.find((u) => u.name === name);
      return { host: name, released: a?.value?.released ?? false, lock: a?.value?.lock ?? null, error: a ? a.error : `unreachable (${miss ? errorMessage(miss.error) : 'no answer'})` };
    });
    out.data(options.json ? { locks: rows } : rows.map((r) => `${r.host.padEnd(16)} ${r.error ? `not released: ${r.error}` : r.released ? `released (${formatLock(r.lock)})` : 'there was no lock'}`).join('\n'));
    // A host that refused is exit 3; one not reached (its lock, if any, left as it is) exit 5.
    if (answers.some((a) => a.error)) return EXIT.failedBeforeSwitch;
    return session.unreachable.length ? EXIT.unreachable : EXIT.ok;
  });
}
