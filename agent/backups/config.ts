import path from 'node:path';
import { validateDetailed } from 'node-cron';
import { APP_NAME_PATTERN } from '../../contract/names.js';

// The `backups` section of the agent config: its JSON schema (embedded in agent/config.ts), its
// types, and the checks a schema cannot express (cron syntax, kind-dependent fields, references
// to apps), reported by path like every other config problem.

import { BACKUP_KINDS, type BackupKind, type RetentionPolicy } from '../../contract/backups.js';
import { DEFAULT_SIZE_BOUNDS } from './size-check.js';
export { BACKUP_KINDS, type BackupKind, type RetentionPolicy };
export const JOB_NAME_PATTERN = APP_NAME_PATTERN;

export interface OffsiteConfig {
  /** argv copying one backup; {file} {name} {job} {app} are replaced. */
  copy: string[];
  /** argv printing the names of this job's remote copies, one per line; enables remote pruning with `delete`. */
  list?: string[];
  /** argv deleting one remote copy ({name}). */
  delete?: string[];
  timeoutMs: number;
}

export interface BackupJobConfig {
  app: string;
  /** node-cron expression (5 fields, or 6 with seconds first). */
  schedule: string;
  kind: BackupKind;
  timeoutMs: number;
  retention: RetentionPolicy;
  /**
   * restore: run the restore drill when the restore tool is available (default true).
   * minSizeRatio / maxSizeRatio (kind "command", format "raw" only; filled for those): the size a
   * dump may have relative to the median of the job's previous verified dumps.
   */
  verify: { restore: boolean; minSizeRatio?: number; maxSizeRatio?: number };
  /** Output shorter than this is a failed run (an empty or header-only dump). */
  minBytes: number;
  /**
   * Free space the backup filesystem must keep before and after the dump; less fails the run.
   * Unset: 1% of the filesystem, at most 64 MiB (agent/backups/disk-space.ts).
   */
  minFreeBytes?: number;
  /** Database to dump (mongodump, pg_dump): a URI in this file, or the name of a key in the app's env file. */
  source?: { uri?: string; uriEnv?: string };
  /** Extra arguments for mongodump / pg_dump (never credentials: those go through files). */
  args: string[];
  /** kind "command": argv writing the dump to stdout. */
  command?: string[];
  /** kind "command": what the output is, for the integrity check. */
  format: 'gzip' | 'raw';
  /** kind "command": argv restoring a dump read from stdin. */
  restoreCommand?: string[];
  /** kind "command": argv reading a dump on stdin and exiting 0 when it is sound. */
  verifyCommand?: string[];
  offsite?: OffsiteConfig;
}

export interface BackupsConfig {
  /** Where archives go: <dir>/<app>/<job>/; default <home>/backups. */
  dir: string;
  /** Slack-compatible incoming webhook; failures are posted to it. It is a secret: never logged. */
  notifyWebhook?: string;
  notifyTimeoutMs: number;
  defaults: { timeoutMs: number; retention: RetentionPolicy; minFreeBytes?: number };
  tools: { mongodump: string; mongorestore: string; pgDump: string; pgRestore: string; psql: string };
  jobs: Record<string, BackupJobConfig>;
}

const argv = { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, pattern: '^[^\\u0000]*$' } } as const;
const count = { type: 'integer', minimum: 0, maximum: 1000 } as const;
const retentionSchema = {
  type: 'object', additionalProperties: false,
  properties: { daily: count, weekly: count, monthly: count },
} as const;
const tool = { type: 'string', minLength: 1, pattern: '^[^\\u0000\\s]+$' } as const;
const minFreeBytes = { type: 'integer', minimum: 0 } as const;

/** JSON schema of `backups` (defaults of job fields come from `backups.defaults`, filled by normalizeBackups). */
export const backupsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['jobs'],
  properties: {
    dir: { type: 'string', pattern: '^/[^\\u0000]*$' },
    notifyWebhook: { type: 'string', pattern: '^https?://[^\\s]+$' },
    notifyTimeoutMs: { type: 'integer', minimum: 100, default: 5_000 },
    defaults: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        timeoutMs: { type: 'integer', minimum: 100, default: 3_600_000 },
        retention: { ...retentionSchema, default: {} },
        minFreeBytes,
      },
    },
    tools: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        mongodump: { ...tool, default: 'mongodump' },
        mongorestore: { ...tool, default: 'mongorestore' },
        pgDump: { ...tool, default: 'pg_dump' },
        pgRestore: { ...tool, default: 'pg_restore' },
        psql: { ...tool, default: 'psql' },
      },
    },
    jobs: {
      type: 'object',
      propertyNames: { pattern: JOB_NAME_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['app', 'schedule', 'kind'],
        properties: {
          app: { type: 'string', pattern: APP_NAME_PATTERN },
          schedule: { type: 'string', minLength: 1 },
          kind: { enum: [...BACKUP_KINDS] },
          timeoutMs: { type: 'integer', minimum: 100 },
          retention: retentionSchema,
          verify: {
            type: 'object', additionalProperties: false, default: {},
            properties: {
              restore: { type: 'boolean', default: true },
              minSizeRatio: { type: 'number', minimum: 0, maximum: 1 },
              maxSizeRatio: { type: 'number', minimum: 1 },
            },
          },
          minBytes: { type: 'integer', minimum: 1 },
          minFreeBytes,
          source: {
            type: 'object', additionalProperties: false,
            properties: {
              uri: { type: 'string', pattern: '^(mongodb|mongodb\\+srv|postgres|postgresql)://[^\\s]+$' },
              uriEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
            },
          },
          args: { type: 'array', default: [], items: { type: 'string', minLength: 1, pattern: '^[^\\u0000]*$' } },
          command: argv,
          format: { enum: ['gzip', 'raw'], default: 'raw' },
          restoreCommand: argv,
          verifyCommand: argv,
          offsite: {
            type: 'object', additionalProperties: false, required: ['copy'],
            properties: {
              copy: argv, list: argv, delete: argv,
              timeoutMs: { type: 'integer', minimum: 100, default: 600_000 },
            },
          },
        },
      },
    },
  },
} as const;

export const DEFAULT_RETENTION: RetentionPolicy = { daily: 7, weekly: 4, monthly: 12 };

/**
 * Arguments a job may not add: credentials (on a command line `ps` shows them to every user),
 * connection details (they come from source) and the output options Slipway sets itself.
 */
const RESERVED_ARGS: Record<'mongodump' | 'pg_dump', RegExp> = {
  mongodump: /^(--uri|--password|-p|--host|-h|--port|--config|--archive|--gzip|--out|-o)(=|$)|:\/\//,
  pg_dump: /^(--dbname|-d|--host|-h|--port|-p|--password|-W|--username|-U|--file|-f|--format|-F)(=|$)|:\/\//,
};

/**
 * Pure: fills each job's defaults from `backups.defaults` and lists the problems a schema cannot
 * see, as "backups/jobs/<job>/<field>: problem" lines. `backups` is the schema-validated object.
 */
export function normalizeBackups(backups: BackupsConfig, home: string, apps: Record<string, { backupBeforeDeploy?: string }>): string[] {
  backups.dir ??= path.join(home, 'backups');
  backups.defaults.retention = { ...DEFAULT_RETENTION, ...backups.defaults.retention };
  const problems: string[] = [];
  for (const [name, job] of Object.entries(backups.jobs)) {
    fillJobDefaults(job, backups.defaults);
    problems.push(...jobProblems(`backups/jobs/${name}`, job, apps));
  }
  problems.push(...backupBeforeDeployProblems(backups, apps));
  return problems;
}

function fillJobDefaults(job: BackupJobConfig, defaults: BackupsConfig['defaults']): void {
  job.timeoutMs ??= defaults.timeoutMs;
  job.retention = { ...defaults.retention, ...job.retention };
  job.minBytes ??= job.kind === 'command' ? 1 : 64;
  if (job.minFreeBytes === undefined && defaults.minFreeBytes !== undefined) job.minFreeBytes = defaults.minFreeBytes;
  if (isRawCommand(job)) {
    job.verify.minSizeRatio ??= DEFAULT_SIZE_BOUNDS.minSizeRatio;
    job.verify.maxSizeRatio ??= DEFAULT_SIZE_BOUNDS.maxSizeRatio;
  }
}

/** A job whose output Slipway cannot read: its size is what verification checks. */
export function isRawCommand(job: Pick<BackupJobConfig, 'kind' | 'format'>): boolean {
  return job.kind === 'command' && job.format === 'raw';
}

function jobProblems(at: string, job: BackupJobConfig, apps: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const cron = validateDetailed(job.schedule);
  if (!cron.valid) {
    const why = cron.errors.map((e) => e.message).join('; ') || 'invalid';
    problems.push(`${at}/schedule: "${job.schedule}" is not a valid cron expression (${why}); e.g. "0 3 * * *" for 03:00 daily`);
  }
  if (!(job.app in apps)) problems.push(`${at}/app: "${job.app}" is not an app configured in apps`);
  if (job.retention.daily + job.retention.weekly + job.retention.monthly === 0) {
    problems.push(`${at}/retention: keeps nothing; set at least one of daily, weekly, monthly above 0`);
  }
  problems.push(...(job.kind === 'command' ? commandJobProblems(at, job) : databaseJobProblems(at, job)));
  if (job.offsite && (job.offsite.list === undefined) !== (job.offsite.delete === undefined)) {
    problems.push(`${at}/offsite: give both list and delete (remote pruning) or neither (copy-only)`);
  }
  return problems;
}

function commandJobProblems(at: string, job: BackupJobConfig): string[] {
  const problems: string[] = [];
  if (!job.command) problems.push(`${at}/command: is required for kind "command" (argv writing the dump to stdout)`);
  if (job.source) problems.push(`${at}/source: is only for kinds mongodump and pg_dump`);
  if (!isRawCommand(job)) problems.push(...sizeRatioProblems(at, job));
  return problems;
}

function databaseJobProblems(at: string, job: BackupJobConfig): string[] {
  const problems: string[] = [];
  if (job.command || job.restoreCommand || job.verifyCommand) {
    problems.push(`${at}: command, restoreCommand and verifyCommand are only for kind "command"`);
  }
  const source = job.source;
  if (!source || (source.uri === undefined) === (source.uriEnv === undefined)) {
    problems.push(`${at}/source: give exactly one of uri or uriEnv (a key of the app's env file)`);
  } else if (source.uri) {
    const wanted = job.kind === 'mongodump' ? /^mongodb(\+srv)?:\/\// : /^postgres(ql)?:\/\//;
    if (!wanted.test(source.uri)) problems.push(`${at}/source/uri: is not a ${job.kind === 'mongodump' ? 'mongodb://' : 'postgres://'} URI`);
  }
  job.args.forEach((arg, i) => {
    if (RESERVED_ARGS[job.kind as 'mongodump' | 'pg_dump'].test(arg)) {
      // Never echoed: it may be the very credential being refused.
      problems.push(`${at}/args/${i}: output options are set by Slipway; connection details and credentials go in source, never on the command line`);
    }
  });
  problems.push(...sizeRatioProblems(at, job));
  return problems;
}

/** The size range is only checked where nothing better can be: a job whose format has structure is checked by it. */
function sizeRatioProblems(at: string, job: BackupJobConfig): string[] {
  return (['minSizeRatio', 'maxSizeRatio'] as const).filter((key) => job.verify[key] !== undefined)
    .map((key) => `${at}/verify/${key}: only checked for kind "command" with format "raw" (other formats are checked by their structure)`);
}

function backupBeforeDeployProblems(backups: BackupsConfig, apps: Record<string, { backupBeforeDeploy?: string }>): string[] {
  const problems: string[] = [];
  for (const [app, appConfig] of Object.entries(apps)) {
    const jobName = appConfig.backupBeforeDeploy;
    if (jobName === undefined) continue;
    const job = backups.jobs[jobName];
    if (!job) problems.push(`apps/${app}/backupBeforeDeploy: no backup job "${jobName}" in backups/jobs`);
    else if (job.app !== app) problems.push(`apps/${app}/backupBeforeDeploy: job "${jobName}" backs up app ${job.app}, not ${app}`);
  }
  return problems;
}

/** backupBeforeDeploy without any `backups` section: reported by path too. */
export function orphanBackupBeforeDeploy(apps: Record<string, { backupBeforeDeploy?: string }>): string[] {
  return Object.entries(apps)
    .filter(([, a]) => a.backupBeforeDeploy !== undefined)
    .map(([app, a]) => `apps/${app}/backupBeforeDeploy: no backup job "${a.backupBeforeDeploy}" (the config has no backups section)`);
}
