import type { AppStatus, FleetRecord, LockInfo } from '../../contract/api.js';
import { errorMessage } from '../../contract/errors.js';
import { settleBounded } from '../../lib/bounded.js';
import type { FleetMember, FleetSession } from './session.js';
import { hostName, type FleetTarget } from './target.js';
import type { HostSnapshot } from './status-view.js';

/**
 * Every host's status and lock, asked in parallel, in fleet order; a host not reached (at connect,
 * or now) is a snapshot without status, with the reason.
 */
export async function snapshotFleet(session: FleetSession, fleet: Pick<FleetTarget, 'hosts' | 'app' | 'rollout'>): Promise<HostSnapshot[]> {
  const asked = await settleBounded(session.members, fleet.rollout.concurrency, async (m) => ({
    status: await m.session.agent.get<AppStatus>(`/apps/${fleet.app}`),
    lock: (await m.session.agent.get<{ lock: LockInfo | null }>(`/apps/${fleet.app}/lock`)).lock,
  }));
  const byName = new Map<string, HostSnapshot>();
  session.members.forEach((m, i) => {
    const r = asked[i]!;
    byName.set(m.name, r.status === 'fulfilled'
      ? { name: m.name, status: r.value.status, lock: r.value.lock, error: null }
      : { name: m.name, status: null, lock: null, error: errorMessage(r.reason) });
  });
  for (const miss of session.unreachable) byName.set(miss.name, { name: miss.name, status: null, lock: null, error: errorMessage(miss.error) });
  return fleet.hosts.map(hostName).filter((n) => byName.has(n)).map((n) => byName.get(n)!);
}

/**
 * The fleet record: the newest one any reached host holds (a host that was away when the last one
 * was written holds an older one, or none). null: no fleet command has completed on this fleet.
 */
export async function readFleetRecord(members: readonly FleetMember[], app: string, concurrency: number): Promise<FleetRecord | null> {
  const read = await settleBounded(members, concurrency, async (m) => (await m.session.agent.find<{ fleet: FleetRecord | null }>(`/apps/${app}/fleet`))?.fleet ?? null);
  let newest: FleetRecord | null = null;
  for (const r of read) {
    if (r.status !== 'fulfilled' || r.value === null) continue;
    if (newest === null || r.value.at > newest.at) newest = r.value;
  }
  return newest;
}

/** Writes `record` on each member; the names of hosts it could not be written on. */
export async function writeFleetRecord(members: readonly FleetMember[], app: string, record: FleetRecord, concurrency: number): Promise<string[]> {
  const written = await settleBounded(members, concurrency, (m) => m.session.agent.json('PUT', `/apps/${app}/fleet`, record));
  return members.filter((_, i) => written[i]!.status === 'rejected').map((m) => m.name);
}
