import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { MANIFEST_FILE } from '../../contract/manifest.js';
import { contentDigest, type ContentEntry } from '../../contract/release-content.js';
import { gzipReproducibly } from '../../lib/reproducible-gzip.js';
import { TarWriter } from '../../lib/tar-writer.js';

const READ_CHUNK = 1024 * 1024;

/**
 * Packs a stored release back into a tarball from its files, in its file manifest's order, with
 * the controller's writer and compression (lib/tar-writer.ts, lib/reproducible-gzip.ts) and the
 * commit's time as every entry's mtime: for a tree packed in that order (directories before what
 * they hold, as `git archive` and the controller's walk write them) the same bytes the controller
 * would have sent. What a release stored by a delta upload keeps instead of its upload, for
 * `deploy promote`. Returns the content digest of what it read, for the caller to check against
 * the manifest: a file changed on disk must not be promoted.
 */
export async function repackRelease(input: {
  dir: string; entries: readonly ContentEntry[]; mtime: Date; workDir: string; target: string;
}): Promise<{ bytes: number; sha256: string; contentDigest: string }> {
  const { dir, entries, mtime, workDir, target } = input;
  const plain = path.join(workDir, `.tmp-repack-${randomBytes(8).toString('hex')}.tar`);
  try {
    const writer = TarWriter.create(plain, mtime);
    const read: ContentEntry[] = [];
    try {
      for (const entry of entries) {
        if (entry.type === 'directory') writer.directory(entry.path);
        else if (entry.type === 'symlink') writer.symlink(entry.path, entry.target);
        else read.push({ ...entry, sha256: await copyInto(writer, path.join(dir, entry.path), entry.path, entry.mode, entry.size) });
        if (entry.type !== 'file') read.push(entry);
      }
      writer.bytes(MANIFEST_FILE, 0o644, await readFile(path.join(dir, MANIFEST_FILE)));
    } finally {
      writer.close();
    }
    const packed = await gzipReproducibly(plain, target);
    return { ...packed, contentDigest: contentDigest(read) };
  } finally {
    await rm(plain, { force: true });
  }
}

/** Streams one file into the archive, hashing it; a file of another size than listed fails. */
async function copyInto(writer: TarWriter, file: string, archivePath: string, mode: number, size: number): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const actual = (await handle.stat()).size;
    if (actual !== size) throw new Error(`${archivePath} holds ${actual} bytes, not the ${size} its manifest lists`);
    const sink = writer.beginFile(archivePath, mode, size);
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let position = 0;
    while (position < size) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - position), position);
      if (bytesRead === 0) throw new Error(`${archivePath} is shorter than the ${size} bytes its manifest lists`);
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      sink.chunk(chunk);
      position += bytesRead;
    }
    sink.end();
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}
