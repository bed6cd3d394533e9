import { isDiskFull } from '../../lib/durable.js';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import { envFileOf } from '../config.js';
import { readAppEnv } from '../envfile.js';
import type { Db } from '../state/db.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { runView } from './views.js';
import type { BackupJobView, BackupsOverview, RestoreView } from '../../contract/backups.js';
import {
  backupFileName, isTempFileName, mongodumpArgv, mongorestoreArgv, parseBackupFileName, pgDumpArgv, pgRestoreIntoArgv,
  redactSecrets, redactUri, tempFileName,
} from './commands.js';
import { isRawCommand, type BackupJobConfig, type BackupsConfig } from './config.js';
import { withCredentials, type Credentials } from './credentials.js';
import { dumpToFile, fsyncDir, publishFile, removeFile, type DumpResult } from './dump-file.js';
import { webhookNotifier, type Notifier } from './notify.js';
import { offsiteCopy, offsiteDelete, offsiteList, offsiteMode } from './offsite.js';
import { describeFailure, findTool, killGroup, processStartTime, runGroup, succeeded, type GroupRunResult } from './process.js';
import { planRetention } from './retention.js';
import { BackupStore, type BackupRow, type BackupTrigger, type RunEnd, type Verification } from './store.js';
import { verifyBackup, type VerifyReport } from './verify.js';
import { diskSpaceOf, freeSpaceMargin, lowSpaceReason, type DiskSpace } from './disk-space.js';
import { scanFile } from './file-scan.js';
import { rejectDump } from './outcome.js';
import { DEFAULT_SIZE_BOUNDS, SIZE_HISTORY } from './size-check.js';

export interface BackupServiceDeps {
  config: AgentConfig;
  db: Db;
  logger: Logger;
  /** Default: POST to backups.notifyWebhook (and a log line). */
  notify?: Notifier;
  now?: () => Date;
  /** Environment the dump tools start from (PG* variables are dropped from it); default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** One run in progress: its job, its files, and the secrets its messages must not carry. */
interface Run {
  id: number;
  jobName: string;
  job: BackupJobConfig;
  dir: string;
  tempPath: string;
  finalPath: string;
  startedMs: number;
  secrets: string[];
  entry: { pid: number | null };
}

/** What a run's row records about its dump, whatever its status. */
type RunFacts = Omit<Partial<RunEnd>, 'status' | 'reason' | 'endedAt' | 'durationMs'>;

const elapsedMs = (run: Run) => Math.round(performance.now() - run.startedMs);

export interface RestoreOptions {
  /** A database URI to restore into instead of the job's source. */
  to?: string;
  /** Restore a backup that is not verified, or whose file changed since. */
  force: boolean;
  actor: string;
}

export interface RunRequest {
  trigger: BackupTrigger;
  actor: string;
  deploymentId?: number | null;
}

/** No `backups` section: no jobs, but runs and temp files a previous config left are still resolved. */
const noBackups = (home: string): BackupsConfig => ({
  dir: path.join(home, 'backups'), notifyTimeoutMs: 5000, defaults: { timeoutMs: 3_600_000, retention: { daily: 7, weekly: 4, monthly: 12 } },
  tools: { mongodump: 'mongodump', mongorestore: 'mongorestore', pgDump: 'pg_dump', pgRestore: 'pg_restore', psql: 'psql' },
  jobs: {},
});

/**
 * Backup runs, verification, retention, offsite copies and restores. One run per job at a time
 * (an overlapping request is recorded as `skipped`); every run leaves a row with its outcome.
 * A run never throws to its caller: failures are recorded, notified and returned.
 */
export class BackupService {
  readonly store: BackupStore;
  private readonly backups: BackupsConfig;
  private readonly notify: Notifier;
  private readonly now: () => Date;
  private readonly baseEnv: NodeJS.ProcessEnv;
  private readonly inFlight = new Map<string, { id: number; startedAt: string; pid: number | null; done: Promise<unknown> }>();
  private readonly restoring = new Set<string>();
  private closing = false;

  constructor(private readonly deps: BackupServiceDeps) {
    this.store = new BackupStore(deps.db);
    this.backups = deps.config.backups ?? noBackups(deps.config.home);
    this.now = deps.now ?? (() => new Date());
    this.baseEnv = Object.fromEntries(Object.entries(deps.env ?? process.env).filter(([key]) => !key.startsWith('PG')));
    this.notify = deps.notify ?? webhookNotifier({
      url: this.backups.notifyWebhook, timeoutMs: this.backups.notifyTimeoutMs, host: os.hostname(), logger: deps.logger,
    });
  }

  get privateRoot(): string {
    return path.join(this.backups.dir, '.private');
  }

  jobNames(): string[] {
    return Object.keys(this.backups.jobs);
  }

  job(name: string): BackupJobConfig {
    const job = this.backups.jobs[name];
    if (!job) {
      throw new SlipwayError('backup_job_not_found', `no backup job "${name}" on this host`, {
        status: 404, hint: `configured jobs: ${this.jobNames().join(', ') || 'none (add backups.jobs to the agent config)'}`,
      });
    }
    return job;
  }

  /**
   * On agent start: runs left `running` by a crash are marked failed (their dump process group
   * is killed if it is still the same process), temp files and credential files are removed.
   */
  async recoverOnStart(): Promise<{ interrupted: number[]; removed: string[] }> {
    const interrupted: number[] = [];
    for (const row of this.store.running()) {
      if (row.pid && row.pidStart && processStartTime(row.pid) === row.pidStart) killGroup(row.pid);
      this.store.finishRun(row.id, {
        status: 'failed', reason: 'interrupted: the agent stopped during the run; its temp file was removed',
        endedAt: this.iso(), durationMs: Date.now() - Date.parse(row.startedAt), exitCode: row.exitCode, stderrTail: row.stderrTail,
      });
      interrupted.push(row.id);
    }
    for (const r of this.store.runningRestores()) {
      this.store.finishRestore(r.id, { status: 'failed', reason: 'interrupted: the agent stopped during the restore', endedAt: this.iso(), durationMs: 0, exitCode: null, stderrTail: null });
    }
    const removed: string[] = [];
    await rm(this.privateRoot, { recursive: true, force: true });
    for (const app of await listDir(this.backups.dir)) {
      if (app.startsWith('.')) continue;
      for (const job of await listDir(path.join(this.backups.dir, app))) {
        const dir = path.join(this.backups.dir, app, job);
        for (const name of (await listDir(dir)).filter(isTempFileName)) {
          await rm(path.join(dir, name), { force: true });
          removed.push(path.join(dir, name));
        }
      }
    }
    if (interrupted.length || removed.length) this.deps.logger.warn({ interrupted, removed }, 'cleaned up backup runs interrupted by an agent stop');
    return { interrupted, removed };
  }

  /** Runs a job now. Resolves with the run's row whatever happened (failed, skipped, ...). */
  run(jobName: string, request: RunRequest): Promise<BackupRow> {
    return this.begin(jobName, request).done;
  }

  /**
   * Starts a run and answers its id at once (the row exists before this returns); `done`
   * resolves with the finished row. An overlapping request is recorded as skipped.
   */
  begin(jobName: string, request: RunRequest): { id: number; done: Promise<BackupRow> } {
    const job = this.job(jobName);
    if (this.closing) {
      throw new SlipwayError('agent_stopping', 'the agent is stopping; no new backup runs start', { status: 503, hint: 'run it again once the agent is back' });
    }
    const startedAt = this.now();
    const base = { job: jobName, app: job.app, kind: job.kind, trigger: request.trigger, requestedBy: request.actor, deploymentId: request.deploymentId ?? null };
    const current = this.inFlight.get(jobName);
    if (current) {
      const reason = `run #${current.id} of this job (started ${current.startedAt}) is still going`;
      const id = this.store.recordSkipped({ ...base, at: startedAt.toISOString(), reason });
      this.deps.logger.warn({ job: jobName, backupId: id, running: current.id }, 'overlapping backup run skipped');
      const done = this.notify({ job: jobName, app: job.app, event: 'skipped', backupId: id, message: `Overlapping run skipped: ${reason}.` })
        .then(() => this.store.get(id)!);
      return { id, done };
    }
    const id = this.store.startRun({ ...base, startedAt: startedAt.toISOString() });
    const entry = { id, startedAt: startedAt.toISOString(), pid: null as number | null, done: Promise.resolve() as Promise<unknown> };
    this.inFlight.set(jobName, entry);
    const done = this.execute(id, jobName, job, startedAt, entry).finally(() => this.inFlight.delete(jobName));
    entry.done = done;
    return { id, done };
  }

  /**
   * The pre-deploy backup: runs the job linked to the deployment and resolves only with a
   * verified backup; anything else throws, so the rollout stops before it changes anything.
   */
  async runJobForDeployment(jobName: string, deploymentId: number, actor = 'rollout'): Promise<{ id: number; status: 'verified' }> {
    const row = await this.run(jobName, { trigger: 'deploy', actor, deploymentId });
    if (row.status === 'verified') return { id: row.id, status: 'verified' };
    throw new SlipwayError('backup_before_deploy_failed', `the pre-deploy backup ${jobName} #${row.id} is ${row.status}: ${row.reason ?? 'no reason recorded'}`, {
      status: 409,
      hint: row.status === 'skipped'
        ? 'another run of this backup job is in progress; deploy again when it has finished (deploy backup list)'
        : 'nothing was changed; see `deploy backup list` for the run, fix the backup, then deploy again',
    });
  }

  /** Kills the dump of every run in progress and waits (bounded) for their rows to be written. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closing = true;
    const runs = [...this.inFlight.values()];
    for (const run of runs) if (run.pid) killGroup(run.pid);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(runs.map((r) => r.done)),
      new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
    ]);
    clearTimeout(timer);
  }

  overview(options: { job?: string; limit?: number; nextRun?: (job: string) => Date | null } = {}): BackupsOverview {
    if (options.job) this.job(options.job);
    const nowMs = this.now().getTime();
    return {
      jobs: this.jobNames().filter((name) => !options.job || name === options.job).map((name) => this.jobView(name, nowMs, options.nextRun)),
      runs: this.store.list({ ...(options.job ? { job: options.job } : {}), limit: options.limit ?? 20 }).map(runView),
      notifications: Boolean(this.backups.notifyWebhook),
    };
  }

  private jobView(name: string, nowMs: number, nextRun?: (job: string) => Date | null): BackupJobView {
    const job = this.backups.jobs[name]!;
    const files = this.store.withFiles(name);
    const lastRun = this.store.latest(name, ['running', 'skipped', 'failed', 'unverified', 'verified']);
    const lastSuccess = this.store.latest(name, ['verified', 'unverified']);
    const lastVerified = this.store.latest(name, ['verified']);
    const running = this.inFlight.get(name);
    return {
      job: name, app: job.app, kind: job.kind, schedule: job.schedule,
      nextRunAt: nextRun?.(name)?.toISOString() ?? null,
      running: running ? { id: running.id, startedAt: running.startedAt } : null,
      retention: job.retention,
      offsite: this.offsiteView(name, job),
      lastRun: lastRun ? runView(lastRun) : null,
      lastSuccessAt: lastSuccess?.endedAt ?? null,
      lastVerified: lastVerified ? {
        id: lastVerified.id, at: lastVerified.verifiedAt ?? lastVerified.endedAt ?? lastVerified.startedAt,
        ageMs: nowMs - Date.parse(lastVerified.startedAt), bytes: lastVerified.bytes, level: lastVerified.verifyLevel,
      } : null,
      kept: { count: files.length, bytes: files.reduce((a, r) => a + (r.bytes ?? 0), 0), verified: files.filter((r) => r.status === 'verified').length },
    };
  }

  private offsiteView(name: string, job: BackupJobConfig): BackupJobView['offsite'] {
    const mode = offsiteMode(job.offsite);
    const last = this.store.list({ job: name, limit: 50 }).find((r) => r.offsiteStatus && r.offsiteStatus !== 'pruned');
    return {
      mode,
      note: mode === 'gfs' ? 'remote copies pruned by the same retention policy'
        : mode === 'copy-only' ? 'copy-only: remote copies are never pruned (add offsite.list and offsite.delete to prune them)'
        : 'no offsite copy configured',
      lastStatus: last?.offsiteStatus ?? null, lastAt: last?.offsiteAt ?? null, lastError: last?.offsiteError ?? null,
    };
  }

  /**
   * Restores backup `id` over its job's database (or `to`). Refuses an unverified backup, or one
   * whose file no longer matches its checksum, unless forced.
   */
  async restore(id: number, options: RestoreOptions): Promise<RestoreView> {
    const row = this.store.get(id);
    if (!row) throw new SlipwayError('backup_not_found', `no backup #${id}`, { status: 404, hint: 'list them with: deploy backup list' });
    const job = this.job(row.job);
    if (!row.file || row.prunedAt) {
      throw new SlipwayError('backup_file_gone', `backup #${id} of ${row.job} has no file (${row.prunedAt ? `pruned ${row.prunedAt}: ${row.pruneReason}` : `the run ${row.status}`})`, {
        status: 410, hint: 'pick a backup listed with a size in: deploy backup list',
      });
    }
    if (row.status !== 'verified' && !options.force) {
      throw new SlipwayError('backup_unverified', `backup #${id} of ${row.job} is ${row.status}${row.reason ? ` (${row.reason})` : ''}; refusing to restore it`, {
        status: 409, hint: `restore a verified backup, or pass --force to restore #${id} anyway`,
      });
    }
    if (options.to !== undefined && job.kind === 'command') {
      throw new SlipwayError('restore_target_unsupported', `job ${row.job} is a command job: its restoreCommand decides where it restores`, { status: 400, hint: 'run the restore without --to' });
    }
    if (options.to !== undefined) checkTargetUri(job, options.to);
    if (this.restoring.has(row.job)) {
      throw new SlipwayError('restore_in_progress', `a restore of ${row.job} is already running`, { status: 409, hint: 'wait for it to finish' });
    }
    this.restoring.add(row.job);
    try {
      return await this.restoreLocked(row, job, options);
    } finally {
      this.restoring.delete(row.job);
    }
  }

  // ------------------------------------------------------------------------------------------

  private async restoreLocked(row: BackupRow, job: BackupJobConfig, options: RestoreOptions): Promise<RestoreView> {
    await this.checkFileBeforeRestore(row, options.force);
    const tool = this.restoreTool(row, job);
    const uri = job.kind === 'command' ? null : options.to ?? await this.sourceUri(row.job, job);
    const target = options.to ? redactUri(options.to) : job.kind === 'command' ? 'restoreCommand' : `source of job ${row.job}`;
    const restoreId = this.store.startRestore({ backupId: row.id, target, forced: options.force, requestedBy: options.actor, startedAt: this.iso() });
    return withCredentials(job.kind, uri, this.privateRoot, async (credentials) => {
      const run = await this.runRestore(row.file!, job, tool, credentials);
      const stderrTail = redactSecrets(run.stderrTail, credentials.secrets);
      const ok = succeeded(run);
      const reason = ok ? null : redactSecrets(describeFailure(run), credentials.secrets);
      this.store.finishRestore(restoreId, { status: ok ? 'succeeded' : 'failed', reason, endedAt: this.iso(), durationMs: run.durationMs, exitCode: run.exitCode, stderrTail });
      this.deps.logger.info({ job: row.job, backupId: row.id, restoreId, ok, durationMs: run.durationMs }, 'backup restore finished');
      if (!ok) {
        await this.notify({ job: row.job, app: row.app, event: 'restore_failed', backupId: row.id, message: `Restore #${restoreId} into ${target} failed: ${reason}` });
        throw new SlipwayError('restore_failed', `restore of backup #${row.id} into ${target} failed: ${reason}`, {
          status: 500, hint: job.kind === 'pg_dump' ? 'pg_restore ran in a single transaction: the database is as it was before' : 'check the target database; the backup file is untouched',
        });
      }
      return { restoreId, backupId: row.id, job: row.job, target, status: 'succeeded', forced: options.force, durationMs: run.durationMs };
    });
  }

  /**
   * The file must still be there and still hold the bytes that were verified. A changed file
   * stops counting as verified (and is notified) even when `force` restores it anyway.
   */
  private async checkFileBeforeRestore(row: BackupRow, force: boolean): Promise<void> {
    const file = row.file!;
    if (!await stat(file).catch(() => null)) {
      throw new SlipwayError('backup_file_gone', `the file of backup #${row.id} (${file}) is missing`, { status: 410, hint: 'pick another backup: deploy backup list' });
    }
    const scan = await scanFile(file, { gzip: false, mongoArchive: false });
    if (scan.sha256 === row.sha256) return;
    const detail = `sha256 of ${file} is ${scan.sha256}, but ${row.sha256} was recorded when it was written`;
    this.store.markUnverified(row.id, `checksum mismatch before restore: ${detail}`, {
      level: 'none', counts: null, checks: [{ name: 'checksum', ok: false, detail }],
    });
    await this.notify({ job: row.job, app: row.app, event: 'corrupt', backupId: row.id, message: `The backup file changed since it was verified: ${detail}.` });
    if (!force) {
      throw new SlipwayError('backup_corrupt', `backup #${row.id} is corrupt: ${detail}`, { status: 409, hint: 'restore another backup; --force restores these bytes anyway' });
    }
  }

  /** The program that restores a job's dumps, refused when it is not configured or not installed. */
  private restoreTool(row: BackupRow, job: BackupJobConfig): string {
    const tool = job.kind === 'mongodump' ? this.backups.tools.mongorestore : job.kind === 'pg_dump' ? this.backups.tools.pgRestore : job.restoreCommand?.[0];
    if (!tool) {
      throw new SlipwayError('restore_not_configured', `job ${row.job} has no restoreCommand`, { status: 409, hint: `add backups.jobs.${row.job}.restoreCommand (argv reading the dump on stdin)` });
    }
    if (!findTool(tool, this.baseEnv.PATH)) {
      throw new SlipwayError('restore_tool_missing', `${tool} is not installed on this host`, {
        status: 409, hint: job.kind === 'mongodump' ? 'install the MongoDB Database Tools (mongorestore)' : `install ${tool}`,
      });
    }
    return tool;
  }

  private runRestore(file: string, job: BackupJobConfig, tool: string, credentials: Credentials): Promise<GroupRunResult> {
    const argv = job.kind === 'mongodump' ? mongorestoreArgv(tool, credentials.configFile!, file, 'restore')
      : job.kind === 'pg_dump' ? pgRestoreIntoArgv(tool, file, credentials.pg!.database, 'replace')
      : job.restoreCommand!;
    return runGroup(argv, {
      env: { ...this.baseEnv, ...credentials.env }, timeoutMs: job.timeoutMs,
      ...(job.kind === 'command' ? { stdinFile: file } : {}),
    });
  }

  private async execute(id: number, jobName: string, job: BackupJobConfig, startedAt: Date, entry: { pid: number | null }): Promise<BackupRow> {
    const dir = path.join(this.backups.dir, job.app, jobName);
    const run: Run = {
      id, jobName, job, dir, entry, secrets: [], startedMs: performance.now(),
      finalPath: path.join(dir, backupFileName(job.kind, job.format, startedAt, id)),
      tempPath: path.join(dir, tempFileName(id, randomBytes(4).toString('hex'))),
    };
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // Checked before anything is written (credential files too): a dump must not take the last free space.
      const low = await this.lowSpace(run, 'before the dump');
      if (low) return await this.failRun(run, `not started: ${low.reason}`, {}, low.space);
      const uri = job.kind === 'command' ? null : await this.sourceUri(jobName, job);
      if (uri) run.secrets = [uri];
      return await withCredentials(job.kind, uri, this.privateRoot, (credentials) => this.dumpAndVerify(run, credentials));
    } catch (error) {
      const message = error instanceof SlipwayError ? error.message : `internal error: ${errorMessage(error)}`;
      if (!(error instanceof SlipwayError)) this.deps.logger.error({ job: jobName, backupId: id, err: redactSecrets(errorMessage(error), run.secrets) }, 'backup run failed unexpectedly');
      // A run already recorded keeps its outcome (and its file); only an unfinished one fails here.
      if (this.store.get(id)?.status !== 'running') return this.store.get(id)!;
      // A write (the state database's included) that failed because the dump filled the disk: said as
      // such, with the space seen while the dump's file was still there.
      const low = isWriteDiskFull(error) ? await this.lowSpace(run, 'after the dump').catch(() => null) : null;
      await removeFile(run.tempPath).catch(() => undefined);
      await removeFile(run.finalPath).catch(() => undefined);
      return low ? this.failRun(run, `${low.reason}; ${errorMessage(error)}`, {}, low.space) : this.failRun(run, message);
    }
  }

  /** Dumps into the temp file, judges the dump and the disk it left, then publishes and verifies the file. */
  private async dumpAndVerify(run: Run, credentials: Credentials): Promise<BackupRow> {
    run.secrets = credentials.secrets;
    const dump = await this.dump(run, credentials);
    const outcome: RunFacts = {
      bytes: dump.bytes, sha256: dump.sha256, exitCode: dump.exitCode, signal: dump.signal, timedOut: dump.timedOut,
      stderrTail: redactSecrets(dump.stderrTail, run.secrets).slice(-8 * 1024),
    };
    // Measured with the dump's file still there: the space the dump left is what tells a cut-short file.
    const low = await this.lowSpace(run, 'after the dump');
    const rejection = rejectDump(dump, run.job, low?.reason ?? null);
    // A dump that failed is not hashed (sha256 null), and rejectDump names why: the fallback is for the type only.
    if (rejection || dump.sha256 === null) {
      await removeFile(run.tempPath);
      return this.failRun(run, rejection?.reason ?? 'the dump failed', outcome, rejection?.diskFull ? low?.space : undefined);
    }
    await publishFile(run.tempPath, run.finalPath);
    const report = await this.verify(run, { ...dump, sha256: dump.sha256 }, credentials);
    return this.recordVerification(run, report, outcome);
  }

  private async dump(run: Run, credentials: Credentials): Promise<DumpResult> {
    const dump = await dumpToFile(this.dumpArgv(run.job, credentials), run.tempPath, {
      // mongodump's per-collection counts are read from stderr: keep enough of it for many collections.
      env: { ...this.baseEnv, ...credentials.env }, timeoutMs: run.job.timeoutMs, tailBytes: 256 * 1024,
      onSpawn: (pid) => {
        run.entry.pid = pid;
        try {
          this.store.setProcess(run.id, pid, processStartTime(pid));
        } catch (error) {
          // The dump may fill the disk before its pid is recorded; the run goes on (this process still
          // tracks the pid) and is judged, and its file removed, when it ends.
          if (!isWriteDiskFull(error)) throw error;
          this.deps.logger.warn({ job: run.jobName, backupId: run.id, pid }, 'could not record the dump\'s pid: the disk is full');
        }
      },
    });
    run.entry.pid = null;
    return dump;
  }

  /** The backup filesystem's free space when it is below the job's margin, with the reason in words. */
  private async lowSpace(run: Run, moment: 'before the dump' | 'after the dump'): Promise<{ reason: string; space: DiskSpace } | null> {
    const space = await diskSpaceOf(run.dir);
    const reason = lowSpaceReason(space, freeSpaceMargin(space.totalBytes, run.job.minFreeBytes), moment);
    return reason ? { reason, space } : null;
  }

  /** Records what verification found: a broken file is removed and the run failed; otherwise the file is kept. */
  private async recordVerification(run: Run, report: VerifyReport, outcome: RunFacts): Promise<BackupRow> {
    const { id, jobName, job } = run;
    if (report.broken) {
      await removeFile(run.finalPath);
      await fsyncDir(run.dir);
      return this.failRun(run, `verification found the archive broken: ${report.problem}`, { ...outcome, verification: report.verification });
    }
    const status = report.verified ? 'verified' : 'unverified';
    this.store.finishRun(id, {
      status, reason: report.problem, endedAt: this.iso(), durationMs: elapsedMs(run), file: run.finalPath, ...outcome,
      verifiedAt: report.verified ? this.iso() : null, verification: report.verification,
    });
    this.deps.logger.info({ job: jobName, backupId: id, status, bytes: outcome.bytes, durationMs: elapsedMs(run), level: report.verification.level }, 'backup finished');
    if (!report.verified) {
      await this.notify({ job: jobName, app: job.app, event: 'unverified', backupId: id, message: `The backup was written but did not pass verification (${report.problem}); it is kept, but never counts as the last good backup.` });
    } else {
      await this.afterVerified(jobName, job, id).catch((error: unknown) => this.notify({
        job: jobName, app: job.app, event: 'retention_failed', backupId: id,
        message: `The backup is verified, but the offsite copy or retention after it failed: ${redactSecrets(errorMessage(error), run.secrets)}`,
      }));
    }
    return this.store.get(id)!;
  }

  /** Records the run as failed and notifies; `fullDisk` when the disk was full, to name it and where to free space. */
  private async failRun(run: Run, reason: string, facts: RunFacts = {}, fullDisk?: DiskSpace): Promise<BackupRow> {
    const scrubbed = redactSecrets(reason, run.secrets);
    this.store.finishRun(run.id, { status: 'failed', reason: scrubbed, endedAt: this.iso(), durationMs: elapsedMs(run), ...facts });
    const next = fullDisk ? `; free space on ${fullDisk.mountPoint} (or change minFreeBytes) before the next run` : '';
    await this.notify({
      job: run.jobName, app: run.job.app, event: fullDisk ? 'disk_full' : 'failed', backupId: run.id,
      message: `${scrubbed}. Earlier backups are untouched${next}.`,
    });
    return this.store.get(run.id)!;
  }

  private async verify(run: Run, dump: DumpResult & { sha256: string }, credentials: Credentials): Promise<VerifyReport> {
    const { job } = run;
    try {
      return await verifyBackup({
        kind: job.kind, format: job.format, file: run.finalPath, job: run.jobName, backupId: run.id, sha256: dump.sha256, bytes: dump.bytes,
        dumpStderr: dump.stderrTail, restoreDrill: job.verify.restore,
        ...(job.verifyCommand ? { verifyCommand: job.verifyCommand } : {}),
        sizeHistory: isRawCommand(job) ? this.store.verifiedSizes(run.jobName, run.id, SIZE_HISTORY) : [],
        sizeBounds: {
          minSizeRatio: job.verify.minSizeRatio ?? DEFAULT_SIZE_BOUNDS.minSizeRatio,
          maxSizeRatio: job.verify.maxSizeRatio ?? DEFAULT_SIZE_BOUNDS.maxSizeRatio,
        },
        tools: {
          mongorestore: findTool(this.backups.tools.mongorestore, this.baseEnv.PATH),
          pgRestore: findTool(this.backups.tools.pgRestore, this.baseEnv.PATH),
          psql: findTool(this.backups.tools.psql, this.baseEnv.PATH),
        },
        credentials, timeoutMs: job.timeoutMs, baseEnv: this.baseEnv,
      });
    } catch (error) {
      const detail = redactSecrets(errorMessage(error), credentials.secrets);
      const verification: Verification = { level: 'none', counts: null, checks: [{ name: 'verification', ok: false, detail }] };
      return { verified: false, broken: false, verification, problem: `verification: ${detail}` };
    }
  }

  /** Offsite copy, then retention locally and offsite: only ever after a verified backup. */
  private async afterVerified(jobName: string, job: BackupJobConfig, id: number): Promise<void> {
    const row = this.store.get(id)!;
    const vars = { job: jobName, app: job.app };
    if (job.offsite) {
      const copied = await offsiteCopy(job.offsite, row.file!, vars, this.baseEnv);
      this.store.setOffsite(id, copied.ok ? 'copied' : 'failed', this.iso(), copied.ok ? path.basename(row.file!) : null, copied.ok ? null : copied.detail);
      if (!copied.ok) await this.notify({ job: jobName, app: job.app, event: 'offsite_failed', backupId: id, message: `Offsite copy failed: ${copied.detail}. The local backup is verified and kept.` });
    }
    await this.applyLocalRetention(jobName, job);
    if (job.offsite && offsiteMode(job.offsite) === 'gfs') await this.applyOffsiteRetention(jobName, job);
  }

  private async applyLocalRetention(jobName: string, job: BackupJobConfig): Promise<void> {
    const rows = this.store.withFiles(jobName);
    const plan = planRetention(rows.map((r) => ({ id: r.id, startedAt: r.startedAt, verified: r.status === 'verified' })), job.retention);
    const problems: string[] = [];
    for (const decision of plan.prune) {
      // planRetention never prunes it; this guard keeps that promise even if it ever did.
      if (decision.id === plan.newestVerifiedId) continue;
      const row = rows.find((r) => r.id === decision.id)!;
      try {
        await rm(row.file!, { force: true });
        this.store.markPruned(row.id, this.iso(), decision.reasons.join('; '));
      } catch (error) {
        problems.push(`#${row.id}: ${errorMessage(error)}`);
      }
    }
    if (plan.prune.length) {
      await fsyncDir(path.join(this.backups.dir, job.app, jobName)).catch(() => undefined);
      this.deps.logger.info({ job: jobName, pruned: plan.prune.map((p) => p.id), kept: plan.keep.map((k) => k.id) }, 'backup retention applied');
    }
    if (problems.length) await this.notify({ job: jobName, app: job.app, event: 'retention_failed', backupId: null, message: `Could not prune: ${problems.join('; ')}` });
  }

  private async applyOffsiteRetention(jobName: string, job: BackupJobConfig): Promise<void> {
    const offsite = job.offsite!;
    const vars = { job: jobName, app: job.app };
    const listed = await offsiteList(offsite, vars, this.baseEnv);
    if (!listed.ok) {
      await this.notify({ job: jobName, app: job.app, event: 'offsite_failed', backupId: null, message: `Listing the offsite copies failed, nothing pruned there: ${listed.detail}` });
      return;
    }
    // Only names Slipway wrote for this job are candidates; anything else on the remote is left alone.
    const candidates = listed.names.flatMap((name) => {
      const parsed = parseBackupFileName(name);
      const row = parsed ? this.store.get(parsed.id) : undefined;
      return row && row.job === jobName && row.file && path.basename(row.file) === name
        ? [{ name, row, candidate: { id: row.id, startedAt: row.startedAt, verified: row.status === 'verified' } }]
        : [];
    });
    const plan = planRetention(candidates.map((c) => c.candidate), job.retention);
    for (const decision of plan.prune) {
      if (decision.id === plan.newestVerifiedId) continue;
      const entry = candidates.find((c) => c.row.id === decision.id)!;
      const deleted = await offsiteDelete(offsite, entry.name, vars, this.baseEnv);
      if (deleted.ok) this.store.setOffsite(entry.row.id, 'pruned', this.iso(), entry.name, null);
      else await this.notify({ job: jobName, app: job.app, event: 'offsite_failed', backupId: entry.row.id, message: `Deleting the offsite copy ${entry.name} failed: ${deleted.detail}` });
    }
  }

  private dumpArgv(job: BackupJobConfig, credentials: Credentials): string[] {
    if (job.kind === 'mongodump') return mongodumpArgv(this.backups.tools.mongodump, credentials.configFile!, job.args);
    if (job.kind === 'pg_dump') return pgDumpArgv(this.backups.tools.pgDump, job.args);
    return job.command!;
  }

  /** The database URI of a job: from the agent config, or from the app's env file (0600). */
  private async sourceUri(jobName: string, job: BackupJobConfig): Promise<string> {
    if (job.source?.uri) return job.source.uri;
    const key = job.source!.uriEnv!;
    const env = await readAppEnv(envFileOf(this.deps.config, job.app), job.app, [key]).catch((error: unknown) => {
      throw new SlipwayError('backup_source_missing', `backup job ${jobName}: cannot read ${key} from the env file of ${job.app}: ${errorMessage(error)}`, {
        status: 409, hint: `set ${key} in the app's env file (mode 0600)`,
      });
    });
    return env[key]!;
  }

  private iso(): string {
    return this.now().toISOString();
  }
}

function checkTargetUri(job: BackupJobConfig, to: string): void {
  const wanted = job.kind === 'mongodump' ? /^mongodb(\+srv)?:\/\/\S+$/ : /^postgres(ql)?:\/\/\S+$/;
  if (!wanted.test(to)) {
    throw new SlipwayError('restore_target_invalid', `--to must be a ${job.kind === 'mongodump' ? 'mongodb://' : 'postgres://'} URI for job kind ${job.kind}`, {
      status: 400, hint: 'give the URI of the database to restore into',
    });
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/** ENOSPC/EDQUOT on a file, or SQLITE_FULL on the state database. */
function isWriteDiskFull(error: unknown): boolean {
  return isDiskFull(error) || (error as { code?: unknown } | null)?.code === 'SQLITE_FULL';
}
