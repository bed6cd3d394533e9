// How the state database's rows are shown through the API: declared contract types built from
// rows here, so a column change never silently changes what clients see.
import type { DeploymentSummary, ReleaseListEntry } from '../../contract/api.js';
import type { DeploymentRow, StateStore } from './store.js';

export function deploymentSummary(d: DeploymentRow): DeploymentSummary {
  return {
    id: d.id, app: d.app, kind: d.kind, releaseId: d.releaseId, slot: d.slot, previousSlot: d.previousSlot,
    previousRelease: d.previousRelease, state: d.state, outcome: d.outcome, reason: d.reason,
    requestedBy: d.requestedBy, startedAt: d.startedAt, endedAt: d.endedAt, note: d.note,
    forced: d.forced, targetState: d.targetState, badMark: d.badMark, marksPrevious: d.marksPrevious,
    env: d.env, tag: d.tag, promotion: d.promotion, rolloutId: d.rolloutId,
  };
}

/** Releases with the state an operator cares about: live, standby, rolled_back, good, bad, failed, ready. */
export function releaseList(state: StateStore, app: string): ReleaseListEntry[] {
  const appRow = state.app(app)!;
  const slots = state.slots(app);
  return state.releases(app).map((r) => {
    const inSlots = slots.filter((s) => s.releaseId === r.releaseId);
    const live = inSlots.some((s) => s.slot === appRow.liveSlot);
    const standby = !live && inSlots.some((s) => s.state === 'running');
    const shown = live ? 'live' : standby ? 'standby' : r.state === 'good' && r.rolledBack ? 'rolled_back' : r.state;
    return {
      releaseId: r.releaseId, sha: r.manifest.sha, state: shown, recordedState: r.state, rolledBack: r.rolledBack,
      bytes: r.bytes, createdAt: r.createdAt, liveAt: r.liveAt, slots: inSlots.map((s) => s.slot),
      branch: r.manifest.branch, author: r.manifest.author.name, commitTime: r.manifest.commitTime, dirty: r.manifest.dirty,
      specDigest: r.manifest.specDigest ?? null,
    };
  });
}
