// What the API shows of the host's state: apps, slots, releases, deployments. Views are built here
// from the state store and live probes, so routes stay a schema and one call, and a column of the
// database reaches the API only through a field named in a view.
import type { AgentConfig } from './config.js';
import type { TlsSummary } from '../contract/tls.js';
import type { EventRow, DeploymentRow, ReleaseState, SlotProcessRow, StateStore } from './state/store.js';
import type { AppSpec } from '../contract/spec.js';
import { translateLegacy } from './spec/legacy.js';
import { releaseSpecOf } from './spec/release-spec.js';
import type { AppStatus, SlotProcessStatus, DeploymentEvent, Pm2DaemonStatus, DeploymentSummary, ReleaseListEntry } from '../contract/api.js';
import type { ReleaseManifest } from '../contract/manifest.js';
import { SlipwayError } from '../contract/errors.js';
import { pm2ProcessName, shortSha, type Slot } from '../contract/names.js';
import { publicUrlOf } from './rollout/rollout.js';
import type { SlotProbeCache } from './slot-probe.js';
import { requireApp } from './apps.js';
import { deploymentSummary, releaseList } from './state/views.js';

export interface AppSummary { app: string; liveSlot: Slot | null; generation: number }

/** GET /apps/:app/releases/:releaseId */
export interface ReleaseDetail {
  releaseId: string;
  state: ReleaseState;
  bytes: number;
  sha256: string;
  createdAt: string;
  manifest: ReleaseManifest;
}

export type DeploymentListEntry = DeploymentSummary & { stepDurationsMs: Record<string, number> };
export type DeploymentDetail = DeploymentSummary & { events: Omit<DeploymentEvent, 'type'>[] };

export interface StatusDeps {
  config: AgentConfig;
  state: StateStore;
  /** Whether the release's files are on this host (a row alone is not enough). */
  hasRelease(app: string, releaseId: string): boolean;
  probes: SlotProbeCache;
  /** The PM2 daemon's state, answered without a PM2 call. */
  pm2Status?: () => Pm2DaemonStatus;
  /** The app's HTTPS (agent/tls), or null without TLS settings. */
  tlsSummary?: (app: string) => TlsSummary | null;
}

/** How long each step of a deployment took, from its journal: steps that finished, ok or failed. */
export function stepDurations(events: readonly Pick<EventRow, 'step' | 'status' | 'elapsedMs'>[]): Record<string, number> {
  const durations: Record<string, number> = {};
  for (const event of events) {
    if (event.elapsedMs !== null && (event.status === 'ok' || event.status === 'failed')) durations[event.step] = event.elapsedMs;
  }
  return durations;
}


function tlsOf(summary: TlsSummary | null): { tls?: TlsSummary } {
  return summary ? { tls: summary } : {};
}

export class StatusService {
  constructor(private readonly deps: StatusDeps) {}

  apps(): AppSummary[] {
    return Object.keys(this.deps.config.apps).map((name) => {
      const row = this.deps.state.app(name)!;
      return { app: name, liveSlot: row.liveSlot, generation: row.generation };
    });
  }

  /** Slots with their PM2 process and one health check each (cached briefly), and the releases. */
  async app(name: string): Promise<AppStatus> {
    const { state, config, probes } = this.deps;
    requireApp(config.apps, name);
    const appConfig = config.apps[name]!;
    const row = state.app(name)!;
    const slotRows = state.slots(name);
    const slots = await Promise.all(slotRows.map(async (s) => {
      const spec = s.releaseId ? this.specOf(name, s.releaseId) : null;
      const processes = await Promise.all(this.layout(name, s.slot, s.releaseId).map(async (p): Promise<SlotProcessStatus> => {
        const health = spec?.processes[p.process]?.health as { path?: string; expectStatus?: number } | undefined;
        const probe = await probes.probe({
          processName: p.pm2Name, port: p.port ?? 0, healthPath: health?.path ?? '/', expectStatus: health?.expectStatus ?? 200,
          releaseId: p.port !== null && health?.path ? s.releaseId : null,
        });
        return {
          name: p.process, pm2Name: p.pm2Name, port: p.port, instances: p.instances,
          online: probe.process?.online ?? 0, restarts: probe.process?.restarts ?? 0, status: probe.process?.status ?? null, health: probe.health,
        };
      }));
      // The slot's own fields describe its first listening process (the only one of a legacy app).
      const first = processes.find((p) => p.port !== null) ?? processes[0];
      const firstProbe = first ? await probes.probe({
        processName: first.pm2Name, port: first.port ?? 0, healthPath: (spec?.processes[first.name]?.health as { path?: string } | undefined)?.path ?? '/',
        expectStatus: (spec?.processes[first.name]?.health as { expectStatus?: number } | undefined)?.expectStatus ?? 200,
        releaseId: first.port !== null ? s.releaseId : null,
      }) : { process: null, health: null };
      const process = firstProbe.process ? { status: firstProbe.process.status, pid: firstProbe.process.pid, restarts: firstProbe.process.restarts, cwd: firstProbe.process.cwd } : null;
      return {
        slot: s.slot, port: first?.port ?? appConfig.slots?.[s.slot].port ?? null, releaseId: s.releaseId, state: s.state, live: row.liveSlot === s.slot,
        process, health: firstProbe.health, processes,
      };
    }));
    const liveReleaseId = row.liveSlot ? slotRows.find((s) => s.slot === row.liveSlot)?.releaseId ?? null : null;
    return {
      app: name,
      liveSlot: row.liveSlot,
      liveReleaseId,
      generation: row.generation,
      publicUrl: publicUrlOf(config, name),
      env: state.appOverrides(name)?.env ?? null,
      tag: liveReleaseId ? state.deploymentTag(name, liveReleaseId) ?? state.release(name, liveReleaseId)?.manifest.tag ?? null : null,
      specOverrides: state.appOverrides(name)?.overrides ?? null,
      ...(this.deps.pm2Status ? { pm2: this.deps.pm2Status() } : {}),
      ...tlsOf(this.deps.tlsSummary?.(name) ?? null),
      slots,
      releases: state.releases(name).map((r) => ({
        releaseId: r.releaseId, state: r.state, bytes: r.bytes, createdAt: r.createdAt, manifest: r.manifest,
        slots: slotRows.filter((s) => s.releaseId === r.releaseId).map((s) => s.slot),
      })),
    };
  }

  /** The slot's recorded processes; before its first start under a layout, the legacy process. */
  private layout(app: string, slot: Slot, releaseId: string | null): SlotProcessRow[] {
    const stored = this.deps.state.slotLayout(app, slot);
    if (stored.length > 0) return stored;
    const legacy = translateLegacy(this.deps.config.apps[app]!);
    if (!legacy) return [];
    return [{ process: 'web', releaseId: releaseId ?? '', pm2Name: pm2ProcessName(app, slot), port: legacy.pinnedPorts[slot].web ?? null, instances: 1, singleton: false }];
  }

  private specOf(app: string, releaseId: string): AppSpec | null {
    const row = this.deps.state.release(app, releaseId);
    if (!row) return null;
    try {
      return releaseSpecOf(app, this.deps.config.apps[app]!, row.manifest, this.deps.state.appOverrides(app)?.overrides ?? null).spec;
    } catch {
      return null;
    }
  }

  release(name: string, releaseId: string): ReleaseDetail {
    requireApp(this.deps.config.apps, name);
    const row = this.deps.state.release(name, releaseId);
    if (!row || !this.deps.hasRelease(name, releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${name} is not on this host`, { status: 404, hint: 'upload it' });
    }
    return { releaseId, state: row.state, bytes: row.bytes, sha256: row.sha256, createdAt: row.createdAt, manifest: row.manifest };
  }

  /** Releases with the state an operator cares about: live, standby, rolled_back, good, bad, failed, ready. */
  releases(name: string): ReleaseListEntry[] {
    requireApp(this.deps.config.apps, name);
    return releaseList(this.deps.state, name);
  }


  deployments(name: string, limit: number): DeploymentListEntry[] {
    const { state, config } = this.deps;
    requireApp(config.apps, name);
    return state.deployments(name, limit).map((d) => ({ ...deploymentSummary(d), stepDurationsMs: stepDurations(state.events(d.id)) }));
  }

  deployment(name: string, id: number): DeploymentDetail {
    const { state, config } = this.deps;
    requireApp(config.apps, name);
    const row = state.deployment(id);
    if (!row || row.app !== name) throw new SlipwayError('deployment_not_found', `no deployment ${id} of ${name}`, { status: 404, hint: 'list them with: deploy history' });
    return {
      ...deploymentSummary(row),
      events: state.events(row.id).map(({ deploymentId, id: _id, ...rest }) => ({ deploymentId, ...rest })),
    };
  }
}
