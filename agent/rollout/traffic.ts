import type { AgentConfig } from '../config.js';
import type { StateStore } from '../state/store.js';
import { NO_RELEASE, SLOTS, type Slot } from '../../contract/names.js';
import type { AppSpec } from '../../contract/spec.js';
import type { NginxProbe } from '../nginx/controller.js';
import type { RouteInput, SlotInput, TlsInput } from '../nginx/render-input.js';
import { policyOf } from '../spec/policy.js';
import type { NginxRenderInput, TrafficSwitcher } from './deps.js';
import { routeProbeOf, type RouteProbe } from './public-address.js';
import { planSwitch } from './switch-plan.js';
import { releaseStateAfterSwitch } from './activation-plan.js';
import type { SlotProcesses } from './slot-process.js';

export interface TrafficDeps {
  config: AgentConfig;
  state: StateStore;
  nginx: TrafficSwitcher;
  renderNginx: (input: NginxRenderInput) => string;
  /** The slots' recorded layouts and their releases' specs. */
  slots: Pick<SlotProcesses, 'layout' | 'specOf'>;
  /** The app's HTTPS as the include renders it (agent/tls): its installed certificate; null: plain HTTP. */
  tls?: { renderInput(app: string): TlsInput | null };
  /** Request headers of every probe through nginx (the probe secret); none when nginx sends markers to all. */
  probeHeaders?: Record<string, string>;
}

/** How the switch was proven: through nginx, or not at all because the app has no routes. */
export interface SwitchOutcome {
  /** False when neither slot has a route: nginx serves nothing of the app, so there was nothing to read back. */
  provenOverHttp: boolean;
  /**
   * The generation of the include when it had to be tested, reloaded and proven (ports, routes,
   * listen settings or template changed); null when the flag alone moved traffic (no reload).
   */
  appliedGeneration: number | null;
}

export interface SwitchOptions {
  /** Apply the include even when it looks unchanged (crash recovery). */
  reapply?: boolean;
  /** Test-only fault points inside the switch: before the flip, before the record. */
  faultPoint?: (point: 'flip' | 'record') => Promise<void>;
  /** More state written in the same transaction as the new live slot (the activation's marks). */
  record?: () => void;
}

/** Re-rendering the include of the slots as they are, with other TLS settings (agent/tls). */
export interface RefreshOptions {
  /** The TLS the include is rendered with instead of the one installed now (a certificate about to be installed). */
  tls: TlsInput | null;
}

/** Pure: a spec's routes as nginx gets them, each with its listen port settled. */
export function routeInputs(spec: AppSpec, listenPorts: readonly number[]): RouteInput[] {
  return spec.routes.flatMap((route): RouteInput[] => {
    const listenPort = route.listenPort ?? listenPorts[0] ?? null;
    if (listenPort === null) return [];
    return [{
      listenPort, serverNames: [...route.serverNames], path: route.path, process: route.process, websocket: route.websocket,
      ...(route.clientMaxBodySize !== undefined ? { clientMaxBodySize: route.clientMaxBodySize } : {}),
      ...(route.readTimeoutSeconds !== undefined ? { readTimeoutSeconds: route.readTimeoutSeconds } : {}),
    }];
  });
}

/**
 * Moves an app's traffic to a slot and records it: used by rollouts, swap-backs and crash
 * recovery. Every route of both slots is in the app's include and a flag picks the slot per
 * request, so traffic moves with one atomic rename and no reload (which would close every idle
 * client connection). The flag also names the slot's release, so the include does not: it is
 * rendered from both slots' layouts (ports) and their releases' specs (routes), and only when
 * that changed (ports, routes, listen settings, template) is it tested, reloaded and proven,
 * while traffic still goes to the serving slot. A push of a new release alone reloads nothing.
 */
export class TrafficSwitch {
  constructor(private readonly deps: TrafficDeps) {}

  /** What a slot gives nginx: its release, its listening processes' ports and its spec's routes. */
  slotInput(app: string, slot: Slot, releaseId: string | null): SlotInput {
    if (!releaseId) return { releaseId: null, ports: {}, routes: [] };
    const ports: Record<string, number> = {};
    for (const p of this.deps.slots.layout(app, slot)) if (p.port !== null && p.releaseId === releaseId) ports[p.process] = p.port;
    let spec: AppSpec | null = null;
    try {
      spec = this.deps.slots.specOf(app, releaseId).spec;
    } catch {
      spec = null;
    }
    const routes = spec ? routeInputs(spec, policyOf(this.deps.config.apps[app]!).listen.ports).filter((r) => ports[r.process] !== undefined) : [];
    return { releaseId, ports, routes };
  }

  /**
   * The probe through nginx that reaches `slot`'s release, or null when its spec has no routes.
   * With a certificate installed it goes over HTTPS, the way clients reach the app.
   */
  probeOf(app: string, releaseId: string | null, tls: TlsInput | null = this.tlsOf(app)): RouteProbe | null {
    if (!releaseId) return null;
    try {
      const route = routeProbeOf(this.deps.config, app, this.deps.slots.specOf(app, releaseId).spec, tls);
      return route && this.deps.probeHeaders ? { ...route, headers: this.deps.probeHeaders } : route;
    } catch {
      return null;
    }
  }

  /** The TLS the include is rendered with now. */
  tlsOf(app: string): TlsInput | null {
    return this.deps.tls?.renderInput(app) ?? null;
  }

  /** The routes the live slot's release serves (what its certificate must cover), or null before a live release. */
  liveRoutes(app: string): { releaseId: string; routes: RouteInput[] } | null {
    const live = this.deps.state.app(app)?.liveSlot;
    const releaseId = live ? this.deps.state.slot(app, live).releaseId : null;
    if (!live || !releaseId) return null;
    return { releaseId, routes: this.slotInput(app, live, releaseId).routes };
  }

  /**
   * Re-renders the include for the slots as they are with `options.tls`, and when that changes
   * it, tests, reloads and proves it (the previous file back on any failure); traffic stays on
   * the live slot and nothing is recorded. Before a live release there is no include yet: the
   * first switch writes it with whatever TLS is installed by then.
   */
  async refreshInclude(app: string, options: RefreshOptions): Promise<SwitchOutcome | null> {
    const live = this.deps.state.app(app)?.liveSlot ?? null;
    const releaseId = live ? this.deps.state.slot(app, live).releaseId : null;
    if (!live || !releaseId) return null;
    return this.switchTraffic(app, live, releaseId, { tls: options.tls, includeOnly: true });
  }

  async switchTraffic(app: string, slot: Slot, releaseId: string, options: SwitchOptions & { tls?: TlsInput | null; includeOnly?: boolean } = {}): Promise<SwitchOutcome> {
    const { state, config, nginx } = this.deps;
    const tls = options.tls !== undefined ? options.tls : this.tlsOf(app);
    const releaseOf = (s: Slot) => (s === slot ? releaseId : state.slot(app, s).releaseId);
    // The slot serving now: the flag's, else (no flag yet) what SQLite recorded, else the target.
    // The flag names the serving slot's release (nginx reads it from there, not from the include):
    // it is relabelled first if it names another one, so the include's proof below can expect it.
    const serving = await nginx.ensureFlag(app, state.app(app)!.liveSlot ?? slot, { blue: releaseOf('blue'), green: releaseOf('green') });
    const slots = Object.fromEntries(SLOTS.map((s) => [s, this.slotInput(app, s, releaseOf(s))])) as Record<Slot, SlotInput>;
    const listenHost = policyOf(config.apps[app]!).listen.host;
    // Per-route settings always follow the target (the slot about to serve), whichever fallback is
    // compared: a switch to a slot whose routes set other limits re-renders (and reloads) the include.
    const render = (generation: number, fallback: Slot) => this.deps.renderNginx({
      app, slot: fallback, settingsFrom: slot, slots, switchDir: nginx.switchDirOf(app), generation, listenHost,
      ...(tls ? { tls } : {}),
    });
    const probe = (route: RouteProbe, expectHeaders: Record<string, string>): NginxProbe => ({
      url: route.url,
      hostHeader: route.host,
      expectHeaders: { ...expectHeaders, 'x-slipway-switch': 'file' },
      ...(route.headers ? { headers: route.headers } : {}),
    });
    // Markers come with every answer of the include (a 404 of a slot without that route too), so
    // a route of either release can prove the serving slot after a reload and the target after a flip.
    const servingRoute = this.probeOf(app, releaseOf(serving), tls) ?? this.probeOf(app, releaseId, tls);
    const targetRoute = this.probeOf(app, releaseId, tls) ?? servingRoute;
    let appliedGeneration: number | null = null;
    // An app whose releases route nothing has nothing in nginx: traffic is only the record below.
    if (servingRoute && targetRoute) {
      const plan = planSwitch({
        serving, target: slot, onDisk: await nginx.currentConfig(app), generationNow: state.app(app)!.generation, render,
        reapply: options.reapply ?? false,
      });
      if (plan.applyInclude) {
        const generation = state.nextGeneration(app);
        appliedGeneration = generation;
        await nginx.apply({
          app,
          // Rendered for the target: per-route settings (body size, read timeout, WebSocket) cannot
          // change per request, so they follow the slot about to serve; the fallback (served only if
          // nginx cannot see the flag, which the probe rules out) is the slot live after the flip.
          config: render(generation, slot),
          probe: probe(servingRoute, { 'x-slipway-generation': String(generation), 'x-slipway-slot': serving, 'x-slipway-release': releaseOf(serving) ?? NO_RELEASE }),
        });
      }
      await options.faultPoint?.('flip');
      if (plan.flip) {
        await nginx.flip({ app, slot, releaseId, probe: probe(targetRoute, { 'x-slipway-slot': slot, 'x-slipway-release': releaseId }) });
      }
    } else {
      await options.faultPoint?.('flip');
    }
    if (options.includeOnly) return { provenOverHttp: servingRoute !== null && targetRoute !== null, appliedGeneration };
    await options.faultPoint?.('record');
    state.transaction(() => {
      state.setLiveSlot(app, slot);
      state.setSlotState(app, slot, 'running');
      state.setReleaseState(app, releaseId, releaseStateAfterSwitch(state.release(app, releaseId)?.state));
      state.markReleaseLive(app, releaseId);
      options.record?.();
    });
    return { provenOverHttp: servingRoute !== null && targetRoute !== null, appliedGeneration };
  }
}
