import { SlipwayError } from '../../contract/errors.js';
import type { BackupKind } from './config.js';

// Pure builders: file names, argv arrays, credential files and redaction. Nothing here runs a
// program or touches the disk, so all of it is unit-tested by comparing exact values.

export const TEMP_PREFIX = '.tmp-';
export const TEMP_SUFFIX = '.part';

export function extensionOf(kind: BackupKind, format: 'gzip' | 'raw'): string {
  if (kind === 'mongodump') return '.archive.gz';
  if (kind === 'pg_dump') return '.pgdump';
  return format === 'gzip' ? '.dump.gz' : '.dump';
}

/** "20250102T030000Z": sortable, and names the moment the backup describes. */
export function stampOf(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

export function backupFileName(kind: BackupKind, format: 'gzip' | 'raw', startedAt: Date, id: number): string {
  return `${stampOf(startedAt)}-${id}${extensionOf(kind, format)}`;
}

const FILE_NAME = /^(\d{8}T\d{6}Z)-([1-9][0-9]{0,11})(\.archive\.gz|\.pgdump|\.dump\.gz|\.dump)$/;

/** The backup id and stamp a file name carries, or null for a name Slipway did not write. */
export function parseBackupFileName(name: string): { id: number; stamp: string } | null {
  const match = FILE_NAME.exec(name);
  return match ? { id: Number(match[2]), stamp: match[1]! } : null;
}

export function tempFileName(id: number, nonce: string): string {
  return `${TEMP_PREFIX}${id}-${nonce}${TEMP_SUFFIX}`;
}

export function isTempFileName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX);
}

// mongodump / mongorestore --------------------------------------------------------------------

/** `--archive` with no value writes the archive to stdout; the URI arrives through the --config file. */
export function mongodumpArgv(tool: string, configFile: string, extra: readonly string[]): string[] {
  return [tool, '--archive', '--gzip', `--config=${configFile}`, ...extra];
}

/**
 * mongorestore reading an archive file. `--dryRun` stops after the archive's prelude (namespaces
 * and metadata) and the server checks; it reads no documents, so counts are proven by Slipway's
 * own parse of the archive, not by the dry run.
 */
export function mongorestoreArgv(tool: string, configFile: string, file: string, mode: 'dry-run' | 'restore'): string[] {
  const argv = [tool, `--archive=${file}`, '--gzip', `--config=${configFile}`];
  return mode === 'dry-run' ? [...argv, '--dryRun', '--verbose'] : [...argv, '--drop'];
}

/** mongo tools' --config file is YAML; a JSON string is a valid YAML double-quoted scalar. */
export function mongoConfigYaml(uri: string): string {
  return `uri: ${JSON.stringify(uri)}\n`;
}

/** mongodump's "done dumping app.users (3 documents)" lines, as counts per namespace. */
export function parseMongodumpCounts(stderr: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const match of stderr.matchAll(/done dumping (\S+) \((\d+) documents?\)/g)) counts[match[1]!] = Number(match[2]);
  return counts;
}

// PostgreSQL ----------------------------------------------------------------------------------

export interface PgConnection {
  /** libpq environment: PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, ... (never the password). */
  env: Record<string, string>;
  database: string;
  user: string;
  host: string;
  port: string;
  password: string | null;
}

const PG_QUERY_ENV: Record<string, string> = {
  sslmode: 'PGSSLMODE', sslrootcert: 'PGSSLROOTCERT', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY',
  connect_timeout: 'PGCONNECT_TIMEOUT', application_name: 'PGAPPNAME', host: 'PGHOST', port: 'PGPORT',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
};

/** A database name libpq takes literally (one with "=" or a URI prefix would be parsed as a connection string). */
export function isPlainDbName(name: string): boolean {
  return name.length > 0 && name.length <= 63 && !name.includes('=') && !/^postgres(ql)?:/.test(name) && !/[\u0000-\u001f]/.test(name);
}

/**
 * Splits a postgres:// URI into libpq environment variables and a password for a PGPASSFILE, so
 * neither the URI nor the password is ever on a command line. Errors never quote the URI.
 */
export function parsePgUri(uri: string): PgConnection {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new SlipwayError('backup_source_invalid', 'the PostgreSQL URI cannot be parsed', { hint: 'use postgres://user:password@host:port/database', status: 400 });
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new SlipwayError('backup_source_invalid', `expected a postgres:// URI, got ${url.protocol}//`, { hint: 'use postgres://user:password@host:port/database', status: 400 });
  }
  if (url.hostname.includes(',')) {
    throw new SlipwayError('backup_source_invalid', 'URIs with several hosts are not supported', { hint: 'name one host', status: 400 });
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  const user = decodeURIComponent(url.username);
  if (!database || !isPlainDbName(database)) {
    throw new SlipwayError('backup_source_invalid', 'the PostgreSQL URI must name a plain database (no "=")', { hint: 'use postgres://user:password@host:port/database', status: 400 });
  }
  if (!user) throw new SlipwayError('backup_source_invalid', 'the PostgreSQL URI must name a user', { hint: 'use postgres://user:password@host:port/database', status: 400 });
  const env: Record<string, string> = { PGDATABASE: database, PGUSER: user };
  if (url.hostname) env.PGHOST = decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1');
  if (url.port) env.PGPORT = url.port;
  for (const [key, value] of url.searchParams) {
    const name = PG_QUERY_ENV[key];
    if (!name) throw new SlipwayError('backup_source_invalid', `unsupported PostgreSQL URI parameter "${key}"`, { hint: `supported: ${Object.keys(PG_QUERY_ENV).join(', ')}`, status: 400 });
    env[name] = value;
  }
  return {
    env, database, user,
    host: env.PGHOST ?? 'localhost', port: env.PGPORT ?? '5432',
    password: url.password ? decodeURIComponent(url.password) : null,
  };
}

function pgPassEscape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** One ~/.pgpass line for this server and user, any database (the scratch database too). */
export function pgPassLine(connection: PgConnection): string {
  const { host, port, user, password } = connection;
  return `${pgPassEscape(host)}:${pgPassEscape(port)}:*:${pgPassEscape(user)}:${pgPassEscape(password ?? '')}\n`;
}

export function pgDumpArgv(tool: string, extra: readonly string[]): string[] {
  return [tool, '--format=custom', '--no-password', ...extra];
}

/** Prints the archive's table of contents; fails on an archive it cannot read. */
export function pgRestoreListArgv(tool: string, file: string): string[] {
  return [tool, '--list', file];
}

/** Writes the archive's data as COPY blocks to stdout, so rows per table can be counted. */
export function pgRestoreDataArgv(tool: string, file: string): string[] {
  return [tool, '--data-only', '--file=-', file];
}

/** Restores an archive into `database`: into an empty scratch database, or over a live one (clean, all or nothing). */
export function pgRestoreIntoArgv(tool: string, file: string, database: string, mode: 'scratch' | 'replace'): string[] {
  const common = [tool, '--no-owner', '--no-acl', '--exit-on-error', '--no-password', `--dbname=${database}`];
  return mode === 'scratch' ? [...common, file] : [...common, '--clean', '--if-exists', '--single-transaction', file];
}

export function psqlArgv(tool: string, database: string, sql: string): string[] {
  return [tool, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '--no-password', `--dbname=${database}`, '-c', sql];
}

export const SCRATCH_DB_PREFIX = 'slipway_verify_';

export function scratchDbName(job: string, backupId: number): string {
  return `${SCRATCH_DB_PREFIX}${job.replace(/-/g, '_')}_${backupId}`;
}

/** A double-quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A schema-qualified table name exactly as pg_dump prints it in COPY lines (quoted where needed). */
export const QUALIFIED_TABLE = '(?:"(?:[^"]|"")+"|[^\\s."(]+)(?:\\.(?:"(?:[^"]|"")+"|[^\\s."(]+))?';

/** One query counting the rows of each table; answers "index|count" lines. */
export function countRowsSql(tables: readonly string[]): string {
  const valid = new RegExp(`^${QUALIFIED_TABLE}$`);
  for (const table of tables) if (!valid.test(table)) throw new Error(`not a table name: ${table}`);
  return tables.map((t, i) => `SELECT ${i}, count(*) FROM ${t}`).join(' UNION ALL ');
}

// Offsite and redaction -----------------------------------------------------------------------

/** Replaces {file} {name} {job} {app} in each argument (no shell is involved). */
export function expandPlaceholders(argv: readonly string[], vars: Record<'file' | 'name' | 'job' | 'app', string>): string[] {
  return argv.map((arg) => arg.replace(/\{(file|name|job|app)\}/g, (_, key: keyof typeof vars) => vars[key]));
}

const URI_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@]*@/gi;

/** Removes known secrets and any user:password@ of a URI from text shown to people (stderr tails, errors). */
export function redactSecrets(text: string, secrets: readonly (string | null | undefined)[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 3) out = out.split(secret).join('[REDACTED]');
  }
  return out.replace(URI_CREDENTIALS, '$1:[REDACTED]@');
}

/** A URI safe to log or store: the password replaced. */
export function redactUri(uri: string): string {
  return redactSecrets(uri);
}
