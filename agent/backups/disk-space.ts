import { stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { formatBytes } from '../../lib/format-bytes.js';

// Free space on the filesystem that holds the backups. A dump program that meets a full disk may
// say so only on stderr (and exit 1), or lose the error and exit 0 with its output cut short: in
// both cases the filesystem itself is the witness. So the space is measured before a dump starts
// and right after it ends (its file still there), and a run that finds less than a margin free
// is failed, saying how much was free and where. The judgements here are pure.

export interface DiskSpace {
  /** The directory measured (a job's backup directory). */
  path: string;
  /** Where its filesystem is mounted, so the message names the disk to free. */
  mountPoint: string;
  /** Bytes an unprivileged writer can still use (statfs bavail). */
  freeBytes: number;
  totalBytes: number;
}

/** Default margin: 1% of the filesystem, at most 64 MiB (the space the agent keeps free for uploads). */
export const DEFAULT_MARGIN_FRACTION = 0.01;
export const DEFAULT_MARGIN_CAP_BYTES = 64 * 1024 * 1024;

/** The filesystem of `dir` as seen now. */
export async function diskSpaceOf(dir: string): Promise<DiskSpace> {
  const fs = await statfs(dir);
  return { path: dir, mountPoint: await mountPointOf(dir), freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize };
}

/** The topmost ancestor of `dir` on the same device: the mount point of its filesystem. */
async function mountPointOf(dir: string): Promise<string> {
  let current = path.resolve(dir);
  const device = (await stat(current)).dev;
  for (;;) {
    const parent = path.dirname(current);
    if (parent === current || (await stat(parent)).dev !== device) return current;
    current = parent;
  }
}

/** Pure: the margin of free space a run needs: the configured one, or the default for this filesystem's size. */
export function freeSpaceMargin(totalBytes: number, configured: number | undefined): number {
  return configured ?? Math.min(DEFAULT_MARGIN_CAP_BYTES, Math.ceil(totalBytes * DEFAULT_MARGIN_FRACTION));
}

/**
 * Pure: why the space seen `moment` is too little for a backup, or null when it is enough.
 * Below the margin counts as full: a dump cut short there cannot be told from a whole one.
 */
export function lowSpaceReason(space: DiskSpace, margin: number, moment: 'before the dump' | 'after the dump'): string | null {
  if (space.freeBytes >= margin) return null;
  return `the disk holding the backups is full: ${formatBytes(space.freeBytes)} free of ${formatBytes(space.totalBytes)} `
    + `on the filesystem holding ${space.path} (mounted at ${space.mountPoint}) ${moment}, `
    + `below the margin of ${formatBytes(margin)} (minFreeBytes)`;
}
