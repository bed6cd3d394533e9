// What the API shows of the host's state: apps, slots, releases, deployments. Views are built here
// from the state store and live probes, so routes stay a schema and one call, and a column of the
// database reaches the API only through a field named in a view.
import type { AgentConfig } from './config.js';
import type { EventRow, DeploymentRow, ReleaseState, StateStore } from './state/store.js';
import type { AppStatus, DeploymentEvent, Pm2DaemonStatus, DeploymentSummary, ReleaseListEntry } from '../contract/api.js';
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
}

/** How long each step of a deployment took, from its journal: steps that finished, ok or failed. */
export function stepDurations(events: readonly Pick<EventRow, 'step' | 'status' | 'elapsedMs'>[]): Record<string, number> {
  const durations: Record<string, number> = {};
  for (const event of events) {
    if (event.elapsedMs !== null && (event.status === 'ok' || event.status === 'failed')) durations[event.step] = event.elapsedMs;
  }
  return durations;
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
      const port = appConfig.slots[s.slot].port;
      const { process, health } = await probes.probe({
        processName: pm2ProcessName(name, s.slot), port, healthPath: appConfig.health.path,
        expectStatus: appConfig.health.expectStatus, releaseId: s.releaseId,
      });
      return { slot: s.slot, port, releaseId: s.releaseId, state: s.state, live: row.liveSlot === s.slot, process, health };
    }));
    const liveReleaseId = row.liveSlot ? slotRows.find((s) => s.slot === row.liveSlot)?.releaseId ?? null : null;
    return {
      app: name,
      liveSlot: row.liveSlot,
      liveReleaseId,
      generation: row.generation,
      publicUrl: publicUrlOf(config, name),
      ...(this.deps.pm2Status ? { pm2: this.deps.pm2Status() } : {}),
      slots,
      releases: state.releases(name).map((r) => ({
        releaseId: r.releaseId, state: r.state, bytes: r.bytes, createdAt: r.createdAt, manifest: r.manifest,
        slots: slotRows.filter((s) => s.releaseId === r.releaseId).map((s) => s.slot),
      })),
    };
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
