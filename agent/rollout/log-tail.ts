import { open } from 'node:fs/promises';

/** How much of the end of a log file is read to find its last lines. */
const TAIL_BYTES = 16 * 1024;
/** A line longer than this is cut: one minified stack trace should not fill the error. */
const MAX_LINE = 300;

/**
 * The last `lines` lines of a file (a process's PM2 log), read from its last 16 KiB only.
 * A missing file has no lines.
 */
export async function tailFile(file: string, lines: number): Promise<string[]> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const text = buffer.toString('utf8');
    const all = text.split('\n');
    // The first line may start mid-line when the read began inside it.
    if (length < size) all.shift();
    return all.map((l) => l.replace(/\r$/, '')).filter((l) => l.length > 0).slice(-lines)
      .map((l) => (l.length > MAX_LINE ? `${l.slice(0, MAX_LINE)}…` : l));
  } finally {
    await handle.close();
  }
}
