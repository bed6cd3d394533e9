import {
  countRowsSql, mongorestoreArgv, pgRestoreDataArgv, pgRestoreIntoArgv, psqlArgv, quoteIdent, scratchDbName, SCRATCH_DB_PREFIX,
} from './commands.js';
import type { CheckList } from './checks.js';
import { CopyRowCounter } from './pg-copy.js';
import { describeFailure, runGroup, succeeded, type GroupRunResult } from './process.js';
import type { VerifyInput } from './verify.js';

// Restore drills: the restore tool reads the archive for real, where it is installed. Each drill
// records one "restore drill" check (passed, failed or skipped with the reason).

/**
 * mongorestore --dryRun reads the archive's prelude and checks it against the server without
 * writing; it reads no documents, so the counts come from Slipway's own parse of the archive.
 */
export async function mongoDrill(input: VerifyInput, env: NodeJS.ProcessEnv, checks: CheckList): Promise<void> {
  if (!input.tools.mongorestore || !input.credentials.configFile) {
    checks.skip('restore drill', 'mongorestore not found: verified by checksum, gzip and a full parse of the archive');
    return;
  }
  const run = await runGroup(mongorestoreArgv(input.tools.mongorestore, input.credentials.configFile, input.file, 'dry-run'), { env, timeoutMs: input.timeoutMs });
  if (!succeeded(run)) {
    checks.fail('restore drill', `mongorestore --dryRun failed: ${describeFailure(run)}`);
    return;
  }
  const announced = new Set([...run.stderrTail.matchAll(/archive prelude (\S+)/g)].map((m) => m[1]!));
  const missing = Object.keys(checks.counts ?? {}).filter((ns) => announced.size > 0 && !announced.has(ns));
  if (missing.length) {
    checks.fail('restore drill', `mongorestore --dryRun does not see ${missing.join(', ')}`);
    return;
  }
  checks.pass('restore drill', `mongorestore --dryRun accepted the archive (${announced.size || 'all'} namespace(s))`, 'restore-dry-run');
}

interface ArchiveTable { table: string; rows: number }

/**
 * Restores the archive into a scratch database on the same server and compares the rows of each
 * table with the rows the archive holds (counted from pg_restore's COPY output). The scratch
 * database is dropped afterwards, and leftovers of this job from an interrupted drill before it.
 * Sets `checks.counts` to the archive's rows per table once the archive's data could be read.
 */
export async function pgDrill(input: VerifyInput, env: NodeJS.ProcessEnv, checks: CheckList): Promise<void> {
  const { pgRestore, psql } = input.tools;
  const pg = input.credentials.pg;
  if (!pgRestore || !psql || !pg) {
    checks.skip('restore drill', `${!pgRestore ? 'pg_restore' : 'psql'} not found: verified by checksum and format only`);
    return;
  }
  const inArchive = await archiveRows(pgRestore, input, env);
  if ('failure' in inArchive) {
    checks.fail('restore drill', `pg_restore cannot read the archive's data: ${inArchive.failure}`, true);
    return;
  }
  const scratch = scratchDbName(input.job, input.backupId);
  const admin = (sql: string) => runGroup(psqlArgv(psql, pg.database, sql), { env, timeoutMs: 60_000 });
  await dropStaleScratch(input.job, admin);
  const created = await admin(`CREATE DATABASE ${quoteIdent(scratch)}`);
  if (!succeeded(created)) {
    checks.fail('restore drill', `cannot create the scratch database ${scratch}: ${describeFailure(created)}; grant the backup user CREATEDB, or set verify.restore to false for this job`);
    return;
  }
  try {
    const restored = await runGroup(pgRestoreIntoArgv(pgRestore, input.file, scratch, 'scratch'), { env, timeoutMs: input.timeoutMs });
    if (!succeeded(restored)) {
      checks.fail('restore drill', `pg_restore into the scratch database failed: ${describeFailure(restored)}`);
      return;
    }
    const actual = await restoredRows(psql, scratch, inArchive.tables, env, input.timeoutMs);
    if ('failure' in actual) {
      checks.fail('restore drill', `counting rows in the scratch database failed: ${actual.failure}`);
      return;
    }
    const mismatched = rowMismatches(inArchive.tables, actual.rows);
    if (mismatched.length) {
      checks.fail('restore drill', `row counts differ after the restore: ${mismatched.join('; ')}`);
    } else {
      const total = inArchive.tables.reduce((a, t) => a + t.rows, 0);
      checks.pass('restore drill', `restored into scratch database ${scratch}: ${inArchive.tables.length} table(s), ${total} row(s), every count matches the archive`, 'restore');
    }
    checks.counts = Object.fromEntries(inArchive.tables.map((t) => [t.table, t.rows]));
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`);
  }
}

/** The archive's rows per table, counted from pg_restore's COPY output. */
async function archiveRows(pgRestore: string, input: VerifyInput, env: NodeJS.ProcessEnv): Promise<{ tables: ArchiveTable[] } | { failure: string }> {
  const counter = new CopyRowCounter();
  const data = await runGroup(pgRestoreDataArgv(pgRestore, input.file), {
    env, timeoutMs: input.timeoutMs,
    consumeStdout: async (stdout) => { for await (const chunk of stdout) counter.push(chunk as Buffer); },
  });
  const counted = counter.end();
  if (!succeeded(data)) return { failure: describeFailure(data) };
  if (!counted.complete) return { failure: 'a COPY block is not closed' };
  return { tables: counted.tables };
}

/** Drops scratch databases an interrupted drill of this job left behind. */
async function dropStaleScratch(job: string, admin: (sql: string) => Promise<GroupRunResult>): Promise<void> {
  // Job names have no "_", so this matches this job's scratch databases and no other job's.
  const ours = new RegExp(`^${scratchDbName(job, 0).replace(/0$/, '')}[0-9]+$`);
  const stale = await admin(`SELECT datname FROM pg_database WHERE datname LIKE '${SCRATCH_DB_PREFIX}%'`);
  for (const name of succeeded(stale) ? stale.stdoutTail.split('\n').filter((n) => ours.test(n)) : []) {
    await admin(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  }
}

/** Rows per table in the scratch database, by one query. */
async function restoredRows(psql: string, scratch: string, tables: readonly ArchiveTable[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ rows: Map<string, number> } | { failure: string }> {
  const rows = new Map<string, number>();
  if (!tables.length) return { rows };
  const counted = await runGroup(psqlArgv(psql, scratch, countRowsSql(tables.map((t) => t.table))), { env, timeoutMs, tailBytes: 1024 * 1024 });
  if (!succeeded(counted)) return { failure: describeFailure(counted) };
  for (const line of counted.stdoutTail.split('\n').filter(Boolean)) {
    const [index, n] = line.split('|');
    rows.set(tables[Number(index)]!.table, Number(n));
  }
  return { rows };
}

/** Pure: "table: archive N, restored M" for every table whose restored rows differ from the archive's. */
export function rowMismatches(tables: readonly ArchiveTable[], restored: ReadonlyMap<string, number>): string[] {
  return tables.filter((t) => restored.get(t.table) !== t.rows)
    .map((t) => `${t.table}: archive ${t.rows}, restored ${restored.get(t.table) ?? 'missing'}`);
}
