import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { createGunzip } from 'node:zlib';
import type { BackupKind } from './config.js';
import {
  countRowsSql, parseMongodumpCounts, pgRestoreDataArgv, pgRestoreIntoArgv, pgRestoreListArgv, psqlArgv,
  mongorestoreArgv, quoteIdent, redactSecrets, scratchDbName, SCRATCH_DB_PREFIX,
} from './commands.js';
import type { Credentials } from './credentials.js';
import { MongoArchiveReader, type MongoArchiveSummary } from './mongo-archive.js';
import { CopyRowCounter } from './pg-copy.js';
import { runGroup, type GroupRunResult } from './process.js';
import type { Verification, VerifyCheck } from './store.js';

// Verification of a backup file after it is written (and again before a restore): the bytes on
// disk against the recorded sha256, the archive's integrity (gzip stream, format header, whole
// structure), and a restore drill where the restore tool is available.

export interface FileScan {
  sha256: string;
  bytes: number;
  head: Buffer;
  gzipError: string | null;
  mongo: MongoArchiveSummary | null;
}

/** One read of the file: sha256, and when asked, a full gunzip and a mongodump archive parse. */
export async function scanFile(file: string, options: { gzip: boolean; mongoArchive: boolean }): Promise<FileScan> {
  const hash = createHash('sha256');
  let bytes = 0;
  let head = Buffer.alloc(0);
  const reader = options.mongoArchive ? new MongoArchiveReader() : null;
  const gunzip = options.gzip ? createGunzip() : null;
  let gzipError: string | null = null;
  const gunzipDone = gunzip
    ? new Promise<void>((resolve) => {
        gunzip.on('data', (c: Buffer) => reader?.push(c));
        gunzip.once('end', resolve);
        gunzip.once('error', (e) => { gzipError = e.message; resolve(); });
      })
    : Promise.resolve();
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (head.length < 8) head = Buffer.concat([head, chunk.subarray(0, 8 - head.length)]);
    if (gunzip && gzipError === null && !gunzip.write(chunk)) {
      await Promise.race([once(gunzip, 'drain'), gunzipDone]);
    }
  }
  if (gunzip && bytes === 0) {
    gzipError = 'the file is empty';
    gunzip.destroy();
  } else if (gunzip) {
    if (gzipError === null) gunzip.end();
    await gunzipDone;
  }
  return { sha256: hash.digest('hex'), bytes, head, gzipError, mongo: gzipError === null && reader ? reader.end() : null };
}

export interface Tools {
  mongorestore: string | null;
  pgRestore: string | null;
  psql: string | null;
}

export interface VerifyInput {
  kind: BackupKind;
  format: 'gzip' | 'raw';
  file: string;
  job: string;
  backupId: number;
  sha256: string;
  bytes: number;
  /** stderr of the dump: mongodump reports what it dumped per namespace. */
  dumpStderr: string;
  restoreDrill: boolean;
  verifyCommand?: string[];
  tools: Tools;
  credentials: Credentials;
  timeoutMs: number;
  baseEnv: NodeJS.ProcessEnv;
}

export interface VerifyReport {
  /** Every check passed: the run is `verified`. */
  verified: boolean;
  /** The file is not a whole archive (truncated, wrong format): the run failed and the file goes. */
  broken: boolean;
  verification: Verification;
  /** The first failed check, in words. */
  problem: string | null;
}

const PG_MAGIC = Buffer.from('PGDMP');

export async function verifyBackup(input: VerifyInput): Promise<VerifyReport> {
  const checks: VerifyCheck[] = [];
  let counts: Record<string, number> | null = null;
  let broken = false;
  let level = 'none';
  const scrub = (text: string) => redactSecrets(text, input.credentials.secrets);
  const env = { ...input.baseEnv, ...input.credentials.env };
  const fail = (name: string, detail: string, isBroken = false) => {
    checks.push({ name, ok: false, detail: scrub(detail) });
    if (isBroken) broken = true;
  };
  const pass = (name: string, detail: string, reached: string) => {
    checks.push({ name, ok: true, detail: scrub(detail) });
    level = reached;
  };
  const skip = (name: string, detail: string) => checks.push({ name, ok: true, skipped: true, detail });

  const gzip = input.kind === 'mongodump' || (input.kind === 'command' && input.format === 'gzip');
  const scan = await scanFile(input.file, { gzip, mongoArchive: input.kind === 'mongodump' });
  if (scan.sha256 !== input.sha256 || scan.bytes !== input.bytes) {
    fail('checksum', `the file on disk (${scan.bytes} bytes, sha256 ${scan.sha256}) differs from what was written (${input.bytes} bytes, sha256 ${input.sha256})`, true);
  } else {
    pass('checksum', `sha256 ${scan.sha256}, ${scan.bytes} bytes`, 'checksum');
  }

  if (!broken) {
    if (gzip) {
      if (scan.gzipError) fail('gzip', `the gzip stream is damaged or cut short: ${scan.gzipError}`, true);
      else pass('gzip', 'the gzip stream is complete and its CRC matches', 'integrity');
    }
    if (input.kind === 'mongodump' && scan.mongo) {
      const archive = scan.mongo;
      if (!archive.complete) {
        fail('archive', `not a complete mongodump archive: ${archive.problems.join('; ')}`, true);
      } else {
        counts = archive.counts;
        const reported = parseMongodumpCounts(input.dumpStderr);
        const mismatched = Object.entries(reported).filter(([ns, n]) => (archive.counts[ns] ?? 0) !== n)
          .map(([ns, n]) => `${ns}: mongodump reported ${n}, the archive holds ${archive.counts[ns] ?? 0}`);
        if (mismatched.length) fail('archive', `document counts differ: ${mismatched.join('; ')}`);
        else {
          const total = Object.values(archive.counts).reduce((a, b) => a + b, 0);
          pass('archive', `mongodump archive v${archive.formatVersion ?? '?'}: ${Object.keys(archive.counts).length} collection(s), ${total} document(s)${Object.keys(reported).length ? ', matching what mongodump reported' : ''}`, 'archive');
        }
      }
    }
    if (input.kind === 'pg_dump') {
      if (!scan.head.subarray(0, 5).equals(PG_MAGIC)) fail('format', 'not a pg_dump custom-format archive (no PGDMP header)', true);
      else if (!input.tools.pgRestore) {
        pass('format', 'PGDMP header present', 'integrity');
        skip('toc', 'pg_restore not found: table of contents not read');
      } else {
        const list = await runGroup(pgRestoreListArgv(input.tools.pgRestore, input.file), { env, timeoutMs: input.timeoutMs });
        if (!succeeded(list)) fail('format', `pg_restore cannot read the archive: ${describeFailure(list)}`, true);
        else pass('format', 'PGDMP header present and pg_restore reads its table of contents', 'integrity');
      }
    }
  }

  if (!broken && checks.every((c) => c.ok)) {
    if (!input.restoreDrill) {
      skip('restore drill', 'turned off for this job (verify.restore: false)');
    } else if (input.kind === 'mongodump') {
      await mongoDrill(input, env, { pass, fail, skip }, counts ?? {});
    } else if (input.kind === 'pg_dump') {
      counts = await pgDrill(input, env, { pass, fail, skip });
    } else if (input.verifyCommand) {
      const run = await runGroup(input.verifyCommand, { env: input.baseEnv, timeoutMs: input.timeoutMs, stdinFile: input.file });
      if (succeeded(run)) pass('verify command', 'the job\'s verifyCommand accepted the dump', 'command');
      else fail('verify command', `the job's verifyCommand rejected the dump: ${describeFailure(run)}`);
    } else {
      skip('restore drill', 'no verifyCommand configured for this command job');
    }
  }
  const firstFailure = checks.find((c) => !c.ok);
  return {
    verified: !firstFailure,
    broken,
    verification: { level, checks, counts },
    problem: firstFailure ? `${firstFailure.name}: ${firstFailure.detail}` : null,
  };
}

interface Recorder {
  pass(name: string, detail: string, level: string): void;
  fail(name: string, detail: string, broken?: boolean): void;
  skip(name: string, detail: string): void;
}

/**
 * mongorestore --dryRun reads the archive's prelude and checks it against the server without
 * writing; it reads no documents, so the counts come from Slipway's own parse of the archive.
 */
async function mongoDrill(input: VerifyInput, env: NodeJS.ProcessEnv, r: Recorder, counts: Record<string, number>): Promise<void> {
  if (!input.tools.mongorestore || !input.credentials.configFile) {
    r.skip('restore drill', 'mongorestore not found: verified by checksum, gzip and a full parse of the archive');
    return;
  }
  const run = await runGroup(mongorestoreArgv(input.tools.mongorestore, input.credentials.configFile, input.file, 'dry-run'), { env, timeoutMs: input.timeoutMs });
  if (!succeeded(run)) {
    r.fail('restore drill', `mongorestore --dryRun failed: ${describeFailure(run)}`);
    return;
  }
  const announced = new Set([...run.stderrTail.matchAll(/archive prelude (\S+)/g)].map((m) => m[1]!));
  const missing = Object.keys(counts).filter((ns) => announced.size > 0 && !announced.has(ns));
  if (missing.length) {
    r.fail('restore drill', `mongorestore --dryRun does not see ${missing.join(', ')}`);
    return;
  }
  r.pass('restore drill', `mongorestore --dryRun accepted the archive (${announced.size || 'all'} namespace(s))`, 'restore-dry-run');
}

/**
 * Restores the archive into a scratch database on the same server and compares the rows of each
 * table with the rows the archive holds (counted from pg_restore's COPY output). The scratch
 * database is dropped afterwards, and leftovers of this job from an interrupted drill before it.
 */
async function pgDrill(input: VerifyInput, env: NodeJS.ProcessEnv, r: Recorder): Promise<Record<string, number> | null> {
  const { pgRestore, psql } = input.tools;
  const pg = input.credentials.pg;
  if (!pgRestore || !psql || !pg) {
    r.skip('restore drill', `${!pgRestore ? 'pg_restore' : 'psql'} not found: verified by checksum and format only`);
    return null;
  }
  const counter = new CopyRowCounter();
  const data = await runGroup(pgRestoreDataArgv(pgRestore, input.file), {
    env, timeoutMs: input.timeoutMs,
    consumeStdout: async (stdout) => { for await (const chunk of stdout) counter.push(chunk as Buffer); },
  });
  const inArchive = counter.end();
  if (!succeeded(data) || !inArchive.complete) {
    r.fail('restore drill', `pg_restore cannot read the archive's data: ${succeeded(data) ? 'a COPY block is not closed' : describeFailure(data)}`, true);
    return null;
  }
  const scratch = scratchDbName(input.job, input.backupId);
  const admin = (sql: string) => runGroup(psqlArgv(psql, pg.database, sql), { env, timeoutMs: 60_000 });
  // Job names have no "_", so this matches this job's scratch databases and no other job's.
  const ours = new RegExp(`^${scratchDbName(input.job, 0).replace(/0$/, '')}[0-9]+$`);
  const stale = await admin(`SELECT datname FROM pg_database WHERE datname LIKE '${SCRATCH_DB_PREFIX}%'`);
  for (const name of succeeded(stale) ? stale.stdoutTail.split('\n').filter((n) => ours.test(n)) : []) {
    await admin(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  }
  const created = await admin(`CREATE DATABASE ${quoteIdent(scratch)}`);
  if (!succeeded(created)) {
    r.fail('restore drill', `cannot create the scratch database ${scratch}: ${describeFailure(created)}; grant the backup user CREATEDB, or set verify.restore to false for this job`);
    return null;
  }
  try {
    const restored = await runGroup(pgRestoreIntoArgv(pgRestore, input.file, scratch, 'scratch'), { env, timeoutMs: input.timeoutMs });
    if (!succeeded(restored)) {
      r.fail('restore drill', `pg_restore into the scratch database failed: ${describeFailure(restored)}`);
      return null;
    }
    const tables = inArchive.tables;
    const actual = new Map<string, number>();
    if (tables.length) {
      const counted = await runGroup(psqlArgv(psql, scratch, countRowsSql(tables.map((t) => t.table))), { env, timeoutMs: input.timeoutMs, tailBytes: 1024 * 1024 });
      if (!succeeded(counted)) {
        r.fail('restore drill', `counting rows in the scratch database failed: ${describeFailure(counted)}`);
        return null;
      }
      for (const line of counted.stdoutTail.split('\n').filter(Boolean)) {
        const [index, n] = line.split('|');
        actual.set(tables[Number(index)]!.table, Number(n));
      }
    }
    const expected = Object.fromEntries(tables.map((t) => [t.table, t.rows]));
    const mismatched = tables.filter((t) => actual.get(t.table) !== t.rows)
      .map((t) => `${t.table}: archive ${t.rows}, restored ${actual.get(t.table) ?? 'missing'}`);
    if (mismatched.length) {
      r.fail('restore drill', `row counts differ after the restore: ${mismatched.join('; ')}`);
    } else {
      const total = tables.reduce((a, t) => a + t.rows, 0);
      r.pass('restore drill', `restored into scratch database ${scratch}: ${tables.length} table(s), ${total} row(s), every count matches the archive`, 'restore');
    }
    return expected;
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`);
  }
}

export function succeeded(run: GroupRunResult): boolean {
  return run.error === null && !run.timedOut && run.exitCode === 0;
}

/** "exit 2: <last stderr lines>" / "timed out after ..." / the spawn error, for messages (callers scrub secrets). */
export function describeFailure(run: GroupRunResult): string {
  const tail = run.stderrTail.trim().split('\n').slice(-5).join(' | ');
  const what = run.error ?? (run.timedOut ? 'timed out (its process group was killed)'
    : run.signal ? `killed by ${run.signal}` : `exit code ${run.exitCode}`);
  return tail ? `${what}: ${tail}` : what;
}
