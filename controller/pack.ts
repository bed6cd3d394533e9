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
import { tarContentDigest } from './tar-contents.js';

export interface PackedRelease {
  file: string;
  bytes: number;
  sha256: string;
}

export interface PreparedRelease {
  /** sha256 over the release's files as the agent will unpack them (contract/release-content.ts). */
  contentDigest: string;
  /** Appends the manifest (which must carry contentDigest) and compresses: the tarball to upload. Once. */
  seal(manifest: ReleaseManifest): Promise<PackedRelease>;
  /** Removes the temp dir and every file in it, the tarball included. */
  cleanup(): Promise<void>;
}

/**
 * node-tar packs a file whose inode it has already packed as a hardlink entry, and build output
 * has them (node-gyp's `build/`); the box refuses hardlinks. A link cache that never remembers
 * makes each such file a regular file with its own copy of the content.
 */
class ForgetfulLinkCache extends Map<`${number}:${number}`, string> {
  override set(): this {
    return this;
  }
}

/**
 * Packs a commit's files into a plain tar in a temp dir: `git archive` of the tree (or, after a
 * controller-side build, the built checkout `builtDir`), then the configured build output
 * (`include`) appended, and computes the content digest that names the release. Nothing is
 * compressed yet: a host that already has the release needs no tarball.
 */
export async function prepareRelease(input: { repo: string; treeish: string; include: string[]; builtDir?: string }): Promise<PreparedRelease> {
  const { repo, treeish, include, builtDir } = input;
  await checkSources(repo, treeish, include, builtDir);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pack-'));
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const plainTar = path.join(dir, 'release.tar');
    if (builtDir) await packDir(builtDir, plainTar);
    else await archiveCommit(repo, treeish, plainTar);
    if (include.length) await tar.r({ file: plainTar, cwd: repo, portable: true, linkCache: new ForgetfulLinkCache() }, include);
    const contentDigest = await tarContentDigest(plainTar);
    return {
      contentDigest,
      seal: (manifest) => {
        if (manifest.contentDigest !== contentDigest) throw new Error(`the manifest's content digest ${manifest.contentDigest} is not the packed files' ${contentDigest}`);
        return seal(plainTar, manifest);
      },
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** The built checkout's entries, in name order, as a plain tar (hardlinked build output as regular files). */
async function packDir(builtDir: string, plainTar: string): Promise<void> {
  const entries = (await fs.readdir(builtDir)).sort();
  await tar.c({ file: plainTar, cwd: builtDir, portable: true, linkCache: new ForgetfulLinkCache() }, entries);
}

async function checkSources(repo: string, treeish: string, include: string[], builtDir?: string): Promise<void> {
  if (await commitHasFile(repo, treeish, MANIFEST_FILE)) {
    throw new SlipwayError('manifest_conflict', `the commit has its own ${MANIFEST_FILE} at the repository root, where Slipway writes the release manifest`, {
      hint: `move it (e.g. to public/${MANIFEST_FILE})`,
    });
  }
  if (builtDir && await fs.access(path.join(builtDir, MANIFEST_FILE)).then(() => true, () => false)) {
    throw new SlipwayError('manifest_conflict', `the build wrote ${MANIFEST_FILE} at the repository root, where Slipway writes the release manifest`, {
      hint: `make the build write it elsewhere (e.g. dist/${MANIFEST_FILE})`,
    });
  }
  for (const entry of include) {
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
}

/** Appends manifest.json, then gzips into `<app>-<releaseId>.tar.gz` beside it, hashing on the way out. */
async function seal(plainTar: string, manifest: ReleaseManifest): Promise<PackedRelease> {
  const dir = path.dirname(plainTar);
  const metaDir = path.join(dir, 'meta');
  await fs.mkdir(metaDir);
  await fs.writeFile(path.join(metaDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  await tar.r({ file: plainTar, cwd: metaDir, portable: true }, [MANIFEST_FILE]);
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
  return { file, bytes, sha256: hash.digest('hex') };
}
