import { SlipwayError } from '../../contract/errors.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { HostSnapshot } from './status-view.js';

/** What a fleet rollback or switch asks each host to do: the same release everywhere. */
export interface FlipPlan {
  /** The release every host goes to. */
  to: string;
  /** Hosts already on it: nothing to do there. */
  already: string[];
  /** Hosts to move, with the release they leave (what a revert goes back to). */
  moves: { host: string; from: string | null; warm: boolean }[];
}

function warmSlotOf(s: HostSnapshot, releaseId: string): boolean {
  return s.status!.slots.some((slot) => !slot.live && slot.releaseId === releaseId && slot.process?.status === 'online');
}

function planTo(snapshots: readonly HostSnapshot[], to: string): FlipPlan {
  const already: string[] = [];
  const moves: FlipPlan['moves'] = [];
  for (const s of snapshots) {
    if (s.status!.liveReleaseId === to) already.push(s.name);
    else moves.push({ host: s.name, from: s.status!.liveReleaseId, warm: warmSlotOf(s, to) });
  }
  return { to, already, moves };
}

/**
 * Pure: a fleet rollback's target. `--to` names it (a full id or a prefix each host resolves the
 * same way); without it, the release in every host's standby slot, which must be one release for
 * the rollback to be one flip per host. Snapshots are of reachable hosts only.
 */
export function planFleetRollback(snapshots: readonly HostSnapshot[], to: string | undefined): FlipPlan {
  if (to !== undefined) {
    const known = new Set(snapshots.flatMap((s) => [...s.status!.slots.map((slot) => slot.releaseId), ...s.status!.releases.map((r) => r.releaseId)]));
    const full = [...known].filter((id): id is string => id !== null && id.startsWith(to));
    if (full.length > 1) {
      throw new SlipwayError('usage', `--to ${to} matches several releases on the fleet: ${full.map(shortSha).join(', ')}`, { hint: 'give more characters of the release id' });
    }
    return planTo(snapshots, full[0] ?? to);
  }
  const standby = new Map<string, string[]>();
  for (const s of snapshots) {
    const slot = s.status!.slots.find((x) => !x.live && x.releaseId !== null);
    const key = slot?.releaseId ?? '(none)';
    standby.set(key, [...(standby.get(key) ?? []), s.name]);
  }
  const keys = [...standby.keys()];
  if (keys.length !== 1 || keys[0] === '(none)') {
    throw new SlipwayError('fleet_rollback_ambiguous', `the fleet's hosts do not hold one previous release in their standby slots: ${[...standby.entries()].map(([r, hosts]) => `${r === '(none)' ? 'none' : shortSha(r)} on ${hosts.join(', ')}`).join('; ')}`, {
      hint: 'name the release: deploy rollback --to <release> (deploy releases lists them)',
    });
  }
  return planTo(snapshots, keys[0]!);
}

/**
 * Pure: a fleet switch to `slot`: the slot must hold one release on every host (slots are per host,
 * so after a reconcile or a --hosts command the same slot can hold different releases).
 */
export function planFleetSwitch(snapshots: readonly HostSnapshot[], slot: Slot): FlipPlan {
  const inSlot = new Map<string, string[]>();
  for (const s of snapshots) {
    const releaseId = s.status!.slots.find((x) => x.slot === slot)?.releaseId ?? '(none)';
    inSlot.set(releaseId, [...(inSlot.get(releaseId) ?? []), s.name]);
  }
  const keys = [...inSlot.keys()];
  if (keys.length !== 1 || keys[0] === '(none)') {
    throw new SlipwayError('fleet_rollback_ambiguous', `slot ${slot} does not hold one release on every host: ${[...inSlot.entries()].map(([r, hosts]) => `${r === '(none)' ? 'nothing' : shortSha(r)} on ${hosts.join(', ')}`).join('; ')}`, {
      hint: 'move the fleet by release instead: deploy rollback --to <release>',
    });
  }
  return planTo(snapshots, keys[0]!);
}
