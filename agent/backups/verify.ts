import { isRawCommand, type BackupKind } from './config.js';
import { parseMongodumpCounts, pgRestoreListArgv, redactSecrets } from './commands.js';
import { CheckList, type VerifyReport } from './checks.js';
import type { Credentials } from './credentials.js';
import { mongoDrill, pgDrill } from './drills.js';
import { scanFile, type FileScan } from './file-scan.js';
import { describeFailure, runGroup, succeeded } from './process.js';
import { judgeSizeRange, type SizeBounds } from './size-check.js';
export type { VerifyReport };

// Verification of a backup file after it is written: the bytes on disk against the recorded
// sha256, the archive's integrity (gzip stream, format header, whole structure; for a raw dump,
// which has none Slipway can read, its size), and a restore drill where the restore tool is
// available. Every check is recorded, passed, failed or skipped with its reason.

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
  /** Sizes of the job's previous verified dumps, newest first: the reference of a raw dump's size. */
  sizeHistory: readonly number[];
  sizeBounds: SizeBounds;
  tools: Tools;
  credentials: Credentials;
  timeoutMs: number;
  baseEnv: NodeJS.ProcessEnv;
}

const PG_MAGIC = Buffer.from('PGDMP');

export async function verifyBackup(input: VerifyInput): Promise<VerifyReport> {
  const checks = new CheckList((text) => redactSecrets(text, input.credentials.secrets));
  const env = { ...input.baseEnv, ...input.credentials.env };
  const scan = await scanFile(input.file, { gzip: isGzip(input), mongoArchive: input.kind === 'mongodump' });
  checkChecksum(input, scan, checks);
  if (!checks.broken) await checkStructure(input, scan, env, checks);
  if (!checks.broken && checks.allPassed()) await drill(input, env, checks);
  return checks.report();
}

function isGzip(input: Pick<VerifyInput, 'kind' | 'format'>): boolean {
  return input.kind === 'mongodump' || (input.kind === 'command' && input.format === 'gzip');
}

function checkChecksum(input: VerifyInput, scan: FileScan, checks: CheckList): void {
  if (scan.sha256 !== input.sha256 || scan.bytes !== input.bytes) {
    checks.fail('checksum', `the file on disk (${scan.bytes} bytes, sha256 ${scan.sha256}) differs from what was written (${input.bytes} bytes, sha256 ${input.sha256})`, true);
  } else {
    checks.pass('checksum', `sha256 ${scan.sha256}, ${scan.bytes} bytes`, 'checksum');
  }
}

/** What the file's format lets Slipway check without a restore tool. */
async function checkStructure(input: VerifyInput, scan: FileScan, env: NodeJS.ProcessEnv, checks: CheckList): Promise<void> {
  if (isGzip(input)) {
    if (scan.gzipError) checks.fail('gzip', `the gzip stream is damaged or cut short: ${scan.gzipError}`, true);
    else checks.pass('gzip', 'the gzip stream is complete and its CRC matches', 'integrity');
  }
  if (input.kind === 'mongodump' && scan.mongo) checkMongoArchive(input, scan.mongo, checks);
  if (input.kind === 'pg_dump') await checkPgFormat(input, scan, env, checks);
  if (isRawCommand(input)) checkRawSize(input, scan, checks);
}

function checkMongoArchive(input: VerifyInput, archive: NonNullable<FileScan['mongo']>, checks: CheckList): void {
  if (!archive.complete) {
    checks.fail('archive', `not a complete mongodump archive: ${archive.problems.join('; ')}`, true);
    return;
  }
  checks.counts = archive.counts;
  const reported = parseMongodumpCounts(input.dumpStderr);
  const mismatched = Object.entries(reported).filter(([ns, n]) => (archive.counts[ns] ?? 0) !== n)
    .map(([ns, n]) => `${ns}: mongodump reported ${n}, the archive holds ${archive.counts[ns] ?? 0}`);
  if (mismatched.length) {
    checks.fail('archive', `document counts differ: ${mismatched.join('; ')}`);
    return;
  }
  const total = Object.values(archive.counts).reduce((a, b) => a + b, 0);
  checks.pass('archive', `mongodump archive v${archive.formatVersion ?? '?'}: ${Object.keys(archive.counts).length} collection(s), ${total} document(s)${Object.keys(reported).length ? ', matching what mongodump reported' : ''}`, 'archive');
}

async function checkPgFormat(input: VerifyInput, scan: FileScan, env: NodeJS.ProcessEnv, checks: CheckList): Promise<void> {
  if (!scan.head.subarray(0, 5).equals(PG_MAGIC)) {
    checks.fail('format', 'not a pg_dump custom-format archive (no PGDMP header)', true);
  } else if (!input.tools.pgRestore) {
    checks.pass('format', 'PGDMP header present', 'integrity');
    checks.skip('toc', 'pg_restore not found: table of contents not read');
  } else {
    const list = await runGroup(pgRestoreListArgv(input.tools.pgRestore, input.file), { env, timeoutMs: input.timeoutMs });
    if (!succeeded(list)) checks.fail('format', `pg_restore cannot read the archive: ${describeFailure(list)}`, true);
    else checks.pass('format', 'PGDMP header present and pg_restore reads its table of contents', 'integrity');
  }
}

/**
 * A raw dump: not empty, and its size within the configured range of the job's previous
 * verified dumps. An odd size does not prove the file broken: it is kept, but not verified.
 */
function checkRawSize(input: VerifyInput, scan: FileScan, checks: CheckList): void {
  if (scan.bytes === 0) {
    checks.fail('size', 'the file is empty', true);
    return;
  }
  checks.pass('size', `${scan.bytes} bytes, not empty`);
  const range = judgeSizeRange(scan.bytes, input.sizeHistory, input.sizeBounds);
  if (range.skipped) checks.skip('size range', range.detail);
  else if (range.ok) checks.pass('size range', range.detail);
  else checks.fail('size range', range.detail);
}

async function drill(input: VerifyInput, env: NodeJS.ProcessEnv, checks: CheckList): Promise<void> {
  if (!input.restoreDrill) {
    checks.skip('restore drill', 'turned off for this job (verify.restore: false)');
  } else if (input.kind === 'mongodump') {
    await mongoDrill(input, env, checks);
  } else if (input.kind === 'pg_dump') {
    await pgDrill(input, env, checks);
  } else if (input.verifyCommand) {
    const run = await runGroup(input.verifyCommand, { env: input.baseEnv, timeoutMs: input.timeoutMs, stdinFile: input.file });
    if (succeeded(run)) checks.pass('verify command', 'the job\'s verifyCommand accepted the dump', 'command');
    else checks.fail('verify command', `the job's verifyCommand rejected the dump: ${describeFailure(run)}`);
  } else {
    checks.skip('restore drill', 'no verifyCommand configured for this command job');
  }
}
