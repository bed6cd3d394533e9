import { randomUUID } from 'node:crypto';
import type { FleetRecord } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha, type Slot } from '../../contract/names.js';
import { EXIT, type ExitCode } from '../errors.js';
import { planFleetRollback, planFleetSwitch, type FlipPlan } from '../fleet/flip-plan.js';
import { formatMoves, moveHosts, movedHosts, type HostMove, type HostRequest } from '../fleet/moves.js';
import { reconcileFirst } from '../fleet/reconcile.js';
import { openFleet, unreachableError, type FleetSession } from '../fleet/session.js';
import { readFleetRecord, writeFleetRecord } from '../fleet/record.js';
import { snapshotFleet } from '../fleet/snapshot.js';
import { hostName, type FleetTarget } from '../fleet/target.js';
import { leaveOutUnreachable } from '../fleet/push.js';
import type { HostSnapshot } from '../fleet/status-view.js';
import type { Output } from '../output.js';
import { localActor } from '../session.js';
import { targetFields } from './push.js';

export interface FleetMoveOptions {
  reason?: string;
  /** The command names hosts (--hosts): drift on purpose, so no reconcile-first and no fleet record; the reason says so. */
  limitedTo: string[] | null;
  /** Go on without hosts not reached before any move (--skip-unreachable): named in the fleet record as skipped. */
  skipUnreachable?: boolean;
}

/**
 * Opens every host of the fleet; any not reached refuses the command before anything changed,
 * unless --skip-unreachable: then the command goes on without it (said, and returned as skipped).
 */
async function openAll(fleet: FleetTarget, what: string, options: FleetMoveOptions, out: Output): Promise<{ session: FleetSession; skipped: string[] }> {
  const session = await openFleet(fleet);
  try {
    const refused = `${what} refused, nothing changed`;
    if (session.members.length === 0) throw unreachableError(session.unreachable, refused);
    return { session, skipped: leaveOutUnreachable(session.unreachable, options.skipUnreachable === true, refused, out) };
  } catch (error) {
    await session.close();
    throw error;
  }
}

/** The snapshots of the hosts a move acts on: every reached host must have answered (a skipped one is left out). */
function reachedSnapshots(snapshots: readonly HostSnapshot[], skipped: readonly string[], what: string): HostSnapshot[] {
  const lost = snapshots.filter((s) => s.status === null && !skipped.includes(s.name));
  if (lost.length > 0) {
    throw new SlipwayError('fleet_unreachable', `${what} refused, nothing changed: ${lost.map((s) => s.name).join(', ')} did not answer`, {
      details: lost.map((s) => `${s.name}: ${s.error ?? 'no answer'}`), hint: 'bring the host back, or pass --skip-unreachable to go on without it (recorded as drift)',
    });
  }
  return snapshots.filter((s) => s.status !== null);
}

/** Pure: the reason recorded on each host's deployment (a --hosts command says which hosts it was limited to). */
export function recordedReason(reason: string | undefined, limitedTo: string[] | null): string | undefined {
  if (!limitedTo) return reason;
  return `[--hosts ${limitedTo.join(',')}]${reason ? ` ${reason}` : ''}`;
}

/**
 * Moves every host of the plan in parallel (one request each), then, if any did not move, moves
 * the ones that did back to where they were (one flip each: their previous slot was kept warm), so
 * the fleet ends on one release. Writes the fleet record (not for --hosts) and reports per host.
 */
async function runFlip(session: FleetSession, fleet: FleetTarget, kind: 'rollback' | 'switch', plan: FlipPlan, request: (host: string) => Pick<HostRequest, 'path' | 'body'>,
  options: FleetMoveOptions, skipped: readonly string[], out: Output): Promise<ExitCode> {
  const previous = await readFleetRecord(session.members, fleet.app);
  const rolloutId = randomUUID();
  if (plan.moves.length === 0) {
    out.info(`every host already serves ${shortSha(plan.to)}`, { releaseId: plan.to });
    return EXIT.ok;
  }
  out.info(`→ ${kind} of ${fleet.app}${fleet.env ? ` [${fleet.env}]` : ''} to ${shortSha(plan.to)} on ${plan.moves.map((m) => m.host).join(', ')} (rollout ${rolloutId.slice(0, 8)})`, { rolloutId });
  const withId = (host: string) => {
    const r = request(host);
    return { ...r, body: { ...r.body, rolloutId, keepPrevious: true } };
  };
  const moves = await moveHosts(session.members, plan.moves.map((m) => ({ host: m.host, from: m.from, to: plan.to, ...withId(m.host) })), fleet.rollout.concurrency, out);
  const allMoved = moves.every((m) => m.outcome === 'succeeded');
  let reverts: HostMove[] = [];
  if (!allMoved) {
    const back = movedHosts(moves).filter((m) => m.from !== null);
    if (back.length) out.info(`✗ ${moves.filter((m) => m.outcome !== 'succeeded').map((m) => m.host).join(', ')} did not move: reverting ${back.map((m) => m.host).join(', ')}`);
    reverts = await moveHosts(session.members, back.map((m) => {
      const member = session.member(m.host)!;
      return {
        host: m.host, from: m.to, to: m.from!, path: `/apps/${fleet.app}/rollback`,
        body: { to: m.from!, reason: `fleet revert of ${kind} ${rolloutId.slice(0, 8)}`, rolloutId, keepPrevious: true, ...targetFields(member.target, null) },
      };
    }), fleet.rollout.concurrency, out);
  }
  const revertFailed = reverts.some((r) => r.outcome !== 'succeeded');
  const inDoubt = moves.some((m) => m.outcome === 'in_doubt');
  if (!options.limitedTo) {
    const outcome = allMoved ? 'succeeded' : revertFailed || inDoubt ? 'failed' : 'rolled_back';
    const record: FleetRecord = {
      rolloutId, kind, releaseId: allMoved ? plan.to : (previous?.releaseId ?? plan.moves[0]!.from ?? plan.to), attemptedReleaseId: plan.to, outcome,
      hosts: fleet.hosts.map(hostName).filter((h) => !skipped.includes(h)), skipped: [...skipped], env: fleet.env, actor: localActor(), reason: options.reason ?? null, at: new Date().toISOString(),
    };
    const notWritten = await writeFleetRecord(session.members, fleet.app, record);
    if (notWritten.length) out.info(`fleet record not written on ${notWritten.join(', ')} (the next command there reconciles it)`);
  }
  const table = [`${kind} ${rolloutId.slice(0, 8)}:`, ...plan.already.map((h) => `  ${h.padEnd(16)} already on ${shortSha(plan.to)}`), ...formatMoves(moves, reverts),
    ...skipped.map((h) => `  ${h.padEnd(16)} skipped: unreachable, left as it is (drift)`)];
  out.data(table.join('\n'));
  if (allMoved) return EXIT.ok;
  const details = formatMoves(moves, reverts);
  if (revertFailed || inDoubt) {
    throw new SlipwayError(inDoubt && !revertFailed ? 'fleet_in_doubt' : 'fleet_failed_after_switch', `the ${kind} did not complete and the fleet may be on two releases`, {
      details, hint: 'deploy status shows each host; the next fleet command reconciles reachable hosts to the fleet record',
    });
  }
  throw new SlipwayError('fleet_rolled_back', `the ${kind} failed on ${moves.filter((m) => m.outcome !== 'succeeded').map((m) => m.host).join(', ')}; every host that moved went back`, {
    details, hint: 'deploy history --show <id> on the failing host says why',
  });
}

/** `deploy rollback` on a fleet: reconcile first, then every host to one release (the standby one, or --to), one flip each. */
export async function fleetRollback(fleet: FleetTarget, options: FleetMoveOptions & { to?: string; force: boolean }, out: Output): Promise<ExitCode> {
  const { session, skipped } = await openAll(fleet, 'rollback', options, out);
  try {
    if (!options.limitedTo) await reconcileFirst(session, fleet, out);
    const snapshots = reachedSnapshots(await snapshotFleet(session, fleet), skipped, 'rollback');
    const plan = planFleetRollback(snapshots, options.to);
    const reason = recordedReason(options.reason, options.limitedTo);
    return await runFlip(session, fleet, 'rollback', plan, (host) => ({
      path: `/apps/${fleet.app}/rollback`,
      body: { to: plan.to, force: options.force, ...(reason ? { reason } : {}), ...targetFields(session.member(host)!.target, null) },
    }), options, skipped, out);
  } finally {
    await session.close();
  }
}

/** `deploy switch <slot>` on a fleet: the slot must hold one release on every host; each host flips, in parallel. */
export async function fleetSwitch(fleet: FleetTarget, slot: Slot, options: FleetMoveOptions, out: Output): Promise<ExitCode> {
  const { session, skipped } = await openAll(fleet, 'switch', options, out);
  try {
    if (!options.limitedTo) await reconcileFirst(session, fleet, out);
    const plan = planFleetSwitch(reachedSnapshots(await snapshotFleet(session, fleet), skipped, 'switch'), slot);
    const reason = recordedReason(options.reason, options.limitedTo);
    return await runFlip(session, fleet, 'switch', plan, () => ({
      path: `/apps/${fleet.app}/switch`,
      body: { slot, ...(fleet.env !== null ? { env: fleet.env } : {}), ...(reason ? { reason } : {}) },
    }), options, skipped, out);
  } finally {
    await session.close();
  }
}

/** `deploy reconcile`: only the reconcile-first step: every reachable host to the fleet record's release. */
export async function fleetReconcile(fleet: FleetTarget, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openFleet(fleet);
  try {
    if (session.members.length === 0) throw unreachableError(session.unreachable, 'reconcile');
    const { plan, moves } = await reconcileFirst(session, fleet, out);
    const summary = plan.target === null ? 'no fleet record yet: nothing to reconcile against (deploy status shows the drift)'
      : moves.length === 0 ? `every reachable host ${plan.leftOut.length ? 'that took part in its rollouts ' : ''}serves the fleet's release ${shortSha(plan.target)}`
        : `reconciled ${moves.map((m) => m.host).join(', ')} to ${shortSha(plan.target)}`;
    const unreachable = session.unreachable.map((u) => u.name);
    // A host left out of the rollout that brought the fleet's release does not have it: a push or promotion brings it, not a flip.
    const leftOut = plan.leftOut.length ? `\n  left out of the rollout that brought it, not moved: ${plan.leftOut.join(', ')} (deploy push or deploy promote brings them)` : '';
    out.data(options.json ? { target: plan.target, reconciled: moves.map((m) => m.host), unreachable, leftOut: plan.leftOut }
      : `${summary}${leftOut}${unreachable.length ? `\n  unreachable, not reconciled: ${unreachable.join(', ')}` : ''}`);
    return unreachable.length ? EXIT.unreachable : EXIT.ok;
  } finally {
    await session.close();
  }
}
