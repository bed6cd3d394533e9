import { fsyncDir } from '../shared/durable.js';
import { createHash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runGroup, type GroupRunOptions, type GroupRunResult } from './process.js';

// A dump is streamed into a temp file beside its final place, hashed as it is written, fsynced,
// and only then renamed into place (and the directory fsynced), so a backup file either exists
// whole under its final name or not at all.

export interface DumpResult extends GroupRunResult {
  bytes: number;
  sha256: string;
}

/** Writes every chunk to `handle` at the next offset while hashing it. */
class HashingFileSink extends Writable {
  readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly handle: FileHandle) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _writev(chunks: { chunk: Buffer }[], done: (error?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    for (const b of buffers) this.hash.update(b);
    this.writeAll(buffers).then(() => done(), done);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this._writev([{ chunk }], done);
  }

  private async writeAll(buffers: Buffer[]): Promise<void> {
    let pending = buffers;
    while (pending.length) {
      const { bytesWritten } = await this.handle.writev(pending, this.bytes);
      this.bytes += bytesWritten;
      // A short write (rare on regular files) leaves the rest for the next round.
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const b of pending) {
        if (skip >= b.length) { skip -= b.length; continue; }
        rest.push(skip ? b.subarray(skip) : b);
        skip = 0;
      }
      pending = rest;
    }
  }
}

/**
 * Runs `argv` with its stdout streamed into a new file at `tempPath` (mode 0600, must not exist),
 * hashing as it goes; fsyncs and closes the file whatever happened. The caller judges the result
 * and then publishes or removes the file.
 */
export async function dumpToFile(argv: readonly string[], tempPath: string, options: Omit<GroupRunOptions, 'consumeStdout'>): Promise<DumpResult> {
  const handle = await open(tempPath, 'wx', 0o600);
  const sink = new HashingFileSink(handle);
  let result: GroupRunResult;
  try {
    result = await runGroup(argv, { ...options, consumeStdout: (stdout) => pipeline(stdout, sink) });
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { ...result, bytes: sink.bytes, sha256: sink.hash.digest('hex') };
}

/** Renames the finished temp file to its final name and makes the rename durable. */
export async function publishFile(tempPath: string, finalPath: string): Promise<void> {
  await rename(tempPath, finalPath);
  await fsyncDir(path.dirname(finalPath));
}

export { fsyncDir };

export async function removeFile(file: string): Promise<void> {
  await rm(file, { force: true });
}
