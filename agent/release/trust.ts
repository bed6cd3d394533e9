import type { BigIntStats } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readOrNull } from '../../lib/durable.js';
import { replaceFile } from '../../lib/replace-file.js';

/**
 * What the agent last saw of a file of a kept release whose content it verified: the content, and
 * the inode's size, mtime, ctime and link count then. A delta upload links such a file into a new
 * release without reading it again while all of these still hold (isTrusted): any write to the
 * file, a chmod, or a utimes that puts the old mtime back changes its ctime. The agent's own link
 * and unlink calls change ctime too: after making or removing links it notes the new ctime
 * (carryOver checks that only the link count moved).
 */
export interface TrustRecord { sha256: string; size: string; mtimeNs: string; ctimeNs: string; nlink: string }

export type InodeStat = Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs' | 'nlink'>;

const FORMAT = 'slipway-trusted-inodes-v1';

/** Pure: the key of an inode. */
export function inodeKey(st: Pick<BigIntStats, 'dev' | 'ino'>): string {
  return `${st.dev}:${st.ino}`;
}

/** Pure: the record of a file verified to hold `sha256`, as lstat saw it. */
export function recordOf(st: InodeStat, sha256: string): TrustRecord {
  return { sha256, size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), nlink: String(st.nlink) };
}

/**
 * Pure: whether a file as lstat sees it now may be taken as holding `sha256` without reading it:
 * recorded for that content with the same size, mtime and ctime (link count aside: linking it
 * changes that, and ctime with it, which the linker notes).
 */
export function isTrusted(record: TrustRecord | undefined, st: InodeStat, sha256: string): boolean {
  return record !== undefined && record.sha256 === sha256 && record.size === String(st.size)
    && record.mtimeNs === String(st.mtimeNs) && record.ctimeNs === String(st.ctimeNs);
}

/**
 * Pure: the record after the agent removed links to a trusted file (`before` trusted as lstat saw
 * it just before, `after` just after): the same inode, size and mtime, fewer links, so the new
 * ctime is the unlink's; null when anything else changed (then the file is hashed next time).
 */
export function carryOver(record: TrustRecord | undefined, before: InodeStat, after: InodeStat): TrustRecord | null {
  if (!record || !isTrusted(record, before, record.sha256)) return null;
  if (inodeKey(before) !== inodeKey(after) || before.size !== after.size || before.mtimeNs !== after.mtimeNs) return null;
  if (after.nlink >= before.nlink) return null;
  return recordOf(after, record.sha256);
}

/** The records of one app's kept files, by inode, at `index/<app>/trusted.json` (a cache: lost, it costs only hashing). */
export class TrustTable {
  private readonly records = new Map<string, TrustRecord>();
  private loaded: Promise<void> | null = null;
  private dirty = false;

  constructor(private readonly file: string, private readonly maxRecords: number) {}

  async get(st: Pick<BigIntStats, 'dev' | 'ino'>): Promise<TrustRecord | undefined> {
    await this.load();
    return this.records.get(inodeKey(st));
  }

  async note(st: InodeStat, sha256: string): Promise<void> {
    await this.load();
    const key = inodeKey(st);
    this.records.delete(key); // re-inserted last: the oldest are dropped first
    this.records.set(key, recordOf(st, sha256));
    while (this.records.size > this.maxRecords) this.records.delete(this.records.keys().next().value!);
    this.dirty = true;
  }

  async set(st: Pick<BigIntStats, 'dev' | 'ino'>, record: TrustRecord): Promise<void> {
    await this.load();
    this.records.set(inodeKey(st), record);
    this.dirty = true;
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      await replaceFile(this.file, JSON.stringify({ format: FORMAT, records: Object.fromEntries(this.records) }));
    } catch {
      // Not written: the files are hashed again next time.
    }
  }

  private load(): Promise<void> {
    this.loaded ??= (async () => {
      const data = await readOrNull(this.file).catch(() => null);
      if (!data) return;
      try {
        const parsed = JSON.parse(data.toString('utf8')) as { format?: unknown; records?: Record<string, TrustRecord> };
        if (parsed.format !== FORMAT || typeof parsed.records !== 'object' || parsed.records === null) return;
        for (const [key, record] of Object.entries(parsed.records)) {
          if (isRecord(record)) this.records.set(key, record);
        }
      } catch {
        // Unreadable: an empty table.
      }
    })();
    return this.loaded;
  }
}

function isRecord(value: unknown): value is TrustRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r.sha256 === 'string' && /^[0-9a-f]{64}$/.test(r.sha256)
    && ['size', 'mtimeNs', 'ctimeNs', 'nlink'].every((k) => typeof r[k] === 'string' && /^\d+$/.test(r[k] as string));
}
