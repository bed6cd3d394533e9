import type { Slot } from '../../contract/names.js';
import type { AppConfigInput, SlotInput } from './render-input.js';

/** The one process of a legacy app (agent.json apps.<app>.start): PM2 names it <app>-<slot>. */
export const LEGACY_PROCESS = 'web';

/** What a legacy app config (agent.json apps.<app>.slots and .public) says about nginx. */
export interface LegacyAppNginx {
  slots: Record<Slot, { port: number }>;
  public: { listenHost: string; listenPort: number; serverNames: string[] };
}

/**
 * Pure: the render input of an app configured the legacy way: in each slot one process "web" on
 * the slot's pinned port, one route "/" with public.serverNames on public.listenPort, WebSockets
 * passed (the spec's default), nginx's default body size and read timeout.
 */
export function legacySlotInput(config: LegacyAppNginx, slot: Slot, releaseId: string | null): SlotInput {
  return {
    releaseId,
    ports: { [LEGACY_PROCESS]: config.slots[slot].port },
    routes: [{ listenPort: config.public.listenPort, serverNames: [...config.public.serverNames], path: '/', process: LEGACY_PROCESS, websocket: true }],
  };
}

export function legacyRenderInput(options: {
  app: string;
  slot: Slot;
  releases: Record<Slot, string | null>;
  switchDir: string;
  generation: number;
  config: LegacyAppNginx;
}): AppConfigInput {
  const { app, slot, releases, switchDir, generation, config } = options;
  return {
    app, slot, switchDir, generation,
    slots: { blue: legacySlotInput(config, 'blue', releases.blue), green: legacySlotInput(config, 'green', releases.green) },
    listenHost: config.public.listenHost,
  };
}
