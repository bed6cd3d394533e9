/**
 * Uploads kept for a relay session: `SLIPWAY_HOME/relay/<sha256>` (dir 0700, files 0600), the
 * verified bytes exactly as they were sent (a full upload's tarball or a delta upload's bundle).
 * A file is made by hard-linking the verified .part before the store moves or removes it (a copy
 * when the link cannot be made), under a temp name renamed into place, so a kept file is always
 * complete. A session removes its file when it ends; files left (no session opened, a crash)
 * are swept once older than KEEP_MAX_AGE_MS: at agent start, whenever a session ends, and just
 * past that age after each keep (RelaySessions.sweepAfterKeepAge).
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { SHA256_PATTERN } from '../../contract/names.js';
import { keptToSweep } from './relay-policy.js';

const SHA256 = new RegExp(SHA256_PATTERN);
const TMP_PREFIX = '.tmp-';

export class RelayKeep {
  readonly dir: string;

  constructor(home: string) {
    this.dir = path.join(home, 'relay');
  }

  path(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.dir, sha256);
  }

  /** Keeps the verified upload at `partFile` as relay/<sha256>, replacing one kept before. */
  async keep(partFile: string, sha256: string): Promise<void> {
    const target = this.path(sha256);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const temp = path.join(this.dir, `${TMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await link(partFile, temp).catch(async (error: NodeJS.ErrnoException) => {
        // Another file system (relay/ mounted apart) or one without hard links: a copy.
        if (error.code !== 'EXDEV' && error.code !== 'EPERM' && error.code !== 'ENOTSUP') throw error;
        await copyFile(partFile, temp);
      });
      await chmod(temp, 0o600);
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  /** The kept file's size, or null when there is none. */
  async size(sha256: string): Promise<number | null> {
    const st = await lstat(this.path(sha256)).catch(() => undefined);
    return st?.isFile() ? st.size : null;
  }

  /** How many entries relay/ holds (kept files and temp files of a keep under way). */
  async count(): Promise<number> {
    return (await readdir(this.dir).catch(() => [] as string[])).length;
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.path(sha256), { force: true });
  }

  /** Removes kept files older than the keep age (and temp files of an interrupted keep), but not `serving`'s. */
  async sweep(nowMs: number, serving: ReadonlySet<string>): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const files: { name: string; mtimeMs: number }[] = [];
    for (const name of names) {
      const st = await lstat(path.join(this.dir, name)).catch(() => undefined);
      if (!st) continue;
      // A temp file of a keep under way is as young as its upload: it is left alone like a kept file.
      files.push({ name, mtimeMs: st.mtimeMs });
    }
    const doomed = keptToSweep(files, nowMs, serving);
    for (const name of doomed) await rm(path.join(this.dir, name), { recursive: true, force: true });
    return doomed;
  }
}
