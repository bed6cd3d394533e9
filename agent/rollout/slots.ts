import { SlipwayError } from '../../contract/errors.js';
import { otherSlot, shortSha, type Slot } from '../../contract/names.js';

export interface SlotView { slot: Slot; releaseId: string | null }

/**
 * Pure: which slot a new release goes to. Default is the slot not serving traffic; the live
 * slot is never a target, because replacing it would take the site down for the restart.
 */
export function chooseTargetSlot(app: string, liveSlot: Slot | null, requested: Slot | undefined): Slot {
  if (requested === undefined) return liveSlot ? otherSlot(liveSlot) : 'blue';
  if (requested === liveSlot) {
    throw new SlipwayError('slot_is_live', `${requested} is the live slot of ${app}; deploying into it would interrupt traffic`, {
      hint: `deploy into the standby slot instead: deploy push --slot ${otherSlot(requested)} (or omit --slot)`,
      status: 409,
    });
  }
  return requested;
}

/** Pure: whether a push of this release can be skipped because the target already serves it. */
export function alreadyLive(liveSlot: Slot | null, slots: SlotView[], releaseId: string): Slot | null {
  const live = slots.find((s) => s.slot === liveSlot);
  return live && live.releaseId === releaseId ? live.slot : null;
}

export function describeRelease(app: string, slot: Slot, releaseId: string): string {
  return `${app}/${slot}@${shortSha(releaseId)}`;
}
