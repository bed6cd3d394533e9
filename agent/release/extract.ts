import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';
import { SlipwayError, errorMessage } from '../shared/errors.js';
import { checkEntry, createPolicyState, type EntryKind, type PolicyRule, type PolicyState, type TarEntryLimits } from './tar-entry-policy.js';

export type ExtractLimits = TarEntryLimits;

export interface ExtractResult {
  /** Entries in the archive (files, directories, symlinks). */
  entries: number;
  /** Bytes of file content written. */
  bytes: number;
}

/**
 * The tar stream of a legitimate archive is its content plus, per entry, a header, padding and
 * perhaps a pax or long-name record. Anything beyond that is data no entry accounts for (such
 * as gigabytes of zeros after the end marker): the shape of a gzip bomb that passes every
 * per-entry size check.
 */
const STREAM_OVERHEAD_PER_ENTRY = 4096;
/** One read chunk of not-yet-parsed headers, a pending metadata record and the end padding. */
const STREAM_SLACK = 1024 * 1024;
// 64 KiB chunks made gunzip + parse of a 100 MB release about twice as slow as 256 KiB ones
// (the archive is read twice); still well inside STREAM_SLACK.
const READ_CHUNK = 256 * 1024;
/** node-tar not draining for this long means it is stuck (a healthy slow disk drains far sooner). */
const STALL_TIMEOUT_MS = 120_000;
/** Characters of an entry name quoted in an error message. */
const MAX_SHOWN = 200;
const AGENT_CONFIG = '/etc/slipway/agent.json';
const RAISE_HINT: Record<LimitName, string> = {
  maxEntries: `if the release really needs that many files, raise limits.maxEntries in the agent config (${AGENT_CONFIG}); otherwise leave build caches and dev dependencies out of the tarball`,
  maxUnpackedBytes: `if the release really is that large, raise limits.maxUnpackedBytes in the agent config (${AGENT_CONFIG}); otherwise leave build caches and dev dependencies out of the tarball`,
};
const BAD_TARBALL_HINT = 'rebuild the tarball with `deploy push`; the archive was refused as a whole and nothing from it was kept';

type LimitName = 'maxEntries' | 'maxUnpackedBytes';
type Compression = 'gzip' | 'none';
interface Planned { kind: EntryKind; mode: number; size: number }

/** Why a pass over the archive stopped; becomes a SlipwayError at the boundary of this module. */
class ArchiveProblem extends Error {
  constructor(
    message: string,
    readonly options: { rule?: PolicyRule | 'corrupt' | 'bomb' | 'mismatch'; limit?: LimitName; entryPath?: string } = {},
  ) {
    super(message);
  }
}

/**
 * Unpacks a release tarball (gzip or plain tar) into `destDir`, which must not exist yet and is
 * created 0700.
 *
 * The archive is read twice. The first pass only lists it (node-tar `t`), applying the whole
 * entry policy, the limits and the truncation checks without writing a byte, so hostile, huge
 * or damaged archives never reach the disk. The second pass extracts (node-tar `x`, strict),
 * applies the same policy again and aborts on the first warning. Finally every mode is set
 * explicitly (the umask must not decide) and the tree on disk is compared with the archive.
 * On any failure `destDir` is removed completely and a SlipwayError is thrown.
 */
export async function extractTarball(tarballPath: string, destDir: string, limits: ExtractLimits): Promise<ExtractResult> {
  const dest = path.resolve(destDir);
  let compression: Compression;
  try {
    compression = await sniffCompression(tarballPath);
    await runPass(tarballPath, compression, createPolicyState(limits), (filter) =>
      tar.t({ strict: true, brotli: false, zstd: false, maxDecompressionRatio: Infinity, filter }));
  } catch (error) {
    throw toSlipwayError(error);
  }

  try {
    await mkdir(dest, { mode: 0o700 });
  } catch (error) {
    throw new SlipwayError('extract_target_exists', `cannot create the extraction directory ${dest}: ${errorMessage(error)}`, {
      status: 500, cause: error, hint: 'extraction needs a fresh directory; remove the leftover (the agent does so on start) and retry',
    });
  }
  try {
    const state = createPolicyState(limits);
    const planned = new Map<string, Planned>();
    const uid = process.getuid?.();
    const gid = process.getgid?.();
    await runPass(tarballPath, compression, state, (filter) =>
      tar.x({
        cwd: dest,
        strict: true,
        brotli: false,
        zstd: false,
        // Our own counting replaces node-tar's ratio check (which a plain tar never gets).
        maxDecompressionRatio: Infinity,
        // node-tar keeps the archive's owners when run as root: files are always ours instead.
        preserveOwner: false,
        ...(uid !== undefined && gid !== undefined ? { uid, gid } : {}),
        unlink: false,
        filter,
      }), planned);
    const bytes = await settleTree(dest, planned);
    return { entries: state.entries, bytes };
  } catch (error) {
    await discard(dest);
    throw toSlipwayError(error);
  }
}

async function sniffCompression(tarballPath: string): Promise<Compression> {
  const handle = await open(tarballPath, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b ? 'gzip' : 'none';
  } finally {
    await handle.close();
  }
}

type EntryFilter = (entryPath: string, entry: unknown) => boolean;

/**
 * Feeds the archive into a node-tar Parser (listing) or Unpack (extraction). We gunzip it
 * ourselves so that every decompressed byte is counted, and respect backpressure so a slow disk
 * never makes us buffer. Resolves only if nothing went wrong AND the archive ended with its
 * end-of-archive marker (node-tar accepts a tar cut off at an entry boundary without a word).
 */
async function runPass(
  tarballPath: string,
  compression: Compression,
  state: PolicyState,
  create: (filter: EntryFilter) => tar.Parser,
  planned?: Map<string, Planned>,
): Promise<void> {
  let failure: Error | undefined;
  let sawEndMarker = false;
  let finished = false;
  let lastEntry: tar.ReadEntry | undefined;
  let wakeUp: (() => void) | undefined;
  let wakeups = 0;
  const wake = (): void => { wakeups += 1; const w = wakeUp; wakeUp = undefined; w?.(); };
  // Waits for node-tar to drain, finish or fail; a stall must fail the ingest, not hang it forever.
  const sleep = (): Promise<void> => new Promise((resolve) => {
    const timer = setTimeout(() => {
      failure ??= new Error(`node-tar made no progress for ${STALL_TIMEOUT_MS / 1000} s`);
      wake();
    }, STALL_TIMEOUT_MS);
    wakeUp = () => { clearTimeout(timer); resolve(); };
  });
  const stop = (problem: Error): void => {
    failure ??= problem;
    parser.abort(problem);
    wake();
  };

  const parser = create((_entryPath, raw) => {
    if (failure) return false;
    const entry = raw as tar.ReadEntry;
    const verdict = checkEntry(entry, state);
    if (!verdict.ok) {
      stop(new ArchiveProblem(verdict.reason, {
        rule: verdict.rule, entryPath: entry.path, ...(verdict.limit ? { limit: verdict.limit } : {}),
      }));
      return false;
    }
    // Set before node-tar creates the file, so no setuid or world-writable file exists even briefly.
    if (verdict.kind !== 'symlink') entry.mode = verdict.mode;
    planned?.set(verdict.path, { kind: verdict.kind, mode: verdict.mode, size: verdict.kind === 'file' ? entry.size : 0 });
    lastEntry = entry;
    return true;
  });
  parser.on('eof', () => { sawEndMarker = true; });
  parser.on('ignoredEntry', (entry: tar.ReadEntry) => {
    // Unknown types (sparse files, volume labels, ...) and oversized metadata records are skipped
    // by node-tar without asking the filter; for a release, a skipped entry is a refusal.
    stop(new ArchiveProblem(
      entry.meta ? `its ${entry.type} metadata record is too large` : `entry type '${String(entry.type)}' is not supported`,
      { rule: entry.meta ? 'corrupt' : 'unsupported_type', entryPath: entry.path },
    ));
  });
  parser.on('error', (error: Error) => { failure ??= error; wake(); });
  parser.on('drain', wake);
  // A Parser is done at 'end'; an Unpack only at 'close', once every file is on disk.
  parser.on(planned ? 'close' : 'end', () => { finished = true; wake(); });

  const file = createReadStream(tarballPath, { highWaterMark: READ_CHUNK });
  const stream: Readable = compression === 'gzip'
    ? pipeline(file, createGunzip({ chunkSize: READ_CHUNK }), () => { /* errors surface through iteration */ })
    : file;
  let streamBytes = 0;
  let head = Buffer.alloc(0);
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (failure) break;
      streamBytes += chunk.length;
      const allowed = state.declaredBytes + state.entries * STREAM_OVERHEAD_PER_ENTRY + STREAM_SLACK;
      if (streamBytes > allowed) {
        failure = new ArchiveProblem(
          `the archive decompresses to more data than its entries account for (over ${allowed} bytes of tar stream ` +
          `for ${state.entries} entries declaring ${state.declaredBytes} bytes); refused as a possible gzip bomb`,
          { rule: 'bomb' },
        );
        break;
      }
      if (head.length < 512) {
        head = Buffer.concat([head, chunk]);
        // node-tar would also gunzip a nested gzip stream itself, uncounted: only tar is accepted here.
        if (head.length >= 512 && head.subarray(257, 262).toString('latin1') !== 'ustar') {
          failure = new ArchiveProblem('not a tar archive (expected a gzip-compressed or plain ustar/pax tar)', { rule: 'corrupt' });
          break;
        }
      }
      // After the end-of-archive marker comes only padding, which node-tar would buffer in memory.
      if (sawEndMarker) continue;
      const before = wakeups;
      // Sleep only if node-tar asked us to wait and has not already said to go on.
      if (!parser.write(chunk) && !failure && wakeups === before) await sleep();
    }
    if (!failure && head.length < 512) failure = new ArchiveProblem('the archive is too short to be a tar archive', { rule: 'corrupt' });
    if (!failure) {
      parser.end();
      while (!finished && !failure) await sleep();
    }
  } catch (error) {
    failure ??= new ArchiveProblem(`the archive is corrupt or truncated (${errorMessage(error)})`, { rule: 'corrupt' });
  }
  if (!failure && !sawEndMarker) {
    failure = new ArchiveProblem('the archive ends without its end-of-archive marker: it is truncated', { rule: 'corrupt' });
  }
  if (failure) {
    stream.destroy();
    // An entry cut off mid-body would keep node-tar's output file open for good; ending it lets
    // node-tar finish and close that file.
    try { if (lastEntry && !lastEntry.emittedEnd) lastEntry.end(); } catch { /* best effort */ }
    throw failure;
  }
}

/**
 * Sets every mode explicitly (node-tar leaves them to the umask) and proves the tree on disk is
 * exactly what the policy allowed: nothing missing, nothing extra, no other file types, and the
 * file sizes the headers declared. Returns the bytes of file content.
 */
async function settleTree(dest: string, planned: Map<string, Planned>): Promise<number> {
  const implied = new Set<string>();
  let expectedBytes = 0;
  for (const [p, entry] of planned) {
    expectedBytes += entry.size;
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) implied.add(parts.slice(0, i).join('/'));
  }
  const found = new Set<string>();
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const names = await readdir(path.join(dest, rel));
    for (const name of names) {
      const child = rel ? `${rel}/${name}` : name;
      const abs = path.join(dest, child);
      const st = await lstat(abs);
      const plan = planned.get(child);
      const kind: EntryKind | undefined = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : undefined;
      if (!kind || (plan ? plan.kind !== kind : !(kind === 'directory' && implied.has(child)))) {
        throw new ArchiveProblem(`extraction produced an unexpected ${kind ?? 'special file'} at ${JSON.stringify(child)}`, { rule: 'mismatch' });
      }
      found.add(child);
      if (kind === 'symlink') continue;
      await chmod(abs, plan?.mode ?? 0o755);
      if (kind === 'directory') await walk(child);
      else bytes += st.size;
    }
  };
  await walk('');
  await chmod(dest, 0o700);
  for (const p of planned.keys()) {
    if (p !== '' && !found.has(p)) throw new ArchiveProblem(`entry ${JSON.stringify(p)} is missing after extraction`, { rule: 'mismatch' });
  }
  if (bytes !== expectedBytes) {
    throw new ArchiveProblem(`extracted files hold ${bytes} bytes but the archive declares ${expectedBytes}`, { rule: 'mismatch' });
  }
  return bytes;
}

/**
 * Removes a failed extraction. Renaming first means an operation node-tar still has in flight
 * (a mkdir under the old path, say) fails instead of recreating part of the tree as we delete it.
 */
async function discard(dest: string): Promise<void> {
  const trash = `${dest}.discard-${randomBytes(6).toString('hex')}`;
  try {
    await rename(dest, trash);
  } catch {
    await rm(dest, { recursive: true, force: true });
    return;
  }
  await rm(trash, { recursive: true, force: true, maxRetries: 3 });
}

function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Entry names come from the archive: quote them (control characters) and cap their length. */
function shown(entryPath: string): string {
  const quoted = JSON.stringify(entryPath);
  return quoted.length <= MAX_SHOWN ? quoted : `${quoted.slice(0, MAX_SHOWN)}…" (${entryPath.length} characters)`;
}

function clip(text: string): string {
  return text.length <= 4 * MAX_SHOWN ? text : `${text.slice(0, 4 * MAX_SHOWN)}…`;
}

function toSlipwayError(error: unknown): SlipwayError {
  if (error instanceof SlipwayError) return error;
  if (isDiskFull(error)) {
    return new SlipwayError('disk_full', `the disk filled up while unpacking the release: ${errorMessage(error)}`, {
      status: 507, cause: error,
      hint: 'free space on the filesystem holding SLIPWAY_HOME (old releases and backups are the usual culprits), then push again',
    });
  }
  if (error instanceof ArchiveProblem) {
    const { entryPath, rule, limit } = error.options;
    const where = entryPath === undefined ? 'release archive refused' : `release archive refused at entry ${shown(entryPath)}`;
    const details = [
      ...(entryPath === undefined ? [] : [`entry: ${shown(entryPath)}`]),
      ...(rule ? [`rule: ${rule}`] : []),
      ...(limit ? [`limit: limits.${limit}`] : []),
    ];
    if (limit) {
      return new SlipwayError('release_limit_exceeded', `${where}: ${error.message}`, { status: 413, hint: RAISE_HINT[limit], details, cause: error });
    }
    return new SlipwayError('bad_tarball', `${where}: ${error.message}`, { status: 400, hint: BAD_TARBALL_HINT, details, cause: error });
  }
  // node-tar's own complaints (strict mode turns every warning into one of these).
  const tarError = error as Error & { tarCode?: string; entry?: { path?: string }; header?: { path?: string } };
  if (typeof tarError?.tarCode !== 'string') {
    return new SlipwayError('extract_failed', `unpacking the release failed: ${errorMessage(error)}`, {
      status: 500, cause: error, hint: 'check the agent log and that SLIPWAY_HOME is writable; existing releases were not touched',
    });
  }
  const entryPath = tarError.entry?.path ?? tarError.header?.path;
  const where = entryPath === undefined ? 'release archive refused' : `release archive refused at entry ${shown(entryPath)}`;
  return new SlipwayError('bad_tarball', `${where}: ${clip(errorMessage(error))}`, {
    status: 400, hint: BAD_TARBALL_HINT, cause: error,
    details: [...(entryPath === undefined ? [] : [`entry: ${shown(entryPath)}`]), `tar: ${tarError.tarCode}`],
  });
}
