import { SLOTS, type Slot } from '../../contract/names.js';

export interface SwitchPlanInput {
  /** The slot the switch flag points at now. */
  serving: Slot;
  /** The slot traffic must end on. */
  target: Slot;
  /** The app's include as nginx has it on disk (null before the first switch). */
  onDisk: string | null;
  /** The generation recorded for that include (0 before the first switch). */
  generationNow: number;
  /** The include for the slots as they will be, rendered with a generation and a fallback slot. */
  render: (generation: number, fallback: Slot) => string;
  /** Apply the include even when it looks unchanged (crash recovery: it may not be loaded yet). */
  reapply: boolean;
}

export interface SwitchPlan {
  /** Render, `nginx -t`, reload and prove the include, while traffic stays on the serving slot. */
  applyInclude: boolean;
  /** Move the flag to the target slot (no reload). */
  flip: boolean;
}

/**
 * Pure: what a switch must do. The include carries both slots' ports and routes but no release
 * (nginx reads the serving release from the switch flag), so it changes only when ports, routes,
 * listen settings or the template change: a push of a new release with the same routes costs no
 * `nginx -t` and no reload. Its fallback slot (served only if nginx cannot see the flag, which
 * every flip's proof rules out) may name either slot, so a flip alone never costs a reload either.
 */
export function planSwitch(input: SwitchPlanInput): SwitchPlan {
  const unchanged = input.onDisk !== null && input.generationNow >= 1
    && SLOTS.some((fallback) => input.render(input.generationNow, fallback) === input.onDisk);
  return { applyInclude: input.reapply || !unchanged, flip: input.serving !== input.target };
}
