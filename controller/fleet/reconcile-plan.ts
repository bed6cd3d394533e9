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
  /** What the plan says, for the operator (null when there is nothing to say). */
  note: string | null;
}

/**
 * Pure: what reconcile-first does before a fleet command. Only the fleet record says what the fleet
 * serves: a controller killed mid-rollout writes no record, so the record of the rollout before it
 * wins and the hosts it had switched go back. Without a record nothing is changed (status names the
 * drift; a push makes the fleet one). A host whose lock a running rollout holds is busy: its agent
 * finishes or reverts on its own, and the caller waits for that before planning again.
 */
export function planReconcile(snapshots: readonly HostSnapshot[], record: FleetExpectation | null): ReconcilePlan {
  const unreachable = snapshots.filter((s) => s.status === null).map((s) => s.name);
  if (!record) {
    return { target: null, actions: [], unreachable, busy: [], held: [], note: null };
  }
  const busy: string[] = [];
  const held: ReconcilePlan['held'] = [];
  const actions: ReconcileAction[] = [];
  for (const s of snapshots) {
    if (!s.status) continue;
    if (s.status.liveReleaseId === record.releaseId) continue;
    if (s.lock && !s.lock.stale && s.lock.deploymentId !== null) {
      busy.push(s.name);
      continue;
    }
    if (s.lock && !s.lock.stale) {
      held.push({ host: s.name, holder: s.lock.holder, action: s.lock.action, expiresAt: s.lock.expiresAt });
      continue;
    }
    const warm = s.status.slots.some((slot) => !slot.live && slot.releaseId === record.releaseId && slot.process?.status === 'online');
    actions.push({ host: s.name, from: s.status.liveReleaseId, to: record.releaseId, warm });
  }
  const parts = [
    actions.length ? `reconciling ${actions.map((a) => `${a.host} (${a.from ? shortSha(a.from) : 'nothing'} → ${shortSha(a.to)}${a.warm ? ', one flip' : ''})`).join(', ')} to the fleet's release ${shortSha(record.releaseId)}${record.rolloutId ? ` (rollout ${record.rolloutId.slice(0, 8)})` : ''}` : '',
    busy.length ? `waiting for the running rollout on ${busy.join(', ')}` : '',
    unreachable.length ? `unreachable, left as they are: ${unreachable.join(', ')}` : '',
  ].filter(Boolean);
  return { target: record.releaseId, actions, unreachable, busy, held, note: parts.length ? parts.join('; ') : null };
}
