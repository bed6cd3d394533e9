import type { PromotionGateReason } from '../../contract/api.js';
import { shortSha } from '../../contract/names.js';
import type { DeploymentRow, ReleaseRow } from '../state/store.js';

export type GateDeployment = Pick<DeploymentRow, 'id' | 'kind' | 'releaseId' | 'outcome' | 'reason' | 'state' | 'endedAt' | 'requestedBy'>;
export type GateRelease = Pick<ReleaseRow, 'releaseId' | 'state' | 'rolledBack'>;

export interface GateInput {
  releaseId: string;
  /** The release's row on this box; undefined when the box never had it. */
  release: GateRelease | undefined;
  /** Deployments of the app that activated this release (any kind, any order). */
  deployments: readonly GateDeployment[];
  now: Date;
  /** Maximum age of the success the verdict rests on; null: any age. */
  maxAgeMs: number | null;
}

export interface GateVerdict {
  passed: boolean;
  reason: PromotionGateReason;
  message: string;
  deploymentId: number | null;
  succeededAt: string | null;
}

/**
 * Pure: whether a release passed this environment, so it may be promoted from it. It passed when
 * the latest deployment that activated it here ended `succeeded` (the watch window ran clean, and
 * the smoke checks, run in every watch round, passed), it was not rolled back away from since (a
 * rollback marks the release it leaves) nor left marked bad, and that success is at most maxAgeMs
 * old. The latest activation decides: an earlier success does not outweigh a later failure, and a
 * later clean activation (a rollback back to it, a forced switch that cleared its mark) counts.
 */
export function judgePromotion(input: GateInput): GateVerdict {
  const { releaseId, release } = input;
  const label = shortSha(releaseId);
  const mine = input.deployments.filter((d) => d.releaseId === releaseId).sort((a, b) => b.id - a.id);
  const latest = mine[0];
  if (!release || !latest) {
    return refused('never_deployed', `${label} was never deployed here${release ? ' (it was uploaded, not activated)' : ''}`, null);
  }
  const by = `deployment ${latest.id} (${latest.kind} by ${latest.requestedBy})`;
  if (latest.outcome === null) {
    return refused('still_watching', `${label} is still being rolled out here: ${by} is at "${latest.state}"; its watch window has not ended`, latest.id);
  }
  if (latest.outcome === 'failed') return refused('failed', `${label} failed here: ${by}${because(latest.reason)}`, latest.id);
  if (latest.outcome === 'rolled_back') {
    return refused('rolled_back', `${label} was swapped back here by its watch window: ${by}${because(latest.reason)}`, latest.id);
  }
  if (release.rolledBack) {
    return refused('rolled_back',
      `${label} was rolled back here by ${release.rolledBack.by} at ${release.rolledBack.at}${because(release.rolledBack.reason)}`, latest.id);
  }
  if (release.state === 'bad') return refused('rolled_back', `${label} is marked bad here (it failed a watch window and no clean one cleared it)`, latest.id);
  const succeededAt = latest.endedAt;
  if (input.maxAgeMs !== null && succeededAt !== null && input.now.getTime() - Date.parse(succeededAt) > input.maxAgeMs) {
    return {
      passed: false, reason: 'too_old', deploymentId: latest.id, succeededAt,
      message: `${label} passed here at ${succeededAt}, longer ago than the ${formatAge(input.maxAgeMs)} allowed (promotion.maxAge)`,
    };
  }
  return { passed: true, reason: 'passed', message: `${label} passed here: ${by} succeeded at ${succeededAt}`, deploymentId: latest.id, succeededAt };
}

function refused(reason: PromotionGateReason, message: string, deploymentId: number | null): GateVerdict {
  return { passed: false, reason, message, deploymentId, succeededAt: null };
}

function because(reason: string | null): string {
  return reason ? `: ${reason}` : '';
}

function formatAge(ms: number): string {
  const days = ms / 86_400_000;
  if (Number.isInteger(days)) return `${days} d`;
  const hours = ms / 3_600_000;
  if (Number.isInteger(hours)) return `${hours} h`;
  return `${Math.round(ms / 1000)} s`;
}
