import type { Db } from '../state/db.js';
import { prepared } from '../state/db.js';
import type { BuildPlatform } from '../../contract/platform.js';

export type HostBuildStatus = 'running' | 'built' | 'failed';

/** One build dir's install: the key it was made under, and whether an earlier install was reused. */
export interface InstallRecord { dir: string; key: string; reusedFrom: string | null }

export interface HostBuildRow {
  app: string;
  releaseId: string;
  status: HostBuildStatus;
  /** The box's platform when it built: the release's build platform. */
  platform: BuildPlatform;
  installs: InstallRecord[];
  deploymentId: number | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  error: string | null;
}

interface RawRow {
  app: string; release_id: string; status: HostBuildStatus; platform: string; installs: string; deployment_id: number | null;
  started_at: string; ended_at: string | null; duration_ms: number | null; error: string | null; uploaded_tree: string | null;
}

function toRow(r: RawRow): HostBuildRow {
  return {
    app: r.app, releaseId: r.release_id, status: r.status, platform: JSON.parse(r.platform) as BuildPlatform,
    installs: JSON.parse(r.installs) as InstallRecord[], deploymentId: r.deployment_id, startedAt: r.started_at, endedAt: r.ended_at,
    durationMs: r.duration_ms, error: r.error,
  };
}

/** Host builds in SQLite: a built release is not built again, and its platform is known. */
export class HostBuildStore {
  constructor(private readonly db: Db) {}

  get(app: string, releaseId: string): HostBuildRow | undefined {
    const row = prepared(this.db, 'SELECT * FROM host_builds WHERE app = ? AND release_id = ?').get(app, releaseId) as RawRow | undefined;
    return row && toRow(row);
  }

  all(app: string): HostBuildRow[] {
    return (prepared(this.db, 'SELECT * FROM host_builds WHERE app = ? ORDER BY started_at').all(app) as RawRow[]).map(toRow);
  }

  /** Records a build as running, with the release's paths as uploaded (`uploadedTree`). */
  start(row: { app: string; releaseId: string; platform: BuildPlatform; deploymentId: number | null; uploadedTree: string[] }): void {
    prepared(this.db, `INSERT INTO host_builds (app, release_id, status, platform, installs, deployment_id, started_at, uploaded_tree)
      VALUES (?, ?, 'running', ?, '[]', ?, ?, ?)
      ON CONFLICT (app, release_id) DO UPDATE SET status = 'running', platform = excluded.platform, installs = '[]',
        deployment_id = excluded.deployment_id, started_at = excluded.started_at, ended_at = NULL, duration_ms = NULL, error = NULL,
        uploaded_tree = excluded.uploaded_tree`)
      .run(row.app, row.releaseId, JSON.stringify(row.platform), row.deploymentId, new Date().toISOString(), JSON.stringify(row.uploadedTree));
  }

  /** The paths of the release as uploaded, recorded by a build that never finished (the agent died), or null. */
  interruptedTree(app: string, releaseId: string): string[] | null {
    const row = prepared(this.db, "SELECT uploaded_tree FROM host_builds WHERE app = ? AND release_id = ? AND status = 'running'").get(app, releaseId) as
      { uploaded_tree: string | null } | undefined;
    return row?.uploaded_tree ? JSON.parse(row.uploaded_tree) as string[] : null;
  }

  finish(app: string, releaseId: string, result: { status: 'built' | 'failed'; installs: InstallRecord[]; durationMs: number; error: string | null }): void {
    prepared(this.db, 'UPDATE host_builds SET status = ?, installs = ?, ended_at = ?, duration_ms = ?, error = ?, uploaded_tree = NULL WHERE app = ? AND release_id = ?')
      .run(result.status, JSON.stringify(result.installs), new Date().toISOString(), result.durationMs, result.error, app, releaseId);
  }
}
