import { open } from 'node:fs/promises';
import path from 'node:path';
import type { ContentEntry } from '../../contract/release-content.js';
import { fsyncDir } from '../../lib/durable.js';

/**
 * Pure: what must reach the disk before a release assembled from a delta upload is published:
 * the files with new data (received or copied), and every directory (each holds new entries, the
 * hardlinks included), the root last. A file hardlinked from a kept release is already on disk:
 * only its directory entry is new.
 */
export function syncPlan(contents: readonly ContentEntry[], fresh: readonly string[]): { files: string[]; dirs: string[] } {
  const dirs = contents.filter((e) => e.type === 'directory').map((e) => e.path);
  return { files: [...fresh], dirs: [...dirs.reverse(), ''] };
}

/**
 * fsyncs the plan's files and directories under `root`; false (nothing done) when they are more
 * than `maxSyncs`: then one syncfs of the file system is cheaper, and the caller runs it.
 */
export async function syncAssembled(root: string, contents: readonly ContentEntry[], fresh: readonly string[], maxSyncs: number): Promise<boolean> {
  const plan = syncPlan(contents, fresh);
  if (plan.files.length + plan.dirs.length > maxSyncs) return false;
  await Promise.all(plan.files.map(async (rel) => {
    const handle = await open(path.join(root, rel), 'r');
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }));
  for (const rel of plan.dirs) await fsyncDir(path.join(root, rel));
  return true;
}
