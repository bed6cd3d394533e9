import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../lib/durable.js';
import { isSlot, NO_RELEASE, RELEASE_ID_PATTERN, type Slot } from '../../contract/names.js';

/**
 * The flag nginx reads on every request to pick an app's slot and name its release (see
 * nginx/app.conf.njk):
 *
 *   <dir>/on-blue@<releaseA>/blue     a directory per (slot, release), holding an empty file
 *   <dir>/on-green@<releaseB>/green   named after the slot
 *   <dir>/live -> on-green@<releaseB>  the symlink the agent swaps
 *
 * nginx resolves `<dir>/live` once per request ($realpath_root) and reads the slot and the
 * release from the target's name, so both come from one lookup and always agree. The release is
 * therefore not in the include: a push that changes only releases needs no re-render and no
 * reload. The file inside keeps includes of older templates (`if (-f <dir>/live/blue)`) working.
 * Replacing a symlink by rename(2) is atomic, so a flip is one syscall, needs no reload, and
 * nginx keeps every client connection. Everything is world-readable because nginx's workers
 * (www-data on Debian) read it.
 */
export const LIVE_LINK = 'live';

/** Where the flag points: the slot and the release nginx names for it (null from an older agent's flag). */
export interface LiveFlag {
  slot: Slot;
  releaseId: string | null;
  /** The link's target as written (`on-<slot>@<release>`, or `on-<slot>` from an older agent). */
  target: string;
}

const RELEASE_ID = new RegExp(RELEASE_ID_PATTERN);
const TARGET = /^on-(blue|green)(?:@([0-9a-z-]+))?$/;

/** The directory name of a (slot, release) flag; a slot without a release is named NO_RELEASE. */
export function flagTarget(slot: Slot, releaseId: string | null): string {
  const release = releaseId ?? NO_RELEASE;
  if (release !== NO_RELEASE && !RELEASE_ID.test(release)) throw new Error(`not a release id: ${JSON.stringify(release)}`);
  return `on-${slot}@${release}`;
}

/** Pure: the flag a link target names, or null when it is not one of ours. */
export function parseFlagTarget(target: string): LiveFlag | null {
  const match = TARGET.exec(target);
  if (!match || !isSlot(match[1])) return null;
  const release = match[2];
  if (release === undefined) return { slot: match[1], releaseId: null, target };
  if (release !== NO_RELEASE && !RELEASE_ID.test(release)) return null;
  return { slot: match[1], releaseId: release, target };
}

async function ensureFlagDir(dir: string, target: string, slot: Slot): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const flagDir = path.join(dir, target);
  await fs.mkdir(flagDir, { recursive: true, mode: 0o755 });
  const flag = path.join(flagDir, slot);
  const handle = await fs.open(flag, 'a', 0o644);
  await handle.close();
}

/** Where the flag points, or null when there is no flag (never set, or removed by hand). */
export async function readLiveFlag(dir: string): Promise<LiveFlag | null> {
  let target: string;
  try {
    target = await fs.readlink(path.join(dir, LIVE_LINK));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return null;
    throw error;
  }
  return parseFlagTarget(target);
}

/** The slot the flag points at, or null when there is no flag. */
export async function readLiveSlot(dir: string): Promise<Slot | null> {
  return (await readLiveFlag(dir))?.slot ?? null;
}

/**
 * Points the flag at `slot` running `releaseId` atomically (symlink beside it, rename over it).
 * Not yet durable: the caller proves the flip through nginx first and then calls persistLiveSlot,
 * so the fsync is not between the flip and the traffic.
 */
export async function pointLiveAt(dir: string, slot: Slot, releaseId: string | null): Promise<void> {
  const target = flagTarget(slot, releaseId);
  await ensureFlagDir(dir, target, slot);
  await swapLink(dir, target);
}

/** Points the flag back where it was (a flip nginx did not show): the target as written before. */
export async function restoreLiveFlag(dir: string, flag: LiveFlag): Promise<void> {
  await ensureFlagDir(dir, flag.target, flag.slot);
  await swapLink(dir, flag.target);
}

async function swapLink(dir: string, target: string): Promise<void> {
  const temp = path.join(dir, `.${LIVE_LINK}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.symlink(target, temp);
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

/**
 * Removes flag directories other than the live one and `keep` (the one live just before, which a
 * request that resolved the link an instant before the flip may still be reading). Best effort:
 * a leftover directory costs nothing but an inode.
 */
export async function pruneFlagDirs(dir: string, keep: LiveFlag | null): Promise<void> {
  const live = await readLiveFlag(dir);
  if (live === null) return;
  const kept = new Set([live.target, ...(keep ? [keep.target] : [])]);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (kept.has(name) || parseFlagTarget(name) === null) continue;
    await fs.rm(path.join(dir, name), { recursive: true, force: true }).catch(() => undefined);
  }
}
