import { SlipwayError } from '../../contract/errors.js';
import { otherSlot, type Slot } from '../../contract/names.js';

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
