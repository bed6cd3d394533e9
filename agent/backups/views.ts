import type { BackupRunView } from '../../contract/backups.js';
import type { BackupRow } from './store.js';

/** The API view of a stored run: process bookkeeping dropped, offsite columns nested. */
export function runView(row: BackupRow): BackupRunView {
  return {
    id: row.id, job: row.job, app: row.app, kind: row.kind, trigger: row.trigger, requestedBy: row.requestedBy,
    deploymentId: row.deploymentId, status: row.status, reason: row.reason, file: row.file, bytes: row.bytes,
    sha256: row.sha256, startedAt: row.startedAt, endedAt: row.endedAt, durationMs: row.durationMs,
    exitCode: row.exitCode, signal: row.signal, timedOut: row.timedOut, stderrTail: row.stderrTail,
    verifiedAt: row.verifiedAt, verifyLevel: row.verifyLevel, verification: row.verification,
    prunedAt: row.prunedAt, pruneReason: row.pruneReason,
    offsite: row.offsiteStatus ? { status: row.offsiteStatus, name: row.offsiteName, at: row.offsiteAt, error: row.offsiteError } : null,
  };
}
