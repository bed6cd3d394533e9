import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar';
import { MANIFEST_FILE, type ReleaseManifest } from '../contract/manifest.js';
import { SlipwayError } from '../contract/errors.js';
import { archiveCommit, commitHasFile } from './git.js';
import { tarballName } from './manifest.js';

export interface PackedRelease {
  file: string;
  bytes: number;
  sha256: string;
  /** Removes the tarball and its temp dir. */
  cleanup(): Promise<void>;
}

/**
 * Packs a commit into `<app>-<releaseId>.tar.gz`: `git archive` of the tree, then the manifest and any
 * configured build output appended, then gzip with the sha256 computed on the way out.
 */
export async function packRelease(input: {
  repo: string; treeish: string; manifest: ReleaseManifest; include: string[];
}): Promise<PackedRelease> {
  const { repo, treeish, manifest } = input;
  if (await commitHasFile(repo, treeish, MANIFEST_FILE)) {
    throw new SlipwayError('manifest_conflict', `the commit has its own ${MANIFEST_FILE} at the repository root, where Slipway writes the release manifest`, {
      hint: `move it (e.g. to public/${MANIFEST_FILE})`,
    });
  }
  for (const entry of input.include) {
    const full = path.resolve(repo, entry);
    if (!full.startsWith(repo + path.sep)) {
      throw new SlipwayError('include_invalid', `include entry "${entry}" leaves the repository`, { hint: 'list paths relative to the repository root' });
    }
    try {
      await fs.access(full);
    } catch {
      throw new SlipwayError('include_invalid', `include entry "${entry}" does not exist in ${repo}`, {
        hint: 'run your build first, or remove it from "include" in deploy.config.json',
      });
    }
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pack-'));
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const plainTar = path.join(dir, 'release.tar');
    await archiveCommit(repo, treeish, plainTar);
    const metaDir = path.join(dir, 'meta');
    await fs.mkdir(metaDir);
    await fs.writeFile(path.join(metaDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    await tar.r({ file: plainTar, cwd: metaDir, portable: true }, [MANIFEST_FILE]);
    if (input.include.length) await tar.r({ file: plainTar, cwd: repo, portable: true }, input.include);

    const file = path.join(dir, tarballName(manifest.app, manifest.releaseId));
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(createReadStream(plainTar), createGzip({ level: 6 }), tap, createWriteStream(file, { mode: 0o600 }));
    await fs.rm(plainTar);
    return { file, bytes, sha256: hash.digest('hex'), cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
