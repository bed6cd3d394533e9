import type { AgentConfig } from '../config.js';
import type { ReleaseRow, ReleaseState, SlotRow, StateStore } from '../state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import { requireApp } from '../apps.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { RollbackCandidate } from './rollback-plan.js';

/**
 * What every entry point checks before it takes the lock: the app is configured, the release is
 * recorded and its files are on the host. Refusals change nothing.
 */
export class EntryChecks {
  constructor(private readonly deps: { config: AgentConfig; state: StateStore; hasRelease: (app: string, releaseId: string) => boolean }) {}

  requireApp(app: string): string {
    requireApp(this.deps.config.apps, app);
    this.deps.state.ensureApp(app);
    return app;
  }

  requireRelease(app: string, releaseId: string): ReleaseRow {
    const row = this.deps.state.release(app, releaseId);
    if (!row || !this.deps.hasRelease(app, releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${app} is not on this host`, {
        hint: 'upload it first (deploy push does this); deploy releases lists what the host has', status: 404,
      });
    }
    return row;
  }

  /** Releases recorded for the app whose files are on the host, as the rollback rules see them. */
  rollbackCandidates(app: string): RollbackCandidate[] {
    return this.deps.state.releases(app).filter((r) => this.deps.hasRelease(app, r.releaseId)).map((r) => ({
      releaseId: r.releaseId, sha: r.manifest.sha, state: r.state, lastDeployId: r.lastDeployId, liveAt: r.liveAt, rolledBack: r.rolledBack !== null,
    }));
  }
}

/**
 * Pure: the release a switch to `slot` would put live; refuses when it cannot take traffic, or
 * when its release is marked bad (going back to that takes a forced rollback, which is recorded).
 */
export function checkSwitchTarget(app: string, slot: Slot, liveSlot: Slot | null, target: SlotRow, releaseState: ReleaseState | undefined): string {
  if (liveSlot === slot) {
    throw new SlipwayError('slot_already_live', `${slot} is already the live slot of ${app}`, {
      hint: 'nothing to do; deploy status shows the slots', status: 409,
    });
  }
  if (!target.releaseId || target.state !== 'running') {
    throw new SlipwayError('slot_not_running', `${app}/${slot} is ${target.state}${target.releaseId ? ` (release ${shortSha(target.releaseId)})` : ''}; only a running slot can take traffic`, {
      hint: `deploy a release into it first: deploy push --slot ${slot}`, status: 409,
    });
  }
  if (releaseState === 'bad') {
    throw new SlipwayError('release_bad', `${app}/${slot} runs release ${shortSha(target.releaseId)}, which is marked bad (it failed after going live)`, {
      hint: `to send traffic to it anyway: deploy rollback --to ${target.releaseId} --force`, status: 409,
    });
  }
  return target.releaseId;
}
