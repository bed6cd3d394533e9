import { isDiskFull } from '../../lib/durable.js';
import { createHash } from 'node:crypto';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { SHA256_PATTERN } from '../../contract/names.js';

export interface UploadOptions {
  /** `SLIPWAY_HOME/incoming`; created 0700 if missing. */
  incomingDir: string;
  /** The sha256 the sender declared; the upload is kept only if the bytes hash to it. */
  expectedSha256: string;
  /** `limits.maxReleaseBytes`: the upload is cut off as soon as it goes past this. */
  maxBytes: number;
  /** The length the sender declared (Content-Length); fewer or more bytes fail the upload. */
  expectedBytes?: number;
  /** A source that sends nothing for this long is treated as a dropped connection. */
  idleTimeoutMs?: number;
  /**
   * fsync the file before returning (default true). A caller that only reads it back and deletes
   * it may skip this: flushing 100 MB that is never needed after a crash cost 100-200 ms.
   */
  durable?: boolean;
  /**
   * Called whenever more of the upload is in the .part file, with the bytes it now holds (the
   * release store unpacks the archive from there as it arrives). Must not throw.
   */
  onWritten?: (bytes: number) => void;
}

export interface ReceivedUpload {
  /** `incoming/<sha256>.part`, complete and verified; the caller removes it when done. */
  path: string;
  bytes: number;
  sha256: string;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Received bytes not yet handed to the disk before reading waits for the .part writes. */
const MAX_UNWRITTEN = 4 * 1024 * 1024;
const AGENT_CONFIG = '/etc/slipway/agent.json';

export function partPath(incomingDir: string, sha256: string): string {
  return path.join(incomingDir, `${sha256}.part`);
}

/**
 * Streams an upload into `incoming/<sha256>.part` (created exclusively, 0600) while hashing it,
 * and returns only once the file is complete, fsynced and hashes to the declared sha256.
 * On every failure the .part file is removed. A second upload of the same sha256 while one is
 * running is refused (409), so two senders can never interleave their bytes in one file.
 *
 * When the upload is refused for its size, reading stops but `source` is not destroyed: the
 * caller (an HTTP handler, say) still owns it and may want to answer on the same connection.
 */
export async function receiveUpload(source: Readable, options: UploadOptions): Promise<ReceivedUpload> {
  const { incomingDir, expectedSha256, maxBytes, expectedBytes } = options;
  // An error before reading starts (the client hung up) is reported by the read below; it must
  // not also escape as an unhandled 'error' event.
  source.on('error', ignoreError);
  checkDeclared(options);
  await mkdir(incomingDir, { recursive: true, mode: 0o700 });
  const target = partPath(incomingDir, expectedSha256);
  const handle = await openPart(target, incomingDir, expectedSha256);

  const hash = createHash('sha256');
  let bytes = 0;
  let closed = false;
  try {
    await readInto(source, handle, {
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      onChunk(chunk) {
        bytes += chunk.length;
        if (bytes > maxBytes) throw tooLarge(maxBytes, bytes, expectedSha256);
        if (expectedBytes !== undefined && bytes > expectedBytes) {
          throw new SlipwayError('upload_size_mismatch', `upload of ${expectedSha256.slice(0, 12)} sent more than the ${expectedBytes} bytes it declared`, {
            status: 400, hint: 'the sender declared a wrong length; push again',
          });
        }
        hash.update(chunk);
      },
      ...(options.onWritten ? { onWritten: options.onWritten } : {}),
      sha: expectedSha256,
    });
    const actual = verifyReceived({ bytes, expectedBytes, sha256: hash.digest('hex'), expectedSha256 });
    if (options.durable ?? true) await handle.sync();
    closed = true;
    await handle.close();
    return { path: target, bytes, sha256: actual };
  } catch (error) {
    if (!closed) await handle.close().catch(() => undefined);
    await rm(target, { force: true });
    throw error instanceof SlipwayError ? error : asDiskError(error, incomingDir, expectedSha256);
  }
}

/** Refuses what the sender declared before a byte is read: a malformed sha256 or length, or a length over the limit. */
function checkDeclared({ expectedSha256, expectedBytes, maxBytes }: UploadOptions): void {
  if (!new RegExp(SHA256_PATTERN).test(expectedSha256)) {
    throw new SlipwayError('invalid_sha256', `declared sha256 ${JSON.stringify(expectedSha256)} is not 64 lowercase hex digits`, {
      status: 400, hint: 'send the sha256 of the tarball as 64 lowercase hex digits',
    });
  }
  if (expectedBytes !== undefined && (!Number.isSafeInteger(expectedBytes) || expectedBytes < 0)) {
    throw new SlipwayError('invalid_length', `declared upload length ${String(expectedBytes)} is not a byte count`, {
      status: 400, hint: 'send the tarball with a correct Content-Length',
    });
  }
  if (expectedBytes !== undefined && expectedBytes > maxBytes) throw tooLarge(maxBytes, expectedBytes, expectedSha256);
}

/** Creates the .part file exclusively: a second upload of the same bytes while one runs is refused. */
async function openPart(target: string, incomingDir: string, sha: string): Promise<FileHandle> {
  try {
    return await open(target, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SlipwayError('upload_in_progress', `an upload of ${sha.slice(0, 12)} is already in progress`, {
        status: 409, cause: error,
        hint: 'wait for the other push to finish and try again; if none is running, restarting the agent clears stale partial uploads',
      });
    }
    throw asDiskError(error, incomingDir, sha);
  }
}

/** The complete upload against what was declared: its length, then its sha256 (returned). */
function verifyReceived(received: { bytes: number; expectedBytes: number | undefined; sha256: string; expectedSha256: string }): string {
  const { bytes, expectedBytes, sha256, expectedSha256 } = received;
  if (expectedBytes !== undefined && bytes < expectedBytes) {
    throw new SlipwayError('upload_incomplete', `upload of ${expectedSha256.slice(0, 12)} ended after ${bytes} of ${expectedBytes} bytes`, {
      status: 400, hint: 'the connection was probably cut; push again',
    });
  }
  if (sha256 !== expectedSha256) {
    throw new SlipwayError('checksum_mismatch', `upload does not match its declared sha256 (expected ${expectedSha256}, got ${sha256})`, {
      status: 400, details: [`expected: ${expectedSha256}`, `actual: ${sha256}`, `bytes: ${bytes}`],
      hint: 'the tarball changed or was damaged in transit; push again',
    });
  }
  return sha256;
}

/** Copies `source` into `handle`, calling `onChunk` (which may throw) before each write. */
async function readInto(
  source: Readable,
  handle: FileHandle,
  options: { idleTimeoutMs: number; onChunk(chunk: Buffer): void; onWritten?: (bytes: number) => void; sha: string },
): Promise<void> {
  let idle = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      idle = true;
      // Nothing arrives on a dead link, not even an error: destroying it ends the read below.
      source.destroy(new Error(`no data for ${options.idleTimeoutMs} ms`));
    }, options.idleTimeoutMs);
  };
  // Refusing an upload must not destroy the source: the caller may still answer on that connection.
  const chunks = source.iterator({ destroyOnReturn: false }) as AsyncIterableIterator<Buffer | string>;
  const file = new WriteBehind(handle, options.onWritten);
  try {
    arm();
    for (;;) {
      let next: IteratorResult<Buffer | string>;
      try {
        next = await chunks.next();
      } catch (error) {
        throw new SlipwayError('upload_incomplete', `upload of ${options.sha.slice(0, 12)} was cut off: ${idle ? `no data for ${options.idleTimeoutMs} ms` : errorMessage(error)}`, {
          status: 400, cause: error, hint: 'the connection dropped or stalled; push again',
        });
      }
      if (next.done) break;
      clearTimeout(timer);
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      options.onChunk(chunk);
      await file.push(chunk);
      arm();
    }
    await file.drain();
  } finally {
    clearTimeout(timer);
    await file.settled();
    await chunks.return?.();
  }
}

/**
 * Appends to a file without making the reader wait for every write: chunks that arrive while a
 * write is under way go out together in the next writev (64 KiB writes one by one cost twice
 * the CPU of a 100 MB upload's batched ones). The first write error is thrown by the next call.
 */
class WriteBehind {
  private queue: Buffer[] = [];
  private queued = 0;
  private running: Promise<void> | undefined;
  private failed = false;
  private failure: unknown;
  private written = 0;

  constructor(private readonly handle: FileHandle, private readonly onWritten?: (bytes: number) => void) {}

  async push(chunk: Buffer): Promise<void> {
    this.check();
    if (chunk.length === 0) return;
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.running ??= this.pump();
    // The disk is behind: wait, so a slow disk slows the sender instead of filling memory.
    if (this.queued > MAX_UNWRITTEN) await this.running;
    this.check();
  }

  /** Waits until every chunk is written; throws the first write error. */
  async drain(): Promise<void> {
    await this.settled();
    this.check();
  }

  /** Waits until no write is under way (so the file can be closed), without throwing. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private check(): void {
    if (this.failed) throw this.failure;
  }

  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failed) {
        const batch = this.queue;
        this.queue = [];
        this.queued = 0;
        this.written += await writeAll(this.handle, batch);
        this.onWritten?.(this.written);
      }
    } catch (error) {
      this.failed = true;
      this.failure = error;
      this.queue = [];
    } finally {
      this.running = undefined;
    }
  }
}

/** Writes every byte of `buffers`; returns how many that was. */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<number> {
  let total = 0;
  let rest = buffers;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest);
    if (bytesWritten === 0) throw new Error('the file system accepted no bytes');
    total += bytesWritten;
    // A short write (rare: a signal, or the disk filling up) continues where it stopped.
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const buffer of rest) {
      if (skip >= buffer.length) {
        skip -= buffer.length;
        continue;
      }
      next.push(skip > 0 ? buffer.subarray(skip) : buffer);
      skip = 0;
    }
    rest = next;
  }
  return total;
}

function ignoreError(): void { /* surfaced by the read loop instead */ }

function tooLarge(maxBytes: number, bytes: number, sha: string): SlipwayError {
  return new SlipwayError('release_too_large', `upload of ${sha.slice(0, 12)} is larger than limits.maxReleaseBytes (${maxBytes} bytes; got at least ${bytes})`, {
    status: 413,
    details: [`limit: limits.maxReleaseBytes = ${maxBytes}`],
    hint: `leave build caches and dev dependencies out of the tarball, or raise limits.maxReleaseBytes in the agent config (${AGENT_CONFIG})`,
  });
}

function asDiskError(error: unknown, dir: string, sha: string): SlipwayError {
  if (isDiskFull(error)) {
    return new SlipwayError('disk_full', `the disk filled up while receiving upload ${sha.slice(0, 12)} into ${dir}`, {
      status: 507, cause: error,
      hint: `free space on the filesystem holding ${dir} (old releases and backups are the usual culprits), then push again; existing releases were not touched`,
    });
  }
  return new SlipwayError('upload_failed', `could not store upload ${sha.slice(0, 12)} in ${dir}: ${errorMessage(error)}`, {
    status: 500, cause: error, hint: `check that ${dir} exists and is writable by the agent`,
  });
}
