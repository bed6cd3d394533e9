import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { targetFields } from '../commands/push.js';
import type { Output } from '../output.js';
import { formatMoves, moveHosts, type HostMove } from './moves.js';
import { planReconcile, recordsByHost, skippedOnly, type ReconcilePlan } from './reconcile-plan.js';
import type { FleetSession } from './session.js';
import { newestRecord, readFleetRecords, writeFleetRecord } from './record.js';
import { snapshotFleet } from './snapshot.js';
import type { HostSnapshot } from './status-view.js';
import type { FleetRecord } from '../../contract/api.js';
import { hostName, type FleetTarget } from './target.js';

/** How long reconcile-first waits for a rollout the fleet lost (its agent finishes or reverts on its own). */
export const BUSY_WAIT_MS = 10 * 60_000;
const BUSY_POLL_MS = 1_000;

export interface ReconcileOutcome {
  plan: ReconcilePlan;
  moves: HostMove[];
  /** What the plan was made from: each host's status and lock as read (before any move). */
  snapshots: HostSnapshot[];
}

/** What reconcile-first reads: every host's status and lock, and every host's fleet record. */
export interface FleetReading { snapshots: HostSnapshot[]; records: Array<FleetRecord | null> }

/** Reads what reconcile-first plans from (read-only: a push starts it while it packs). */
export async function readFleet(session: FleetSession, fleet: FleetTarget): Promise<FleetReading> {
  const [snapshots, records] = await Promise.all([snapshotFleet(session, fleet), readFleetRecords(session.members, fleet.app)]);
  return { snapshots, records };
}

/**
 * Reconcile-first: before a fleet command acts, every reachable host that serves something else
 * than the fleet record's release is brought to it (a rollback --to it: one flip when its slot is
 * warm), and says so. Hosts still running a rollout are waited for first. A host it cannot bring
 * back stops the command (fleet_drift_left): acting on a fleet in two states would hide the drift.
 */
export async function reconcileFirst(session: FleetSession, fleet: FleetTarget, out: Output,
  options: { busyWaitMs?: number; alsoFine?: string; read?: Promise<FleetReading> } = {}): Promise<ReconcileOutcome> {
  const deadline = Date.now() + (options.busyWaitMs ?? BUSY_WAIT_MS);
  let said = false;
  let reading = options.read;
  for (;;) {
    const { snapshots, records } = await (reading ?? readFleet(session, fleet));
    reading = undefined;
    const record = newestRecord(records);
    const perHostRecord = recordsByHost(records, fleet.hosts.map(hostName));
    const perHost = new Map([...perHostRecord].map(([h, r]) => [h, { releaseId: r.releaseId, rolloutId: r.rolloutId }]));
    const unheld = skippedOnly(records, fleet.hosts.map(hostName));
    const plan = planReconcile(snapshots, record ? { releaseId: record.releaseId, rolloutId: record.rolloutId } : null, { perHost, unheld, alsoFine: options.alsoFine ?? null });
    if (plan.busy.length > 0) {
      if (Date.now() >= deadline) {
        throw new SlipwayError('fleet_busy', `a rollout still runs on ${plan.busy.join(', ')}`, {
          hint: 'wait for it to end (deploy history shows it), then run the command again',
        });
      }
      if (!said) out.info(`reconcile: waiting for the rollout still running on ${plan.busy.join(', ')} to end`, { busy: plan.busy });
      said = true;
      await delay(BUSY_POLL_MS);
      continue;
    }
    if (plan.held.length > 0) {
      const lines = plan.held.map((h) => `${h.host}: locked by ${h.holder} for ${h.action}${h.expiresAt ? ` until ${h.expiresAt}` : ''}`);
      throw new SlipwayError('fleet_locked', `the fleet is locked: ${lines.join('; ')}`, {
        details: lines,
        hint: 'a rollout that did not finish (its controller gone) holds it: it expires by itself at the time shown, or: deploy lock release --force',
      });
    }
    if (plan.actions.length === 0 || !record) return { plan, moves: [], snapshots };
    out.info(`reconcile: ${plan.note}`, { reconcile: plan.actions });
    const rolloutId = randomUUID();
    const moves = await moveHosts(session.members, plan.actions.map((a) => {
      const member = session.member(a.host)!;
      const held = perHostRecord.get(a.host) ?? record;
      const reason = `reconcile to the fleet's release ${shortSha(a.to)} (rollout ${held.rolloutId.slice(0, 8)})`;
      return {
        host: a.host, from: a.from, to: a.to, path: `/apps/${fleet.app}/rollback`,
        body: { to: a.to, reason, rolloutId, keepPrevious: true, ...targetFields(member.target, null) },
      };
    }), fleet.rollout.concurrency, out);
    const failed = moves.filter((m) => m.outcome !== 'succeeded');
    if (failed.length > 0) {
      throw new SlipwayError('fleet_drift_left', `reconcile could not bring ${failed.map((m) => `${m.host} to ${shortSha(m.to)}`).join(', ')} (the fleet's release)`, {
        details: formatMoves(moves),
        hint: 'nothing else was done; see deploy history on that host, fix it, or deploy push the fleet again',
      });
    }
    // The reconciled hosts missed their record (that is how they drifted): they hold it from now on.
    await Promise.all(moves.map((mv) => writeFleetRecord(session.members.filter((m) => m.name === mv.host), fleet.app, perHostRecord.get(mv.host) ?? record)));
    out.info(`reconcile: ${moves.map((m) => `${m.host} now on ${shortSha(m.to)}`).join(', ')}`, { reconciled: moves.map((m) => m.host) });
    return { plan, moves, snapshots };
  }
}
