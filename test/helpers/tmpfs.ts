import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { runCommand } from '../../lib/exec.js';

export interface SmallDisk { dir: string; unmount(): Promise<void> }

/**
 * A real small disk: a tmpfs of `size` (mount(8) syntax, e.g. "512k") mounted at `<parent>/disk`.
 * Needs root. A test about a full disk must fail where it cannot mount one, not skip.
 */
export async function mountSmallDisk(parent: string, size: string): Promise<SmallDisk> {
  const dir = path.join(parent, 'disk');
  await fs.mkdir(dir);
  const mount = await runCommand(['mount', '-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { timeoutMs: 10_000 });
  expect(mount.exitCode, `mount tmpfs: ${mount.stderr}`).toBe(0);
  return {
    dir,
    async unmount() {
      const unmounted = await runCommand(['umount', dir], { timeoutMs: 10_000 });
      expect(unmounted.exitCode, unmounted.stderr).toBe(0);
    },
  };
}
