import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { DELTA_BUNDLE, encodeFileManifest } from '../contract/file-manifest.js';
import type { ReleaseManifest } from '../contract/manifest.js';
import { treePath, type ContentEntry } from '../contract/release-content.js';
import { TarWriter } from '../lib/tar-writer.js';
import { gzipReproducibly } from '../lib/reproducible-gzip.js';
import { writeObjects } from './content/content-tar.js';
import type { ContentSource } from './content/release-files.js';

export interface DeltaBundle {
  file: string;
  bytes: number;
  sha256: string;
  /** Distinct file contents in it, and their bytes (before compression). */
  objects: number;
  objectBytes: number;
}

/**
 * Writes the body of a delta upload (contract/file-manifest.ts DELTA_BUNDLE) into `dir`: the file
 * manifest, then each content of `send` once, read from the release's plain tar (the same bytes a
 * full upload would carry), then the release manifest; gzipped. Only contents are sent: paths,
 * modes and links travel in the file manifest, and the host rebuilds the tree from it.
 */
export async function writeDeltaBundle(input: {
  /** Where the contents are read from: the release's plain tar, or their sources (content/release-files.ts). */
  from: { plainTar: string } | { repo: string; sources: ReadonlyMap<string, ContentSource> };
  entries: readonly ContentEntry[]; send: ReadonlySet<string>; manifest: ReleaseManifest; mtime: Date; dir: string;
}): Promise<DeltaBundle> {
  const { from, entries, send, manifest, mtime, dir } = input;
  const hashOf = new Map<string, string>();
  for (const entry of entries) if (entry.type === 'file' && send.has(entry.sha256)) hashOf.set(entry.path, entry.sha256);
  // Bundles for other sets of contents may be cut at the same time (a fleet whose hosts lack different files): each its own files.
  const unique = randomUUID().slice(0, 8);
  const plain = path.join(dir, `delta-${unique}.tar`);
  const writer = TarWriter.create(plain, mtime);
  let objectBytes = 0;
  let objects = 0;
  try {
    writer.bytes(DELTA_BUNDLE.files, 0o644, Buffer.from(encodeFileManifest(entries)));
    if ('sources' in from) {
      ({ objects, bytes: objectBytes } = await writeObjects(from.repo, entries, from.sources, send, writer));
    } else {
      ({ objects, bytes: objectBytes } = copyFromTar(from.plainTar, hashOf, writer));
    }
    writer.bytes(DELTA_BUNDLE.manifest, 0o644, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
  } finally {
    writer.close();
  }
  const file = path.join(dir, `${manifest.app}-${manifest.releaseId}.delta-${unique}.tar.gz`);
  const packed = await gzipReproducibly(plain, file);
  await fs.rm(plain);
  return { file, ...packed, objects, objectBytes };
}

/** Each content named in `hashOf` (tree path -> sha256), once, from the release's plain tar; returns how many and their bytes. */
function copyFromTar(plainTar: string, hashOf: ReadonlyMap<string, string>, writer: TarWriter): { objects: number; bytes: number } {
  const written = new Set<string>();
  let objectBytes = 0;
  let failure: unknown;
  tar.t({
      file: plainTar, sync: true, strict: true,
      onReadEntry: (entry) => {
        const hash = hashOf.get(treePath(entry.path));
        if (entry.type !== 'File' || hash === undefined || written.has(hash)) {
          entry.resume();
          return;
        }
        written.add(hash);
        objectBytes += entry.size ?? 0;
        const sink = writer.beginFile(`${DELTA_BUNDLE.objectsDir}/${hash}`, 0o644, entry.size ?? 0);
        entry.on('data', (chunk: Buffer) => { try { sink.chunk(chunk); } catch (error) { failure ??= error; } });
        entry.on('end', () => { try { sink.end(); } catch (error) { failure ??= error; } });
      },
    });
  if (failure) throw failure;
  if (written.size !== new Set(hashOf.values()).size) throw new Error('the plain tar lacks contents its file manifest names');
  return { objects: written.size, bytes: objectBytes };
}
