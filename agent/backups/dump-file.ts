import { fsyncDir } from '../../lib/durable.js';
import { createHash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { runGroup, type GroupRunOptions, type GroupRunResult } from './process.js';

// A dump program writes its output straight into a temp file beside the final place (its stdout
// is the file, as with `dump > file` in a shell: no byte passes through the agent). Once it is
// done, the file is hashed and fsynced, and only then renamed into place (and the directory
// fsynced), so a backup file either exists whole under its final name or not at all.
//
// The hash is taken after the program exits, never while the file grows: a program whose stdout
// is a seekable file may go back and rewrite what it wrote (pg_dump -Fc rewrites its table of
// contents at the start of the archive with the data offsets), so only the finished file is the
// backup.

export interface DumpResult extends GroupRunResult {
  /** Size of the file the program left. */
  bytes: number;
  /** sha256 of the file; null when the program failed (its output is discarded unread). */
  sha256: string | null;
}

const CHUNK = 1024 * 1024;

/** Reads the whole file through `handle` and hashes it; the next chunk is read while one is hashed. */
async function hashFile(handle: FileHandle): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const buffers = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)] as const;
  let bytes = 0;
  let turn = 0;
  let reading = handle.read(buffers[0], 0, CHUNK, 0);
  for (;;) {
    const { bytesRead, buffer } = await reading;
    if (bytesRead === 0) break;
    const chunk = buffer.subarray(0, bytesRead);
    bytes += bytesRead;
    turn ^= 1;
    reading = handle.read(buffers[turn as 0 | 1], 0, CHUNK, bytes);
    hash.update(chunk);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Runs `argv` with its stdout a new file at `tempPath` (mode 0600, must not exist). When the
 * program succeeded, hashes the file and fsyncs it (the two overlap: the hash reads the page
 * cache while the kernel writes it out); closes it whatever happened. The caller judges the
 * result and then publishes or removes the file.
 */
export async function dumpToFile(argv: readonly string[], tempPath: string, options: Omit<GroupRunOptions, 'consumeStdout' | 'stdoutFd'>): Promise<DumpResult> {
  // Read-write: the program writes through its copy of the descriptor, the agent reads back through this one.
  const handle = await open(tempPath, 'wx+', 0o600);
  try {
    const result = await runGroup(argv, { ...options, stdoutFd: handle.fd });
    const succeeded = result.error === null && !result.timedOut && result.signal === null && result.exitCode === 0;
    if (!succeeded) return { ...result, bytes: (await handle.stat()).size, sha256: null };
    const [hashed, synced] = await Promise.allSettled([hashFile(handle), handle.sync()]);
    if (hashed.status === 'rejected') throw hashed.reason;
    if (synced.status === 'rejected') throw synced.reason;
    return { ...result, ...hashed.value };
  } finally {
    await handle.close();
  }
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
