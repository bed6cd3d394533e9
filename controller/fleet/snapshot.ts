import type { AppStatus, LockInfo } from '../../contract/api.js';
import { errorMessage } from '../../contract/errors.js';
import { settleBounded } from '../../lib/bounded.js';
import type { FleetSession } from './session.js';
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
