import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { decodeFileManifest, encodeFileManifest } from '../../contract/file-manifest.js';
import type { ContentEntry } from '../../contract/release-content.js';
import { readOrNull, writeAtomic } from '../../lib/durable.js';

/** Where a file content the box holds is: a file of a kept release, with its mode and size. */
export interface KnownContent { releaseId: string; path: string; mode: number; size: number }

/**
 * The index of file contents the box can reuse: for every release stored, its file manifest
 * (contract/file-manifest.ts) as it was verified when the release was stored, at
 * `SLIPWAY_HOME/index/<app>/<releaseId>.files.json`. Outside the release dir, so the release
 * stays exactly its files. A release without one (stored before, or a crash between its publish
 * and its index) is simply not a base for delta uploads. The index only says where a content was:
 * whoever links a file from it hashes what it finds there.
 */
export class FileIndex {
  /** Manifests are immutable once written: read each once. */
  private readonly cache = new Map<string, ContentEntry[]>();

  constructor(private readonly root: string, private readonly maxEntries: number) {}

  file(app: string, releaseId: string): string {
    return path.join(this.root, app, `${releaseId}.files.json`);
  }

  async write(app: string, releaseId: string, entries: readonly ContentEntry[]): Promise<void> {
    await mkdir(path.join(this.root, app), { recursive: true, mode: 0o700 });
    await writeAtomic(this.file(app, releaseId), encodeFileManifest(entries));
  }

  async remove(app: string, releaseId: string): Promise<void> {
    this.cache.delete(`${app}/${releaseId}`);
    await rm(this.file(app, releaseId), { force: true });
  }

  /** The release's indexed files; null when it has no index (or an unreadable one). */
  async entries(app: string, releaseId: string): Promise<ContentEntry[] | null> {
    const key = `${app}/${releaseId}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const data = await readOrNull(this.file(app, releaseId));
    if (!data) return null;
    try {
      const entries = decodeFileManifest(data.toString('utf8'), this.maxEntries);
      this.cache.set(key, entries);
      return entries;
    } catch {
      return null;
    }
  }

  /** Every content the given releases hold, by sha256; the newest release's copy first. */
  async known(app: string, releaseIds: readonly string[]): Promise<Map<string, KnownContent[]>> {
    const known = new Map<string, KnownContent[]>();
    for (const releaseId of [...releaseIds].sort().reverse()) {
      for (const entry of await this.entries(app, releaseId) ?? []) {
        if (entry.type !== 'file') continue;
        const list = known.get(entry.sha256) ?? [];
        list.push({ releaseId, path: entry.path, mode: entry.mode, size: entry.size });
        known.set(entry.sha256, list);
      }
    }
    return known;
  }
}
