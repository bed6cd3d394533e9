import type { FleetRecord } from '../../contract/api.js';
import { errorMessage } from '../../contract/errors.js';
import type { FleetMember } from './session.js';

/** Writes the fleet record on every member (in parallel); returns "host: why" for each that refused. */
export async function writeFleetRecord(members: readonly FleetMember[], app: string, record: FleetRecord): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(members.map(async (m) => {
    try {
      await m.session.agent.json('PUT', `/apps/${app}/fleet`, record);
    } catch (error) {
      failed.push(`${m.name}: ${errorMessage(error)}`);
    }
  }));
  return failed;
}

/** Reads the fleet record of every member; the newest (by `at`) wins, null when none has one. */
export async function readFleetRecord(members: readonly FleetMember[], app: string): Promise<FleetRecord | null> {
  return newestRecord(await readFleetRecords(members, app));
}

/** Each member's fleet record, in member order (null: none, or it could not be read). */
export function readFleetRecords(members: readonly FleetMember[], app: string): Promise<Array<FleetRecord | null>> {
  return Promise.all(members.map((m) => m.session.agent.get<{ fleet: FleetRecord | null }>(`/apps/${app}/fleet`).then((r) => r.fleet, () => null)));
}

/** Pure: the newest of some fleet records (ISO times compare as strings). */
export function newestRecord(records: ReadonlyArray<FleetRecord | null>): FleetRecord | null {
  let newest: FleetRecord | null = null;
  for (const r of records) if (r && (!newest || r.at > newest.at)) newest = r;
  return newest;
}
