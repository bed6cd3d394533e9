import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { SlipwayError } from '../../contract/errors.js';
import { DELTA_BUNDLE } from '../../contract/file-manifest.js';
import type { ContentEntry } from '../../contract/release-content.js';
import type { TarWriter } from '../../lib/tar-writer.js';
import { BlobStream } from './git-blobs.js';
import type { ContentSource } from './release-files.js';

type FileEntry = Extract<ContentEntry, { type: 'file' }>;

/**
 * Writes the release's tree (release-files.ts entries, in their order) into `writer`: each file's
 * bytes from its source, hashed on the way and checked against the manifest, so a tarball never
 * carries other bytes than the digest it is sent with.
 */
export async function writeReleaseTree(repo: string, entries: readonly ContentEntry[], sources: ReadonlyMap<string, ContentSource>, writer: TarWriter): Promise<void> {
  const files = entries.filter((e): e is FileEntry => e.type === 'file');
  await withBlobs(repo, files, sources, async (copy) => {
    for (const entry of entries) {
      if (entry.type === 'directory') writer.directory(entry.path);
      else if (entry.type === 'symlink') writer.symlink(entry.path, entry.target);
      else await copy(entry, entry.path, entry.mode, writer);
    }
  });
}

/**
 * Writes each content of `send` once, as `objects/<sha256>` (contract/file-manifest.ts DELTA_BUNDLE),
 * from the first file of the manifest that holds it; returns how many and their bytes.
 */
export async function writeObjects(repo: string, entries: readonly ContentEntry[], sources: ReadonlyMap<string, ContentSource>, send: ReadonlySet<string>, writer: TarWriter): Promise<{ objects: number; bytes: number }> {
  const chosen = new Map<string, FileEntry>();
  for (const entry of entries) if (entry.type === 'file' && send.has(entry.sha256) && !chosen.has(entry.sha256)) chosen.set(entry.sha256, entry);
  if (chosen.size !== send.size) throw new Error('the file manifest lacks contents it was asked to send');
  let bytes = 0;
  await withBlobs(repo, [...chosen.values()], sources, async (copy) => {
    for (const [sha256, entry] of chosen) {
      await copy(entry, `${DELTA_BUNDLE.objectsDir}/${sha256}`, 0o644, writer);
      bytes += entry.size;
    }
  });
  return { objects: chosen.size, bytes };
}

type Copy = (entry: FileEntry, name: string, mode: number, writer: TarWriter) => Promise<void>;

/** Runs `body` with a copier that reads `files` (in that order) from one git cat-file process or from disk. */
async function withBlobs(repo: string, files: readonly FileEntry[], sources: ReadonlyMap<string, ContentSource>, body: (copy: Copy) => Promise<void>): Promise<void> {
  const sourceOf = (entry: FileEntry): ContentSource => {
    const source = sources.get(entry.path);
    if (!source) throw new Error(`no source for ${entry.path}`);
    return source;
  };
  const oids = files.map(sourceOf).flatMap((s) => (s.kind === 'blob' ? [s.oid] : []));
  const blobs = oids.length ? BlobStream.open(repo, oids) : null;
  try {
    await body(async (entry, name, mode, writer) => {
      const source = sourceOf(entry);
      const sink = writer.beginFile(name, mode, entry.size);
      const hash = createHash('sha256');
      let size = 0;
      const put = (chunk: Buffer) => {
        size += chunk.length;
        if (size > entry.size) throw changed(entry, source, `more than its ${entry.size} bytes`);
        hash.update(chunk);
        sink.chunk(chunk);
      };
      if (source.kind === 'blob') await blobs!.read(source.oid, put);
      else readFileInto(source.file, entry.size, put);
      if (size !== entry.size) throw changed(entry, source, `${size} bytes, not ${entry.size}`);
      const sha256 = hash.digest('hex');
      if (sha256 !== entry.sha256) throw changed(entry, source, `sha256 ${sha256.slice(0, 12)}…, not ${entry.sha256.slice(0, 12)}…`);
      sink.end();
    });
  } finally {
    await blobs?.close();
  }
}

function readFileInto(file: string, size: number, put: (chunk: Buffer) => void): void {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      // One byte past the size: a file that grew is caught.
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      put(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
}

function changed(entry: FileEntry, source: ContentSource, why: string): SlipwayError {
  const where = source.kind === 'blob' ? `blob ${source.oid.slice(0, 12)}` : source.file;
  return new SlipwayError('release_content_changed', `${entry.path} (${where}) changed while the release was packed: ${why}; nothing was uploaded`, {
    hint: source.kind === 'file'
      ? 'let the build finish before pushing, then push again'
      : 'the content hash cache disagrees with the repository: remove ~/.cache/slipway/content-hashes.json (or $SLIPWAY_CONTENT_CACHE) and push again',
  });
}
