// What GET /backups, POST /backups/:job/run and POST /backups/:id/restore answer; the agent
// builds these views from its rows (agent/backups/views.ts), the controller only reads them.
// Declared here, not derived from database rows, so a column change cannot change the API.

export const BACKUP_KINDS = ['mongodump', 'pg_dump', 'command'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];
export type BackupStatus = 'running' | 'skipped' | 'failed' | 'unverified' | 'verified';
export type BackupTrigger = 'schedule' | 'manual' | 'deploy';
export type RestoreStatus = 'running' | 'succeeded' | 'failed';
/** none: no offsite copy; copy-only: copies, never prunes remotely; gfs: remote copies pruned like local ones. */
export type OffsiteMode = 'none' | 'copy-only' | 'gfs';

/** Grandfather-father-son: how many daily, weekly and monthly backups to keep (0 turns a tier off). */
export interface RetentionPolicy { daily: number; weekly: number; monthly: number }

export interface VerifyCheck { name: string; ok: boolean; skipped?: boolean; detail: string }
export interface Verification { level: string; checks: VerifyCheck[]; counts: Record<string, number> | null }

/** A backup run as the API shows it. */
export interface BackupRunView {
  id: number;
  job: string;
  app: string;
  kind: BackupKind;
  trigger: BackupTrigger;
  requestedBy: string;
  deploymentId: number | null;
  status: BackupStatus;
  reason: string | null;
  file: string | null;
  bytes: number | null;
  sha256: string | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  stderrTail: string | null;
  verifiedAt: string | null;
  verifyLevel: string | null;
  verification: Verification | null;
  prunedAt: string | null;
  pruneReason: string | null;
  offsite: { status: string; name: string | null; at: string | null; error: string | null } | null;
}

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
