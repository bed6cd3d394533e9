import type { Db } from '../state/db.js';
import type { DoraDeployment } from './dora.js';

/**
 * The app's deployments as the DORA computation reads them: when traffic moved (the end of the
 * "switching" step, or of "swap_back" for what a swap-back restored) and the release's commit time.
 */
export function doraHistory(db: Db, app: string): DoraDeployment[] {
  const rows = db.prepare(`
    SELECT d.id, d.kind, d.release_id AS releaseId, d.previous_release AS previousRelease, d.outcome, d.started_at AS startedAt,
      d.ended_at AS endedAt,
      (SELECT e.at FROM events e WHERE e.deployment_id = d.id AND e.step = 'switching' AND e.status = 'ok' ORDER BY e.id LIMIT 1) AS switchedAt,
      r.manifest AS manifest
    FROM deployments d LEFT JOIN releases r ON r.app = d.app AND r.release_id = d.release_id
    WHERE d.app = ? ORDER BY d.id`).all(app) as (Omit<DoraDeployment, 'commitTime'> & { manifest: string | null })[];
  return rows.map(({ manifest, ...row }) => {
    let commitTime: string | null = null;
    try {
      commitTime = manifest ? (JSON.parse(manifest) as { commitTime?: string }).commitTime ?? null : null;
    } catch {
      commitTime = null;
    }
    return { ...row, commitTime };
  });
}
