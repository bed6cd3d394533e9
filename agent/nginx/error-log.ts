import { open, stat } from 'node:fs/promises';
import { errorMessage } from '../../contract/errors.js';
import type { ErrorLogExcerpt } from './diagnosis.js';

/** Enough for every line one reload writes, however chatty the log level. */
const MAX_EXCERPT_BYTES = 64 * 1024;

/** The error log's size now: where the lines of the next reload will start. */
export async function errorLogSize(file: string): Promise<number> {
  return stat(file).then((info) => info.size, () => 0);
}

/** The lines nginx wrote to its error log since `offset` (the last 64 KiB of them). */
export async function errorLogSince(file: string, offset: number): Promise<ErrorLogExcerpt> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      // A rotated (shorter) log starts over.
      const start = Math.max(size >= offset ? offset : 0, size - MAX_EXCERPT_BYTES);
      const buffer = Buffer.alloc(size - start);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
      const lines = buffer.subarray(0, bytesRead).toString('utf8').split('\n').map((line) => line.trim()).filter(Boolean);
      return { path: file, lines };
    } finally {
      await handle.close();
    }
  } catch (error) {
    return { path: file, unreadable: errorMessage(error) };
  }
}
