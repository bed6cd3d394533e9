import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../lib/durable.js';
import { isSlot, SLOTS, type Slot } from '../../contract/names.js';

/**
 * The flag nginx reads on every request to pick an app's slot (see nginx/app.conf.njk):
 *
 *   <dir>/on-blue/blue     empty files, one per slot, each in its own directory
 *   <dir>/on-green/green
 *   <dir>/live -> on-green  the symlink the agent swaps
 *
 * `if (-f <dir>/live/blue)` and `if (-f <dir>/live/green)` then see exactly one slot at any
 * instant: replacing a symlink by rename(2) is atomic, so a flip is one syscall and needs no
 * reload, and nginx keeps every client connection. Everything is world-readable because nginx's
 * workers (www-data on Debian) make the checks.
 */
export const LIVE_LINK = 'live';

const targetOf = (slot: Slot) => `on-${slot}`;

async function ensureSlotDirs(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  for (const slot of SLOTS) {
    const slotDir = path.join(dir, targetOf(slot));
    await fs.mkdir(slotDir, { recursive: true, mode: 0o755 });
    const flag = path.join(slotDir, slot);
    const handle = await fs.open(flag, 'a', 0o644);
    await handle.close();
  }
}

/** The slot the flag points at, or null when there is no flag (never set, or removed by hand). */
export async function readLiveSlot(dir: string): Promise<Slot | null> {
  let target: string;
  try {
    target = await fs.readlink(path.join(dir, LIVE_LINK));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return null;
    throw error;
  }
  const slot = target.replace(/^on-/, '');
  return target.startsWith('on-') && isSlot(slot) ? slot : null;
}

/**
 * Points the flag at `slot` atomically (symlink beside it, rename over it). Not yet durable: the
 * caller proves the flip through nginx first and then calls persistLiveSlot, so the fsync is not
 * between the flip and the traffic.
 */
export async function pointLiveAt(dir: string, slot: Slot): Promise<void> {
  await ensureSlotDirs(dir);
  const temp = path.join(dir, `.${LIVE_LINK}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.symlink(targetOf(slot), temp);
  try {
    await fs.rename(temp, path.join(dir, LIVE_LINK));
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}

/** Makes the last flip survive a power loss. */
export async function persistLiveSlot(dir: string): Promise<void> {
  await fsyncDir(dir);
}
