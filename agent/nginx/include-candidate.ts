import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { fsyncDir, readOrNull, writeAtomic, writeDurable } from '../../lib/durable.js';

/**
 * An app's include while a new config is tried: `nginx -t` tests the whole config tree, so the
 * candidate has to sit where nginx includes it (<includeDir>/<app>.conf) to be tested at all.
 * Beside it, `<app>.conf.last-good` is the last config proven live, from which a crash in between
 * is recovered; `restore()` puts back byte for byte what was there before (or removes a first
 * include), and `keep()` records the candidate as proven.
 */
export class IncludeCandidate {
  private wasRestored = false;

  private constructor(
    /** The live include path, now holding the candidate. */
    readonly path: string,
    private readonly config: string,
    private readonly previous: Buffer | null,
  ) {}

  /** Stages `config` next to `live`, keeps the last good copy, and renames the candidate into place. */
  static async putInPlace(live: string, config: string, app: string): Promise<IncludeCandidate> {
    const dir = path.dirname(live);
    const next = `${live}.next`;
    const lastGood = lastGoodOf(live);
    const previous = await readOrNull(live);
    try {
      await writeDurable(next, config);
      // last-good is the last config proven live; a crash from here on is recovered from it.
      if (previous !== null && !previous.equals((await readOrNull(lastGood)) ?? Buffer.alloc(0))) {
        await writeAtomic(lastGood, previous);
      }
    } catch (error) {
      await rm(next, { force: true });
      throw new SlipwayError('nginx_write_failed', `could not stage nginx config for app ${app}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: `check free space and permissions of ${dir}; the live config was not touched`,
      });
    }
    await rename(next, live);
    await fsyncDir(dir);
    return new IncludeCandidate(live, config, previous);
  }

  get restored(): boolean {
    return this.wasRestored;
  }

  async restore(): Promise<void> {
    this.wasRestored = true;
    if (this.previous === null) {
      await rm(this.path, { force: true });
      await fsyncDir(path.dirname(this.path));
    } else {
      await writeAtomic(this.path, this.previous);
    }
  }

  /** Records the candidate as the last config proven live. */
  async keep(): Promise<void> {
    await writeAtomic(lastGoodOf(this.path), this.config);
  }
}

function lastGoodOf(live: string): string {
  return `${live}.last-good`;
}
