import type { AgentConfig } from '../config.js';
import type { StateStore } from '../state/store.js';
import { NO_RELEASE, type Slot } from '../../contract/names.js';
import type { NginxProbe } from '../nginx/controller.js';
import type { NginxRenderInput, TrafficSwitcher } from './deps.js';
import { probeTargetOf } from './public-address.js';
import { legacyRenderInput } from '../nginx/legacy-input.js';
import { planSwitch } from './switch-plan.js';
import { releaseStateAfterSwitch } from './activation-plan.js';

export interface TrafficDeps {
  config: AgentConfig;
  state: StateStore;
  nginx: TrafficSwitcher;
  renderNginx: (input: NginxRenderInput) => string;
}

/** How the switch was proven: through nginx, or not at all because the app has no routes. */
export interface SwitchOutcome {
  /** False when neither slot has a route: nginx serves nothing of the app, so there was nothing to read back. */
  provenOverHttp: boolean;
}

export interface SwitchOptions {
  /** Apply the include even when it looks unchanged (crash recovery). */
  reapply?: boolean;
  /** Test-only fault points inside the switch: before the flip, before the record. */
  faultPoint?: (point: 'flip' | 'record') => Promise<void>;
  /** More state written in the same transaction as the new live slot (the activation's marks). */
  record?: () => void;
}

/**
 * Moves an app's traffic to a slot and records it: used by rollouts, swap-backs and crash
 * recovery. Both slots are upstreams of the app's include and a flag picks one per request, so
 * traffic moves with one atomic rename and no reload (which would close every idle client
 * connection). The include is re-rendered first; only when it changed is it tested, reloaded and
 * proven, while traffic still goes to the serving slot.
 */
export class TrafficSwitch {
  constructor(private readonly deps: TrafficDeps) {}

  async switchTraffic(app: string, slot: Slot, releaseId: string, options: SwitchOptions = {}): Promise<SwitchOutcome> {
    const { state, config, nginx } = this.deps;
    const appConfig = config.apps[app]!;
    // The slot serving now: the flag's, else (no flag yet) what SQLite recorded, else the target.
    const serving = await nginx.ensureFlag(app, state.app(app)!.liveSlot ?? slot);
    const releaseOf = (s: Slot) => (s === slot ? releaseId : state.slot(app, s).releaseId);
    // The legacy config's one process and route; the runtime's slot layouts (h-runtime) replace this.
    const releases = { blue: releaseOf('blue'), green: releaseOf('green') };
    const input = (generation: number, fallback: Slot): NginxRenderInput => legacyRenderInput({
      app, slot: fallback, releases, switchDir: nginx.switchDirOf(app), generation, config: appConfig,
    });
    const render = (generation: number, fallback: Slot) => this.deps.renderNginx(input(generation, fallback));
    // Proofs go through one (listenPort, Host) of the target slot's routes; without routes there is none.
    const target = probeTargetOf(input(1, slot), slot, () => appConfig.health.path);
    const probe = (expectHeaders: Record<string, string>): NginxProbe | null => target && {
      url: `${target.baseUrl}${target.path}`,
      hostHeader: target.hostHeader,
      expectHeaders: { ...expectHeaders, 'x-slipway-switch': 'file' },
    };
    const plan = planSwitch({
      serving, target: slot, onDisk: await nginx.currentConfig(app), generationNow: state.app(app)!.generation, render,
      reapply: options.reapply ?? false,
    });
    if (plan.applyInclude) {
      const generation = state.nextGeneration(app);
      await nginx.apply({
        app,
        // Rendered for the target: per-route settings (body size, read timeout, WebSocket) cannot
        // change per request, so they follow the slot about to serve, and the fallback (served only
        // if nginx cannot see the flag, which the probe below rules out) is the slot live after the flip.
        config: render(generation, slot),
        probe: probe({ 'x-slipway-generation': String(generation), 'x-slipway-slot': serving, 'x-slipway-release': releaseOf(serving) ?? NO_RELEASE }),
      });
    }
    await options.faultPoint?.('flip');
    if (plan.flip) {
      await nginx.flip({ app, slot, probe: probe({ 'x-slipway-slot': slot, 'x-slipway-release': releaseId }) });
    }
    await options.faultPoint?.('record');
    state.transaction(() => {
      state.setLiveSlot(app, slot);
      state.setSlotState(app, slot, 'running');
      state.setReleaseState(app, releaseId, releaseStateAfterSwitch(state.release(app, releaseId)?.state));
      state.markReleaseLive(app, releaseId);
      options.record?.();
    });
    return { provenOverHttp: target !== null };
  }
}
