import type { BackupKind, RetentionPolicy } from './config.js';
import type { BackupRow, RestoreStatus } from './store.js';
import type { OffsiteMode } from './offsite.js';

// What GET /backups, POST /backups/:job/run and POST /backups/:id/restore answer; shared with
// the controller, which only reads these shapes.

/** A backup run as the API shows it: the stored row without process bookkeeping, offsite nested. */
export type BackupRunView = Omit<BackupRow, 'pid' | 'pidStart' | 'offsiteStatus' | 'offsiteName' | 'offsiteAt' | 'offsiteError'> & {
  offsite: { status: string; name: string | null; at: string | null; error: string | null } | null;
};

export interface BackupJobView {
  job: string;
  app: string;
  kind: BackupKind;
  schedule: string;
  nextRunAt: string | null;
  running: { id: number; startedAt: string } | null;
  retention: RetentionPolicy;
  offsite: { mode: OffsiteMode; note: string; lastStatus: string | null; lastAt: string | null; lastError: string | null };
  lastRun: BackupRunView | null;
  /** The last run whose dump succeeded (verified or not). */
  lastSuccessAt: string | null;
  lastVerified: { id: number; at: string; ageMs: number; bytes: number | null; level: string | null } | null;
  /** Backups whose file is on disk. */
  kept: { count: number; bytes: number; verified: number };
}

export interface BackupsOverview {
  jobs: BackupJobView[];
  runs: BackupRunView[];
  notifications: boolean;
}

export interface RestoreView {
  restoreId: number;
  backupId: number;
  job: string;
  /** Where it went, password removed. */
  target: string;
  status: RestoreStatus;
  forced: boolean;
  durationMs: number;
}

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
