// The controller-side install cache: a completed install (node_modules right after `npm ci`,
// before the build commands and prune) kept as hardlinks, so the next build of a commit with the
// same install inputs links it into its clean checkout instead of installing. The same mechanism
// as a host build's (agent/build/host-build.ts), with the same key (lib/install-key.ts).
//
// On disk (root: installCacheRoot):
//   <root>/<app>/<key>/node_modules   a completed install; its files are hardlinks shared with the
//                                     build that made it and every build that reused it
//   <root>/<app>/<key>                its mtime is its last use: beyond KEEP_INSTALLS per app, the
//                                     least recently used go
//   <root>/<app>/.tmp-<random>        an install being stored; renamed to <key> when complete,
//                                     removed when found STALE_TMP_MS later (a build that died)
//
// Nothing here writes into a cached file: an entry is made by linking (root-level bookkeeping
// files of node_modules, which npm rewrites in place, are copies: isInstallMetadata), a reuse
// links from it the same way, and prune only unlinks. A cache, not state: entries are not fsynced
// (after a crash, clearing the directory is always safe).
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises';
import path from 'node:path';
import { isInstallMetadata } from '../../lib/install-key.js';
import { linkTree } from '../../lib/link-tree.js';

/** Installs kept per app: the live lockfile, the previous one (a rollback's), and one more. */
export const KEEP_INSTALLS = 3;
/** A temp dir older than this belongs to a build that died. */
export const STALE_TMP_MS = 60 * 60 * 1000;
const TMP_PREFIX = '.tmp-';

/**
 * Pure: where installs are kept: $SLIPWAY_BUILD_CACHE, else $XDG_CACHE_HOME/slipway/installs,
 * else ~/.cache/slipway/installs.
 */
export function installCacheRoot(env: NodeJS.ProcessEnv, home: string): string {
  if (env.SLIPWAY_BUILD_CACHE) return path.resolve(env.SLIPWAY_BUILD_CACHE);
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(home, '.cache');
  return path.join(base, 'slipway', 'installs');
}

export interface CacheEntry {
  name: string;
  /** Last use (the entry dir's mtime), ms since the epoch. */
  usedAtMs: number;
}

/**
 * Pure: the entries of an app's cache dir to remove: completed installs beyond the `keep` most
 * recently used (`protect`, the one just used, is never among them), and temp dirs older than
 * STALE_TMP_MS.
 */
export function evictions(entries: readonly CacheEntry[], keep: number, nowMs: number, protect?: string): string[] {
  const installs = entries.filter((e) => !e.name.startsWith(TMP_PREFIX) && e.name !== protect)
    .sort((a, b) => b.usedAtMs - a.usedAtMs || (a.name < b.name ? -1 : 1));
  const room = Math.max(0, keep - (protect ? 1 : 0));
  const stale = entries.filter((e) => e.name.startsWith(TMP_PREFIX) && nowMs - e.usedAtMs > STALE_TMP_MS);
  return [...installs.slice(room), ...stale].map((e) => e.name);
}

export interface Reused {
  linked: number;
  copied: number;
  ms: number;
}

/** One app's installs under the cache root. */
export class InstallCache {
  readonly dir: string;

  constructor(root: string, app: string, private readonly keep = KEEP_INSTALLS) {
    this.dir = path.join(root, app);
  }

  /** The cached node_modules of `key`. */
  entry(key: string): string {
    return path.join(this.dir, key, 'node_modules');
  }

  /**
   * Links the install `key` in as `nodeModules` (replacing whatever is there, as `npm ci` would)
   * and marks it used; null, with `nodeModules` untouched, when there is none. A failed link (the
   * entry evicted meanwhile) leaves no partial tree and counts as a miss.
   */
  async restore(key: string, nodeModules: string): Promise<Reused | null> {
    const source = this.entry(key);
    if (!(await lstat(source).catch(() => null))?.isDirectory()) return null;
    const started = Date.now();
    await rm(nodeModules, { recursive: true, force: true });
    try {
      const counts = await linkTree(source, nodeModules, { copy: isInstallMetadata });
      // npm trusts its hidden lockfile (a description of exactly this tree) only when it is newer
      // than every package folder, which linking just made anew; otherwise prune rereads them all.
      const now = new Date();
      await utimes(path.join(nodeModules, '.package-lock.json'), now, now).catch(() => undefined);
      await this.touch(key);
      return { ...counts, ms: Date.now() - started };
    } catch {
      await rm(nodeModules, { recursive: true, force: true });
      return null;
    }
  }

  /**
   * Keeps `nodeModules` (a completed install) as `key`: linked into a temp dir, renamed into place
   * when complete (a concurrent build that stored the same key first wins; the contents are the
   * same), then the least recently used installs beyond the limit go.
   */
  async store(key: string, nodeModules: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.dir, `${TMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await linkTree(nodeModules, path.join(tmp, 'node_modules'), { copy: isInstallMetadata });
      await rename(tmp, path.join(this.dir, key)).catch((error: unknown) => {
        if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    await this.evict(key);
  }

  /** Removes what `evictions` picks; `protect` is the install just used or stored. */
  async evict(protect?: string): Promise<string[]> {
    const entries: CacheEntry[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const st = await lstat(path.join(this.dir, name)).catch(() => null);
      if (st?.isDirectory()) entries.push({ name, usedAtMs: st.mtimeMs });
    }
    const doomed = evictions(entries, this.keep, Date.now(), protect);
    for (const name of doomed) await rm(path.join(this.dir, name), { recursive: true, force: true });
    return doomed;
  }

  private async touch(key: string): Promise<void> {
    const now = new Date();
    await utimes(path.join(this.dir, key), now, now);
  }
}
