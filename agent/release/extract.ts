import { isDiskFull } from '../../lib/durable.js';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import * as tar from 'tar';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { ContentEntry } from '../../contract/release-content.js';
import { checkEntry, createPolicyState, type PolicyRule, type PolicyState, type TarEntryLimits } from './tar-entry-policy.js';
import { EntryWriteError, TreeMismatch, TreeWriter, type ApprovedEntry } from './tree-writer.js';

export type ExtractLimits = TarEntryLimits;

export interface ExtractResult {
  /** Entries in the archive (files, directories, symlinks). */
  entries: number;
  /** Bytes of file content written. */
  bytes: number;
  /** What was unpacked, with each file's sha256 as written: the input of the release's content digest. */
  contents: ContentEntry[];
}

export interface ExtractOptions {
  /**
   * Files at least this large are flushed to disk as soon as they are complete, while the rest
   * of the archive still arrives (default 1 MiB). Only moves work earlier: making the tree
   * durable is still the caller's job.
   */
  flushFromBytes?: number;
}

/**
 * An extraction that follows an archive file while it is being written (the upload's .part):
 * gzip or plain tar, exactly as uploaded. The writer of the file never waits for it. A problem is
 * kept (and the files unpacked so far are removed at once) until finish() reports it, so the
 * caller decides whose error wins: the upload's own, or the archive's.
 */
export interface Extraction {
  /** The file now holds `bytes` bytes (it only grows, by appending); they are read when the extraction gets to them. */
  grew(bytes: number): void;
  /** The file is complete at `bytes`: resolves once the whole tree is on disk; on failure destDir is gone. */
  finish(bytes: number): Promise<ExtractResult>;
  /**
   * After finish(), and after any last change the caller makes (the root's mode): makes the tree
   * durable by fsyncing what the early flush did not cover and every directory. Resolves false,
   * having done nothing, when more than `maxFiles` files would need their own fsync: then one
   * syncfs of the file system is cheaper, and the caller's to run.
   */
  sync(maxFiles: number): Promise<boolean>;
  /** Stops and removes destDir (for when the upload itself failed). */
  abort(): Promise<void>;
  /**
   * The caller is done with it (after sync(), or instead of it when the release was refused):
   * an extraction run in the unpacking thread (extract-thread.ts) is forgotten there.
   */
  close(): void;
}

/**
 * The tar stream of a legitimate archive is its content plus, per entry, a header, padding and
 * perhaps a pax or long-name record. Anything beyond that is data no entry accounts for (such
 * as gigabytes of zeros after the end marker): the shape of a gzip bomb that passes every
 * per-entry size check.
 */
const STREAM_OVERHEAD_PER_ENTRY = 4096;
/** One read chunk of not-yet-parsed headers, a pending metadata record and the end padding. */
const STREAM_SLACK = 2 * 1024 * 1024;
// The tar stream in 1 MiB pieces: 64 KiB ones made unpacking a 100 MB release about twice as
// slow as 256 KiB ones, and 1 MiB ones were another ~10% faster; still well inside STREAM_SLACK.
const READ_CHUNK = 1024 * 1024;
/**
 * Bytes read from the archive file at once. Each write to gunzip is a round trip to the thread
 * pool: in 1 MiB pieces rather than the socket's 64 KiB ones, inflating 100 MB took a third less.
 */
const FILE_READ = 1024 * 1024;
/** Archive bytes read ahead of gunzip (or the parser) before reading waits. */
const INPUT_BUFFER = 2 * FILE_READ;
/**
 * Chunks of READ_CHUNK gunzip may produce ahead of the parser, so inflating overlaps writing
 * files. Counted in chunks (object mode): a byte-mode stream's iterator would hand over
 * everything buffered as one concatenated copy.
 */
const OUTPUT_CHUNKS = 4;
const DEFAULT_FLUSH_FROM_BYTES = 1024 * 1024;
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
/** Errors creating an entry that its name or size causes, rather than the machine. */
const ENTRY_CAUSED = new Set(['ENAMETOOLONG', 'EMLINK', 'EFBIG', 'EILSEQ', 'EINVAL']);

type LimitName = 'maxEntries' | 'maxUnpackedBytes';

/** Why the archive was refused; becomes a SlipwayError at the boundary of this module. */
class ArchiveProblem extends Error {
  constructor(
    message: string,
    readonly options: { rule?: PolicyRule | 'corrupt' | 'bomb' | 'mismatch'; limit?: LimitName; entryPath?: string } = {},
  ) {
    super(message);
  }
}

/** What abort() leaves as the reason; never reported, the caller has its own. */
class Aborted extends Error {}

/**
 * Unpacks a release archive into `destDir` (which must not exist yet; it is created 0700) in one
 * pass, following `file` as it is written. Each entry is checked by the tar entry policy when
 * node-tar's parser reads its header, before anything of it is written; the first refusal,
 * warning (strict) or limit stops the whole archive. Files are created by TreeWriter with their
 * final modes; the root stays 0700 for the caller to open up once the release is complete.
 * Nothing happens on disk before the first grew() or finish().
 */
export function startExtraction(file: string, destDir: string, limits: ExtractLimits, options: ExtractOptions = {}): Extraction {
  return new FollowingExtraction(path.resolve(file), path.resolve(destDir), limits, options.flushFromBytes ?? DEFAULT_FLUSH_FROM_BYTES);
}

/** Unpacks a complete tarball file (see startExtraction); on failure `destDir` is gone. */
export async function extractTarball(tarballPath: string, destDir: string, limits: ExtractLimits, options: ExtractOptions = {}): Promise<ExtractResult> {
  const { size } = await stat(tarballPath);
  return startExtraction(tarballPath, destDir, limits, options).finish(size);
}

class FollowingExtraction implements Extraction {
  /** Bytes of the file that may be read. */
  private available = 0;
  /** The file's final size, once finish() said so. */
  private final: number | undefined;
  private wakeReader: (() => void) | undefined;
  /** Gunzip or a pass-through, feeding runPass. */
  private input: Duplex | undefined;
  private task: Promise<ExtractResult> | undefined;
  private writer: TreeWriter | undefined;
  private problem: unknown;
  private createdDest = false;

  constructor(
    private readonly file: string,
    private readonly dest: string,
    private readonly limits: ExtractLimits,
    private readonly flushFromBytes: number,
  ) {}

  grew(bytes: number): void {
    if (this.final !== undefined || this.problem !== undefined || bytes <= this.available) return;
    this.available = bytes;
    this.start();
    this.wake();
  }

  async finish(bytes: number): Promise<ExtractResult> {
    if (this.final !== undefined) throw new Error('finish() called twice');
    this.final = bytes;
    this.available = bytes;
    this.start();
    this.wake();
    try {
      return await this.task!;
    } catch (error) {
      throw toSlipwayError(error);
    }
  }

  async sync(maxFiles: number): Promise<boolean> {
    if (!this.writer || this.problem !== undefined) throw new Error('sync() needs a finished extraction');
    return this.writer.sync(maxFiles);
  }

  async abort(): Promise<void> {
    this.stop(new Aborted('extraction aborted'));
    if (this.task) await this.task.catch(() => undefined);
    if (this.createdDest) await discard(this.dest);
  }

  close(): void {
    // Nothing held beyond what the garbage collector frees.
  }

  private start(): void {
    if (this.task) return;
    this.task = this.run();
    // Failures are reported by finish(); until then (the upload may still be running) they must
    // not surface as unhandled rejections.
    this.task.catch(() => undefined);
  }

  private async run(): Promise<ExtractResult> {
    try {
      await mkdir(this.dest, { mode: 0o700 });
    } catch (error) {
      const refusal = new SlipwayError('extract_target_exists', `cannot create the extraction directory ${this.dest}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: 'extraction needs a fresh directory; remove the leftover (the agent does so on start) and retry',
      });
      this.stop(refusal);
      throw refusal;
    }
    this.createdDest = true;
    try {
      // The umask must not decide the root's mode either.
      await chmod(this.dest, 0o700);
      const handle = await open(this.file, 'r');
      try {
        return await this.unpack(handle);
      } finally {
        await handle.close();
      }
    } catch (error) {
      this.stop(error);
      // At once, not when the upload ends: the space is freed and nothing half-made lingers.
      await discard(this.dest);
      throw error;
    }
  }

  /** Reads the file as it grows into gunzip (or straight on) while an ArchivePass unpacks what comes out. */
  private async unpack(handle: FileHandle): Promise<ExtractResult> {
    await this.until(() => this.available >= 2 || this.final !== undefined);
    if (this.problem !== undefined) throw this.problem;
    const first = await this.read(handle, 0);
    const input = inputFor(first);
    this.input = input;
    if (this.problem !== undefined) input.destroy();
    const state = createPolicyState(this.limits);
    const pass = ArchivePass.run(input, state, {
      dest: this.dest, flushFromBytes: this.flushFromBytes, onFailure: (problem) => this.stop(problem),
    });
    pass.catch(() => undefined);
    try {
      await this.pump(handle, input, first);
    } catch (error) {
      // A failed read: the unpacking must be over (every file closed) before the tree is removed.
      this.stop(error);
      await pass.catch(() => undefined);
      throw error;
    }
    this.writer = await pass;
    return { entries: state.entries, bytes: this.writer.bytes, contents: this.writer.contents() };
  }

  /** Copies the file into `input` as it grows, from `first` (already read) on, until it is complete or the extraction failed. */
  private async pump(handle: FileHandle, input: Duplex, first: Buffer): Promise<void> {
    let pending = first;
    let position = first.length;
    while (this.problem === undefined) {
      if (pending.length > 0) {
        if (!input.write(pending) && !input.destroyed) await drained(input);
        pending = Buffer.alloc(0);
      } else if (position < this.available) {
        pending = await this.read(handle, position);
        position += pending.length;
      } else if (this.final !== undefined) {
        input.end();
        return;
      } else {
        await this.until(() => position < this.available || this.final !== undefined);
      }
    }
  }

  private async read(handle: FileHandle, position: number): Promise<Buffer> {
    const length = Math.min(FILE_READ, this.available - position);
    if (length <= 0) return Buffer.alloc(0);
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    // The writer said these bytes were written; a shorter read means the file changed under us.
    if (bytesRead !== length) throw new Error(`the archive file ${this.file} holds fewer bytes than were written to it`);
    return buffer;
  }

  /** Waits until `ready()` holds or the extraction fails. */
  private async until(ready: () => boolean): Promise<void> {
    while (!ready() && this.problem === undefined) {
      await new Promise<void>((resolve) => { this.wakeReader = resolve; });
    }
  }

  private wake(): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  private stop(problem: unknown): void {
    this.problem ??= problem;
    this.input?.destroy();
    this.wake();
  }
}

/**
 * Gunzip for a gzip file (by its magic bytes in `first`), else a pass-through. Gunzipped here
 * rather than by node-tar so that every decompressed byte is counted. Output in object mode: a
 * byte-mode stream's iterator would hand over everything buffered as one copy.
 */
function inputFor(first: Buffer): Duplex {
  const gzip = first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b;
  const input: Duplex = gzip
    // zlib hands stream options on to its Transform; the typings only know the zlib ones.
    ? createGunzip({
      chunkSize: READ_CHUNK, writableHighWaterMark: INPUT_BUFFER, readableObjectMode: true, readableHighWaterMark: OUTPUT_CHUNKS,
    } as ZlibOptions)
    : new PassThrough({ writableHighWaterMark: INPUT_BUFFER, readableObjectMode: true, readableHighWaterMark: OUTPUT_CHUNKS });
  // Until the pass iterates it, an error (a corrupt gzip) must not go unhandled; the pass still sees it.
  input.on('error', () => undefined);
  return input;
}

/** Resolves once `stream` takes writes again, or is destroyed (a failed extraction must not leave the reader waiting). */
function drained(stream: Duplex): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

interface PassOptions {
  dest: string;
  flushFromBytes: number;
  onFailure(problem: Error): void;
}

/**
 * One pass over the tar stream: feeds it into a node-tar Parser that applies the entry policy to
 * every header and hands approved entries to the writer. Respects backpressure, so a slow disk
 * never makes us buffer. Resolves only if nothing went wrong, the archive ended with its
 * end-of-archive marker (node-tar accepts a tar cut off at an entry boundary without a word) and
 * the writer put exactly the approved entries and bytes on disk.
 */
class ArchivePass {
  private failure: Error | undefined;
  private sawEndMarker = false;
  private finished = false;
  private approvedEntries = 0;
  private approvedFileBytes = 0;
  private readonly approved = new WeakMap<object, ApprovedEntry>();
  private wakeUp: (() => void) | undefined;
  private wakeups = 0;
  /** Bytes of tar stream read so far, for the gzip-bomb bound. */
  private streamBytes = 0;
  /** The first bytes, held back until they are known to start a tar archive. */
  private head = Buffer.alloc(0);
  private readonly parser: tar.Parser;

  private constructor(
    private readonly stream: Duplex,
    private readonly state: PolicyState,
    private readonly writer: TreeWriter,
    private readonly options: PassOptions,
  ) {
    this.parser = this.createParser();
  }

  static async run(stream: Duplex, state: PolicyState, options: PassOptions): Promise<TreeWriter> {
    let pass: ArchivePass | undefined;
    // The writer reports its own failures (a full disk, say) through stop(), which fails it in turn.
    const writer = await TreeWriter.create(options.dest, { flushFromBytes: options.flushFromBytes, onError: (error) => pass?.stop(error) });
    pass = new ArchivePass(stream, state, writer, options);
    await pass.feed();
    return pass.conclude();
  }

  private createParser(): tar.Parser {
    const parser = new tar.Parser({
      strict: true,
      brotli: false,
      zstd: false,
      // Our own counting replaces node-tar's ratio check (which a plain tar never gets).
      maxDecompressionRatio: Infinity,
      filter: (_entryPath, raw) => this.approve(raw as tar.ReadEntry),
    });
    parser.on('entry', (entry: tar.ReadEntry) => {
      const verdict = this.approved.get(entry);
      if (!verdict || this.failure) {
        entry.resume();
        return;
      }
      this.writer.add(entry, verdict);
    });
    parser.on('eof', () => { this.sawEndMarker = true; });
    parser.on('ignoredEntry', (entry: tar.ReadEntry) => {
      // Unknown types (sparse files, volume labels, ...) and oversized metadata records are skipped
      // by node-tar without asking the filter; for a release, a skipped entry is a refusal.
      this.stop(new ArchiveProblem(
        entry.meta ? `its ${entry.type} metadata record is too large` : `entry type '${String(entry.type)}' is not supported`,
        { rule: entry.meta ? 'corrupt' : 'unsupported_type', entryPath: entry.path },
      ));
    });
    parser.on('error', (error: Error) => this.stop(error));
    parser.on('drain', () => this.wake());
    parser.on('end', () => { this.finished = true; this.wake(); });
    return parser;
  }

  /** The parser's filter: the entry policy's verdict on one header. */
  private approve(entry: tar.ReadEntry): boolean {
    if (this.failure) return false;
    const verdict = checkEntry(entry, this.state);
    if (!verdict.ok) {
      this.stop(new ArchiveProblem(verdict.reason, {
        rule: verdict.rule, entryPath: entry.path, ...(verdict.limit ? { limit: verdict.limit } : {}),
      }));
      return false;
    }
    this.approved.set(entry, { path: verdict.path, kind: verdict.kind, mode: verdict.mode });
    this.approvedEntries += 1;
    if (verdict.kind === 'file') this.approvedFileBytes += entry.size;
    return true;
  }

  /** Reads the whole tar stream into the parser, then waits for the parser to finish. */
  private async feed(): Promise<void> {
    try {
      read: for await (const chunk of this.stream as AsyncIterable<Buffer>) {
        // A plain tar arrives in the sender's chunks; slices keep the gzip-bomb slack meaningful.
        for (let offset = 0; offset < chunk.length; offset += READ_CHUNK) {
          if (this.failure) break read;
          const data = this.admit(chunk.length <= READ_CHUNK ? chunk : chunk.subarray(offset, offset + READ_CHUNK));
          if (this.failure) break read;
          // After the end-of-archive marker comes only padding, which node-tar would buffer in memory.
          if (data === undefined || this.sawEndMarker) continue;
          await this.write(data);
        }
      }
      if (!this.failure && this.head.length < 512) this.stop(new ArchiveProblem('the archive is too short to be a tar archive', { rule: 'corrupt' }));
      if (this.failure) return;
      this.parser.end();
      while (!this.finished && !this.failure) await this.sleep();
    } catch (error) {
      this.stop(new ArchiveProblem(`the archive is corrupt or truncated (${errorMessage(error)})`, { rule: 'corrupt' }));
    }
  }

  /**
   * Counts a piece of the tar stream against what the entries so far account for (a gzip bomb
   * fails here) and holds back the first 512 bytes until they are known to be a tar header.
   * Returns what to hand to the parser, or undefined for nothing yet (or a refusal, see stop()).
   */
  private admit(piece: Buffer): Buffer | undefined {
    const { state } = this;
    this.streamBytes += piece.length;
    const allowed = state.declaredBytes + state.entries * STREAM_OVERHEAD_PER_ENTRY + STREAM_SLACK;
    if (this.streamBytes > allowed) {
      this.stop(new ArchiveProblem(
        `the archive decompresses to more data than its entries account for (over ${allowed} bytes of tar stream ` +
        `for ${state.entries} entries declaring ${state.declaredBytes} bytes); refused as a possible gzip bomb`,
        { rule: 'bomb' },
      ));
      return undefined;
    }
    if (this.head.length >= 512) return piece;
    // Nothing reaches node-tar before the first header is known to be tar: given a nested gzip
    // stream it would gunzip it itself, uncounted.
    this.head = Buffer.concat([this.head, piece]);
    if (this.head.length < 512) return undefined;
    if (this.head.subarray(257, 262).toString('latin1') !== 'ustar') {
      this.stop(new ArchiveProblem('not a tar archive (expected a gzip-compressed or plain ustar/pax tar)', { rule: 'corrupt' }));
      return undefined;
    }
    return this.head;
  }

  /** Hands data to the parser; waits while node-tar or the writer asks us to. */
  private async write(data: Buffer): Promise<void> {
    const before = this.wakeups;
    // Sleep only if node-tar asked us to wait and has not already said to go on.
    if (!this.parser.write(data) && !this.failure && this.wakeups === before) await this.sleep();
    // A disk that hangs fails the ingest here too (room() is bounded like settle()).
    if (this.writer.crowded && !this.failure) await this.writer.room(STALL_TIMEOUT_MS).catch((error: unknown) => this.stop(error));
  }

  /** After the stream: judges what the writer made, gives directories their modes, and resolves to the writer or throws the first problem. */
  private async conclude(): Promise<TreeWriter> {
    // Every file closed (and, after a failure, every body abandoned) before anything is judged or removed.
    await this.writer.settle(STALL_TIMEOUT_MS).catch((error: unknown) => this.stop(error));
    if (!this.failure && !this.sawEndMarker) {
      this.stop(new ArchiveProblem('the archive ends without its end-of-archive marker: it is truncated', { rule: 'corrupt' }));
    }
    const { writer } = this;
    if (!this.failure && (writer.entries !== this.approvedEntries || writer.bytes !== this.approvedFileBytes)) {
      this.stop(new ArchiveProblem(
        `extraction wrote ${writer.entries} entries and ${writer.bytes} bytes, but the archive declares ${this.approvedEntries} and ${this.approvedFileBytes}`,
        { rule: 'mismatch' },
      ));
    }
    if (!this.failure) await writer.finishDirectories().catch((error: unknown) => this.stop(error));
    if (this.failure) {
      await writer.settle(STALL_TIMEOUT_MS).catch(() => undefined);
      throw this.failure;
    }
    return writer;
  }

  private stop(problem: unknown): void {
    if (this.failure) return;
    const failure = problem instanceof Error ? problem : new Error(String(problem));
    this.failure = failure;
    this.options.onFailure(failure);
    // A stand-in: node-tar writes its own code onto the error it is given.
    this.parser.abort(new Error(failure.message));
    // Ends the read even while it waits for bytes that will now never be sent.
    this.stream.destroy();
    this.writer.fail(failure);
    this.wake();
  }

  private wake(): void {
    this.wakeups += 1;
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Waits for node-tar to drain, finish or fail; a stall must fail the ingest, not hang it forever. */
  private sleep(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.stop(new Error(`node-tar made no progress for ${STALL_TIMEOUT_MS / 1000} s`));
      }, STALL_TIMEOUT_MS);
      this.wakeUp = () => { clearTimeout(timer); resolve(); };
    });
  }
}

/**
 * Removes a failed extraction. Renaming first means an operation still in flight (a mkdir under
 * the old path, say) fails instead of recreating part of the tree as we delete it.
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
  if (error instanceof EntryWriteError) return entryWriteFailure(error);
  if (error instanceof TreeMismatch) return archiveRefusal(new ArchiveProblem(error.message, { rule: 'mismatch' }));
  if (error instanceof ArchiveProblem) return archiveRefusal(error);
  // node-tar's own complaints (strict mode turns every warning into one of these).
  const tarError = error as Error & { tarCode?: string; entry?: { path?: string }; header?: { path?: string } };
  if (typeof tarError?.tarCode === 'string') return tarRefusal(tarError, tarError.tarCode);
  return new SlipwayError('extract_failed', `unpacking the release failed: ${errorMessage(error)}`, {
    status: 500, cause: error, hint: 'check the agent log and that SLIPWAY_HOME is writable; existing releases were not touched',
  });
}

/** A file system error at one entry: the archive's fault when its name or size caused it, else the machine's. */
function entryWriteFailure(error: EntryWriteError): SlipwayError {
  const details = [`entry: ${shown(error.entryPath)}`, ...(error.code ? [`error: ${error.code}`] : [])];
  if (error.code !== undefined && ENTRY_CAUSED.has(error.code)) {
    return new SlipwayError('bad_tarball', `release archive refused at entry ${shown(error.entryPath)}: ${clip(error.message)}`, {
      status: 400, hint: BAD_TARBALL_HINT, details, cause: error,
    });
  }
  return new SlipwayError('extract_failed', `unpacking the release failed at entry ${shown(error.entryPath)}: ${clip(error.message)}`, {
    status: 500, details, cause: error, hint: 'check the agent log and that SLIPWAY_HOME is writable; existing releases were not touched',
  });
}

function archiveRefusal(problem: ArchiveProblem): SlipwayError {
  const { entryPath, rule, limit } = problem.options;
  const where = entryPath === undefined ? 'release archive refused' : `release archive refused at entry ${shown(entryPath)}`;
  const details = [
    ...(entryPath === undefined ? [] : [`entry: ${shown(entryPath)}`]),
    ...(rule ? [`rule: ${rule}`] : []),
    ...(limit ? [`limit: limits.${limit}`] : []),
  ];
  if (limit) {
    return new SlipwayError('release_limit_exceeded', `${where}: ${problem.message}`, { status: 413, hint: RAISE_HINT[limit], details, cause: problem });
  }
  return new SlipwayError('bad_tarball', `${where}: ${problem.message}`, { status: 400, hint: BAD_TARBALL_HINT, details, cause: problem });
}

function tarRefusal(error: Error & { entry?: { path?: string }; header?: { path?: string } }, tarCode: string): SlipwayError {
  const entryPath = error.entry?.path ?? error.header?.path;
  const where = entryPath === undefined ? 'release archive refused' : `release archive refused at entry ${shown(entryPath)}`;
  return new SlipwayError('bad_tarball', `${where}: ${clip(errorMessage(error))}`, {
    status: 400, hint: BAD_TARBALL_HINT, cause: error,
    details: [...(entryPath === undefined ? [] : [`entry: ${shown(entryPath)}`]), `tar: ${tarCode}`],
  });
}
