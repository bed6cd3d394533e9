import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

// The one home of durable file handling: atomic replacement, fsync of files and directories,
// reading a file that may not exist, and recognising a full disk.

/** fsync a directory, so a rename or unlink inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** A `mode` given is set on the file itself, whatever the umask or an existing file's: 0o600 for secrets. */
export async function writeDurable(file: string, data: string | Buffer, mode?: number): Promise<void> {
  const handle = await open(file, 'w', mode ?? 0o644);
  try {
    if (mode !== undefined) await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Temp file in the same directory, fsync, rename, fsync the directory. */
export async function writeAtomic(file: string, data: string | Buffer, mode?: number): Promise<void> {
  // The temp name must not end in ".conf", or nginx's include glob could pick it up.
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeDurable(temp, data, mode);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/** ENOSPC or EDQUOT: the write failed because the filesystem (or the user's quota) is full. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
