import { statfs } from 'node:fs/promises';
import { SlipwayError } from '../../contract/errors.js';

/** Room an upload needs on disk: the tarball, its unpacked tree (about 3× for most apps), and a margin. */
export const DISK_MARGIN_FACTOR = 4;
export const DISK_RESERVE_BYTES = 64 * 1024 * 1024;

export interface UploadRoom { freeBytes: number; neededBytes: number; fits: boolean }

/** Whether an upload of `declaredBytes` fits in `freeBytes`. Pure. */
export function roomForUpload(freeBytes: number, declaredBytes: number): UploadRoom {
  const neededBytes = declaredBytes * DISK_MARGIN_FACTOR + DISK_RESERVE_BYTES;
  return { freeBytes, neededBytes, fits: freeBytes >= neededBytes };
}

const mb = (bytes: number) => Math.round(bytes / 1e6);

/**
 * Refuses an upload that cannot fit on the filesystem holding `dir`, before a byte of it is
 * stored: a release that fills the disk halfway through takes the state database and logs down
 * with it.
 */
export async function requireRoomForUpload(dir: string, declaredBytes: number, label: string): Promise<void> {
  const fs = await statfs(dir);
  const room = roomForUpload(fs.bavail * fs.bsize, declaredBytes);
  if (room.fits) return;
  throw new SlipwayError('disk_space_low', `not enough free disk for ${label}: ${mb(room.freeBytes)} MB free under ${dir}, ${mb(room.neededBytes)} MB needed (${DISK_MARGIN_FACTOR}× the ${mb(declaredBytes)} MB tarball + reserve)`, {
    status: 507, hint: 'free space (old releases: deploy releases cleanup) or enlarge the disk',
  });
}
