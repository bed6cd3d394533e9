import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readOrNull } from '../../lib/durable.js';
import { replaceFile } from '../../lib/replace-file.js';

/**
 * The controller's persistent cache of file content hashes, so that a push reads and hashes only
 * the files that changed since a push before it (contract/file-manifest.ts needs a sha256 per file):
 * - a committed file by its git blob id (`blob:<oid>`): a blob's bytes never change;
 * - a file on disk (build output, `include`) by its path and what lstat says of it
 *   (`stat:<dev>:<ino>:<size>:<mtime ns>:<ctime ns>:<path>`): any write changes ctime.
 *
 * One JSON file, replaced atomically; a file that does not parse or whose checksum does not match
 * is an empty cache (the cache only saves work: a miss hashes the file). Bounded: at most
 * `maxEntries`, the least recently used dropped first. Two pushes at once each write their own
 * view; the last one wins, which only costs the other's entries.
 */
export interface CachedContent { sha256: string; size: number }

export const HASH_CACHE_FORMAT = 'slipway-content-hashes-v1';
export const DEFAULT_MAX_ENTRIES = 500_000;
/** A file changed less than this before it was hashed may change again within the clock's tick: not cached. */
export const RACY_MS = 2_000;

type Row = [sha256: string, size: number, usedMs: number];
const SHA256 = /^[0-9a-f]{64}$/;

/** `$XDG_CACHE_HOME/slipway/content-hashes.json` (or ~/.cache/…); SLIPWAY_CONTENT_CACHE overrides, "off" disables. */
export function hashCacheFile(env: NodeJS.ProcessEnv, home: string): string | null {
  if (env.SLIPWAY_CONTENT_CACHE === 'off') return null;
  if (env.SLIPWAY_CONTENT_CACHE) return path.resolve(env.SLIPWAY_CONTENT_CACHE);
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(home, '.cache');
  return path.join(base, 'slipway', 'content-hashes.json');
}

/** Pure: the key of a committed file's content. */
export function blobKey(oid: string): string {
  return `blob:${oid}`;
}

/** Pure: the key of a file on disk as lstat (bigint) saw it. */
export function statKey(file: string, st: Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>): string {
  return `stat:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${file}`;
}

/**
 * Pure: whether a file hashed at `hashedAtMs` may be cached by its stat: unchanged while it was
 * read (`before` and `after` the same key), and last written at least RACY_MS before (a write in
 * the same clock tick as the hash would leave mtime and ctime as they were).
 */
export function cacheableStat(
  file: string,
  before: Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>,
  after: Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>,
  hashedAtMs: number,
): boolean {
  if (statKey(file, before) !== statKey(file, after)) return false;
  const newest = before.mtimeNs > before.ctimeNs ? before.mtimeNs : before.ctimeNs;
  return Number(newest / 1_000_000n) <= hashedAtMs - RACY_MS;
}

/** Pure: the rows to keep, most recently used first, at most `max`. */
export function pruneRows(rows: ReadonlyMap<string, Row>, max: number): Map<string, Row> {
  if (rows.size <= max) return new Map(rows);
  return new Map([...rows].sort((a, b) => b[1][2] - a[1][2]).slice(0, max));
}

/** Pure: the file's text for these rows (with a checksum over them). */
export function encodeHashCache(rows: ReadonlyMap<string, Row>): string {
  const entries = Object.fromEntries(rows);
  const body = JSON.stringify(entries);
  return `{"format":"${HASH_CACHE_FORMAT}","sum":"${createHash('sha256').update(body).digest('hex')}","entries":${body}}\n`;
}

/** Pure: the rows of a cache file's text; an empty map for anything malformed. */
export function decodeHashCache(text: string): Map<string, Row> {
  const rows = new Map<string, Row>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return rows;
  }
  if (typeof parsed !== 'object' || parsed === null) return rows;
  const { format, sum, entries } = parsed as Record<string, unknown>;
  if (format !== HASH_CACHE_FORMAT || typeof entries !== 'object' || entries === null || Array.isArray(entries)) return rows;
  if (sum !== createHash('sha256').update(JSON.stringify(entries)).digest('hex')) return rows;
  for (const [key, row] of Object.entries(entries)) {
    if (!Array.isArray(row) || row.length !== 3) return new Map();
    const [sha256, size, usedMs] = row as unknown[];
    if (typeof sha256 !== 'string' || !SHA256.test(sha256) || !Number.isSafeInteger(size) || (size as number) < 0 || !Number.isFinite(usedMs)) return new Map();
    rows.set(key, [sha256, size as number, usedMs as number]);
  }
  return rows;
}

export class HashCache {
  private dirty = false;
  private constructor(private readonly file: string | null, private readonly rows: Map<string, Row>, private readonly maxEntries: number, private readonly now: number) {}

  /** The cache at `file` (null: a cache that remembers nothing past this push). */
  static async load(file: string | null, maxEntries = DEFAULT_MAX_ENTRIES): Promise<HashCache> {
    const data = file ? await readOrNull(file).catch(() => null) : null;
    return new HashCache(file, data ? decodeHashCache(data.toString('utf8')) : new Map(), maxEntries, Date.now());
  }

  get(key: string): CachedContent | undefined {
    const row = this.rows.get(key);
    if (!row) return undefined;
    // Use times an hour apart are the same for pruning: an unchanged push need not rewrite the file.
    if (this.now - row[2] > 3_600_000) {
      row[2] = this.now;
      this.dirty = true;
    }
    return { sha256: row[0], size: row[1] };
  }

  set(key: string, content: CachedContent): void {
    this.rows.set(key, [content.sha256, content.size, this.now]);
    this.dirty = true;
  }

  /** Writes the cache when it changed (best effort: a cache that cannot be written costs only speed). */
  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    try {
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      await replaceFile(this.file, encodeHashCache(pruneRows(this.rows, this.maxEntries)));
      this.dirty = false;
    } catch {
      // A read-only or full cache dir: the next push hashes again.
    }
  }
}
