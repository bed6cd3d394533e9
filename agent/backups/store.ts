import { prepared, type Db } from '../state/db.js';
import type { BackupKind, BackupStatus, BackupTrigger, RestoreStatus, Verification, VerifyCheck } from '../../contract/backups.js';
export type { BackupStatus, BackupTrigger, RestoreStatus, Verification, VerifyCheck };

// SQLite rows of backup runs and restores (tables created by migration 2 in agent/state/db.ts).
// A run's row is written when it starts, so a crash leaves a `running` row the next start resolves.

export type OffsiteStatus = 'copied' | 'failed' | 'pruned';


export interface BackupRow {
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
  pid: number | null;
  pidStart: string | null;
  verifiedAt: string | null;
  verifyLevel: string | null;
  verification: Verification | null;
  prunedAt: string | null;
  pruneReason: string | null;
  offsiteStatus: OffsiteStatus | null;
  offsiteName: string | null;
  offsiteAt: string | null;
  offsiteError: string | null;
}

export interface RestoreRow {
  id: number; backupId: number; target: string; forced: boolean; requestedBy: string; status: RestoreStatus;
  reason: string | null; startedAt: string; endedAt: string | null; durationMs: number | null;
  exitCode: number | null; stderrTail: string | null;
}

export interface RunEnd {
  status: Exclude<BackupStatus, 'running' | 'skipped'>;
  reason: string | null;
  endedAt: string;
  durationMs: number;
  file?: string | null;
  bytes?: number | null;
  sha256?: string | null;
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
  stderrTail?: string | null;
  verifiedAt?: string | null;
  verification?: Verification | null;
}

type Raw = Record<string, unknown>;

function toBackup(r: Raw): BackupRow {
  return {
    id: r.id as number, job: r.job as string, app: r.app as string, kind: r.kind as BackupKind,
    trigger: r.trigger as BackupTrigger, requestedBy: r.requested_by as string, deploymentId: r.deployment_id as number | null,
    status: r.status as BackupStatus, reason: r.reason as string | null, file: r.file as string | null,
    bytes: r.bytes as number | null, sha256: r.sha256 as string | null, startedAt: r.started_at as string,
    endedAt: r.ended_at as string | null, durationMs: r.duration_ms as number | null, exitCode: r.exit_code as number | null,
    signal: r.signal as string | null, timedOut: r.timed_out === 1, stderrTail: r.stderr_tail as string | null,
    pid: r.pid as number | null, pidStart: r.pid_start as string | null, verifiedAt: r.verified_at as string | null,
    verifyLevel: r.verify_level as string | null,
    verification: r.verification ? JSON.parse(r.verification as string) as Verification : null,
    prunedAt: r.pruned_at as string | null, pruneReason: r.prune_reason as string | null,
    offsiteStatus: r.offsite_status as OffsiteStatus | null, offsiteName: r.offsite_name as string | null,
    offsiteAt: r.offsite_at as string | null, offsiteError: r.offsite_error as string | null,
  };
}

function toRestore(r: Raw): RestoreRow {
  return {
    id: r.id as number, backupId: r.backup_id as number, target: r.target as string, forced: r.forced === 1,
    requestedBy: r.requested_by as string, status: r.status as RestoreStatus, reason: r.reason as string | null,
    startedAt: r.started_at as string, endedAt: r.ended_at as string | null, durationMs: r.duration_ms as number | null,
    exitCode: r.exit_code as number | null, stderrTail: r.stderr_tail as string | null,
  };
}

export class BackupStore {
  constructor(private readonly db: Db) {}

  startRun(run: { job: string; app: string; kind: BackupKind; trigger: BackupTrigger; requestedBy: string; deploymentId: number | null; startedAt: string }): number {
    const result = prepared(this.db, 
      `INSERT INTO backups (job, app, kind, trigger, requested_by, deployment_id, status, started_at)
       VALUES (?, ?, ?, ?, ?, ?, 'running', ?)`,
    ).run(run.job, run.app, run.kind, run.trigger, run.requestedBy, run.deploymentId, run.startedAt);
    return Number(result.lastInsertRowid);
  }

  /** An overlapping run that did not start: recorded, so a stuck job shows up in the history. */
  recordSkipped(run: { job: string; app: string; kind: BackupKind; trigger: BackupTrigger; requestedBy: string; deploymentId: number | null; at: string; reason: string }): number {
    const result = prepared(this.db, 
      `INSERT INTO backups (job, app, kind, trigger, requested_by, deployment_id, status, reason, started_at, ended_at, duration_ms)
       VALUES (?, ?, ?, ?, ?, ?, 'skipped', ?, ?, ?, 0)`,
    ).run(run.job, run.app, run.kind, run.trigger, run.requestedBy, run.deploymentId, run.reason, run.at, run.at);
    return Number(result.lastInsertRowid);
  }

  setProcess(id: number, pid: number, pidStart: string | null): void {
    prepared(this.db, 'UPDATE backups SET pid = ?, pid_start = ? WHERE id = ?').run(pid, pidStart, id);
  }

  finishRun(id: number, end: RunEnd): void {
    prepared(this.db, 
      `UPDATE backups SET status = ?, reason = ?, ended_at = ?, duration_ms = ?, file = ?, bytes = ?, sha256 = ?,
         exit_code = ?, signal = ?, timed_out = ?, stderr_tail = ?, verified_at = ?, verify_level = ?, verification = ?
       WHERE id = ?`,
    ).run(
      end.status, end.reason, end.endedAt, end.durationMs, end.file ?? null, end.bytes ?? null, end.sha256 ?? null,
      end.exitCode ?? null, end.signal ?? null, end.timedOut ? 1 : 0, end.stderrTail ?? null, end.verifiedAt ?? null,
      end.verification?.level ?? null, end.verification ? JSON.stringify(end.verification) : null, id,
    );
  }

  /** A re-check found the file no longer matches: it stops counting as verified. */
  markUnverified(id: number, reason: string, verification: Verification): void {
    prepared(this.db, "UPDATE backups SET status = 'unverified', reason = ?, verification = ?, verify_level = ? WHERE id = ?")
      .run(reason, JSON.stringify(verification), verification.level, id);
  }

  markPruned(id: number, at: string, reason: string): void {
    prepared(this.db, 'UPDATE backups SET pruned_at = ?, prune_reason = ? WHERE id = ?').run(at, reason, id);
  }

  setOffsite(id: number, status: OffsiteStatus, at: string, name: string | null, error: string | null): void {
    prepared(this.db, 'UPDATE backups SET offsite_status = ?, offsite_at = ?, offsite_name = COALESCE(?, offsite_name), offsite_error = ? WHERE id = ?')
      .run(status, at, name, error, id);
  }

  get(id: number): BackupRow | undefined {
    const row = prepared(this.db, 'SELECT * FROM backups WHERE id = ?').get(id) as Raw | undefined;
    return row && toBackup(row);
  }

  list(options: { job?: string; limit: number }): BackupRow[] {
    const rows = options.job
      ? prepared(this.db, 'SELECT * FROM backups WHERE job = ? ORDER BY id DESC LIMIT ?').all(options.job, options.limit)
      : prepared(this.db, 'SELECT * FROM backups ORDER BY id DESC LIMIT ?').all(options.limit);
    return (rows as Raw[]).map(toBackup);
  }

  /** Backups of a job whose file is still on disk (verified or not), newest first. */
  withFiles(job: string): BackupRow[] {
    return (prepared(this.db, 
      "SELECT * FROM backups WHERE job = ? AND file IS NOT NULL AND pruned_at IS NULL AND status IN ('verified', 'unverified') ORDER BY started_at DESC, id DESC",
    ).all(job) as Raw[]).map(toBackup);
  }

  latest(job: string, statuses: readonly BackupStatus[]): BackupRow | undefined {
    const row = prepared(this.db, 
      `SELECT * FROM backups WHERE job = ? AND status IN (${statuses.map(() => '?').join(', ')}) ORDER BY id DESC LIMIT 1`,
    ).get(job, ...statuses) as Raw | undefined;
    return row && toBackup(row);
  }

  /** Sizes of the job's verified dumps before run `beforeId`, newest first (pruned ones too: their size was good). */
  verifiedSizes(job: string, beforeId: number, limit: number): number[] {
    return (prepared(this.db,
      "SELECT bytes FROM backups WHERE job = ? AND id < ? AND status = 'verified' AND bytes IS NOT NULL ORDER BY id DESC LIMIT ?",
    ).all(job, beforeId, limit) as { bytes: number }[]).map((r) => r.bytes);
  }

  running(): BackupRow[] {
    return (prepared(this.db, "SELECT * FROM backups WHERE status = 'running' ORDER BY id").all() as Raw[]).map(toBackup);
  }

  startRestore(r: { backupId: number; target: string; forced: boolean; requestedBy: string; startedAt: string }): number {
    const result = prepared(this.db, 
      "INSERT INTO backup_restores (backup_id, target, forced, requested_by, status, started_at) VALUES (?, ?, ?, ?, 'running', ?)",
    ).run(r.backupId, r.target, r.forced ? 1 : 0, r.requestedBy, r.startedAt);
    return Number(result.lastInsertRowid);
  }

  finishRestore(id: number, end: { status: Exclude<RestoreStatus, 'running'>; reason: string | null; endedAt: string; durationMs: number; exitCode: number | null; stderrTail: string | null }): void {
    prepared(this.db, 'UPDATE backup_restores SET status = ?, reason = ?, ended_at = ?, duration_ms = ?, exit_code = ?, stderr_tail = ? WHERE id = ?')
      .run(end.status, end.reason, end.endedAt, end.durationMs, end.exitCode, end.stderrTail, id);
  }

  restore(id: number): RestoreRow | undefined {
    const row = prepared(this.db, 'SELECT * FROM backup_restores WHERE id = ?').get(id) as Raw | undefined;
    return row && toRestore(row);
  }

  runningRestores(): RestoreRow[] {
    return (prepared(this.db, "SELECT * FROM backup_restores WHERE status = 'running'").all() as Raw[]).map(toRestore);
  }
}
