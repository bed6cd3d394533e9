import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Replaces `file` whole (temp file beside it, then rename) without fsync: for caches, whose loss
 * or truncation after a power cut costs only work (their readers discard what does not parse),
 * and which must not wait on the disk on every push.
 */
export async function replaceFile(file: string, data: string | Buffer): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temp, data, { mode: 0o600 });
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
