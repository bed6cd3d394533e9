import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { MANIFEST_FILE, type ReleaseManifest } from '../contract/manifest.js';
import { SlipwayError } from '../contract/errors.js';
import { archiveCommit, commitHasFile } from './git.js';
import { tarballName } from './manifest.js';
import { tarFileManifest } from './tar-contents.js';
import { writeDeltaBundle, type DeltaBundle } from './delta-bundle.js';
import type { ContentEntry } from '../contract/release-content.js';
import { TarWriter } from '../lib/tar-writer.js';
import { gzipReproducibly } from '../lib/reproducible-gzip.js';
import { writeReleaseTree } from './content/content-tar.js';
import { HashCache, hashCacheFile } from './content/hash-cache.js';
import { listReleaseFiles, type ReleaseFiles } from './content/release-files.js';

export interface PackedRelease {
  file: string;
  bytes: number;
  sha256: string;
}

export interface PreparedRelease {
  /** sha256 over the release's files as the agent will unpack them (contract/release-content.ts). */
  contentDigest: string;
  /** The release's file manifest (contract/file-manifest.ts), in tree order. */
  files: ContentEntry[];
  /**
   * A delta upload's body (controller/delta-bundle.ts): the file manifest, the contents in `send`,
   * the manifest. Any number of times, before or after seal(); hosts that lack the same contents
   * get the same bundle, cut once (bundleOncePerSet).
   */
  bundle(manifest: ReleaseManifest, send: ReadonlySet<string>): Promise<DeltaBundle>;
  /** Appends the manifest (which must carry contentDigest) and compresses: the tarball to upload. Once. */
  seal(manifest: ReleaseManifest): Promise<PackedRelease>;
  /** Removes the temp dir and every file in it, the tarball included. */
  cleanup(): Promise<void>;
  /** What seal() gives: the files packed here (the default), or a tarball verified elsewhere (a promotion's). */
  sealedFrom?: 'files' | 'tarball';
}

/**
 * Prepares a commit's files for upload. The file manifest and the content digest come first: for
 * a commit, from `git ls-tree` and a cache of content hashes keyed by blob id (and, for `include`d
 * build output, by stat), so an unchanged file is neither read nor hashed (content/release-files.ts);
 * the tar is written only for a full upload, then from the same sources (content/content-tar.ts).
 * After a controller-side build, or when git would convert files on archive (.gitattributes,
 * autocrlf), it packs at once, as follows.
 *
 * Packs a commit's files into a plain, reproducible tar in a temp dir (lib/tar-writer.ts):
 * the tree as `git archive` gives it, in git's order (or, after a controller-side build, the
 * built checkout `builtDir`, walked in name order), then the configured build output (`include`,
 * in config order, each walked in name order), every entry with the commit's time as its mtime
 * and normalised owner and mode. The same commit and the same build output always give the same
 * bytes, whoever packs them and whenever. Computes the content digest that names the release.
 * Nothing is compressed yet: a host that already has the release needs no tarball.
 */
export async function prepareRelease(input: {
  repo: string; treeish: string; include: string[]; builtDir?: string; mtime: Date;
  /** The content hash cache (content/hash-cache.ts); the user's by default, null for none. */
  hashCache?: string | null;
  /** Pack and hash `git archive`'s output now, as when the cache cannot be used (tests compare both ways). */
  packAtOnce?: boolean;
}): Promise<PreparedRelease> {
  const { repo, treeish, include, builtDir, mtime } = input;
  await checkSources(repo, treeish, include, builtDir);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pack-'));
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    // A built checkout is removed once this returns: its files are packed now. A commit's are read
    // from git when (and only as far as) an upload needs them.
    const listed = builtDir || input.packAtOnce ? null : await listReleaseFiles({
      repo, treeish, include,
      cache: await HashCache.load(input.hashCache === undefined ? hashCacheFile(process.env, os.homedir()) : input.hashCache),
    });
    if (listed) return fromSources(repo, listed, mtime, dir, cleanup);
    return await packNow(input, dir, cleanup);
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * The release as its file manifest and where each file's bytes are (content/release-files.ts):
 * nothing is packed until an upload needs it. A delta bundle reads only the contents it sends;
 * seal() writes the whole tree (checking every file against the manifest) the first time it runs.
 */
function fromSources(repo: string, listed: ReleaseFiles, mtime: Date, dir: string, cleanup: () => Promise<void>): PreparedRelease {
  const { entries: files, digest: contentDigest, sources } = listed;
  const checkDigest = digestCheck(contentDigest);
  let plain: Promise<{ plainTar: string; endOffset: number }> | null = null;
  const packTree = async () => {
    const plainTar = path.join(dir, 'release.tar');
    const writer = TarWriter.create(plainTar, mtime);
    try {
      await writeReleaseTree(repo, files, sources, writer);
    } finally {
      writer.close();
    }
    return { plainTar, endOffset: writer.endOffset };
  };
  return {
    contentDigest,
    files,
    bundle: bundleOncePerSet(checkDigest, (manifest, send) => writeDeltaBundle({ from: { repo, sources }, entries: files, send, manifest, mtime, dir })),
    seal: sealOncePerManifest(checkDigest, (manifest) => {
      plain ??= packTree();
      return plain.then(({ plainTar, endOffset }) => seal(plainTar, endOffset, mtime, manifest));
    }),
    cleanup,
  };
}

/**
 * Once per manifest: a fleet's hosts each fall back to the full tarball at their own time, and a
 * second seal would append to the plain tar again while the first one gzips it (so a failed seal
 * is not tried again).
 */
function sealOncePerManifest(checkDigest: (manifest: ReleaseManifest) => void, sealNow: (manifest: ReleaseManifest) => Promise<PackedRelease>) {
  const once = oncePerKey((manifest: ReleaseManifest) => JSON.stringify(manifest), sealNow, { retryFailed: false });
  return (manifest: ReleaseManifest): Promise<PackedRelease> => {
    checkDigest(manifest);
    return once(manifest);
  };
}

/**
 * Once per manifest and set of contents: the hosts of a fleet that lack the same contents (a new
 * release on hosts that share the previous one: the usual case) are sent the same bundle, cut and
 * compressed once, whenever each of them asks. A bundle that failed is cut again when asked again.
 */
export function bundleOncePerSet(
  checkDigest: (manifest: ReleaseManifest) => void,
  cut: (manifest: ReleaseManifest, send: ReadonlySet<string>) => Promise<DeltaBundle>,
): (manifest: ReleaseManifest, send: ReadonlySet<string>) => Promise<DeltaBundle> {
  const once = oncePerKey(bundleKey, cut, { retryFailed: true });
  return (manifest, send) => {
    checkDigest(manifest);
    return once(manifest, send);
  };
}

/**
 * One promise per key: calls with the same key share the first one's; with `retryFailed`, one that
 * failed is forgotten, so the next call with its key makes it again.
 */
function oncePerKey<A extends unknown[], T>(keyOf: (...args: A) => string, make: (...args: A) => Promise<T>, options: { retryFailed: boolean }): (...args: A) => Promise<T> {
  const made = new Map<string, Promise<T>>();
  return (...args) => {
    const key = keyOf(...args);
    let value = made.get(key);
    if (!value) {
      const fresh = make(...args);
      made.set(key, fresh);
      if (options.retryFailed) fresh.catch(() => { if (made.get(key) === fresh) made.delete(key); });
      value = fresh;
    }
    return value;
  };
}

/** Pure: what identifies a bundle: the manifest it carries and the contents it holds (in any order). */
export function bundleKey(manifest: ReleaseManifest, send: ReadonlySet<string>): string {
  return `${JSON.stringify(manifest)}\n${[...send].sort().join(',')}`;
}

function digestCheck(contentDigest: string) {
  return (manifest: ReleaseManifest): void => {
    if (manifest.contentDigest !== contentDigest) throw new Error(`the manifest's content digest ${manifest.contentDigest} is not the packed files' ${contentDigest}`);
  };
}

/** Packs the tree into a plain tar now (a built checkout, or an archive git converts) and hashes it back. */
async function packNow(input: { repo: string; treeish: string; include: string[]; builtDir?: string; mtime: Date }, dir: string, cleanup: () => Promise<void>): Promise<PreparedRelease> {
  const { repo, treeish, include, builtDir, mtime } = input;
  const plainTar = path.join(dir, 'release.tar');
  let gitTar: string | null = null;
  if (!builtDir) {
    gitTar = path.join(dir, 'git.tar');
    await archiveCommit(repo, treeish, gitTar);
  }
  const writer = TarWriter.create(plainTar, mtime);
  try {
    if (builtDir) writer.tree(builtDir, '');
    else transcode(gitTar!, writer);
    for (const entry of include) writer.tree(path.join(repo, entry), entry.split(path.sep).filter(Boolean).join('/'));
  } finally {
    writer.close();
  }
  if (gitTar) await fs.rm(gitTar);
  const endOffset = writer.endOffset;
  const { entries: files, digest: contentDigest } = await tarFileManifest(plainTar);
  const checkDigest = digestCheck(contentDigest);
  return {
    contentDigest,
    files,
    bundle: bundleOncePerSet(checkDigest, (manifest, send) => writeDeltaBundle({ from: { plainTar }, entries: files, send, manifest, mtime, dir })),
    seal: sealOncePerManifest(checkDigest, (manifest) => seal(plainTar, endOffset, mtime, manifest)),
    cleanup,
  };
}

/** Re-writes `git archive`'s entries, in its order, through the normalising writer. */
function transcode(gitTar: string, writer: TarWriter): void {
  let failure: unknown;
  tar.t({
    file: gitTar, sync: true, strict: true,
    onReadEntry: (entry) => {
      const name = entry.path.replace(/\/$/, '');
      if (entry.type === 'Directory') writer.directory(name);
      else if (entry.type === 'SymbolicLink') writer.symlink(name, entry.linkpath ?? '');
      else if (entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') {
        const sink = writer.beginFile(name, entry.mode ?? 0o644, entry.size ?? 0);
        entry.on('data', (chunk: Buffer) => { try { sink.chunk(chunk); } catch (error) { failure ??= error; } });
        entry.on('end', () => { try { sink.end(); } catch (error) { failure ??= error; } });
        return;
      }
      entry.resume();
    },
  });
  if (failure) throw failure;
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

/**
 * Writes manifest.json over the end blocks (same mtime, mode 0644), then gzips into
 * `<app>-<releaseId>.tar.gz` beside it (lib/reproducible-gzip.ts), hashing on the way out.
 */
async function seal(plainTar: string, endOffset: number, mtime: Date, manifest: ReleaseManifest): Promise<PackedRelease> {
  const dir = path.dirname(plainTar);
  const writer = TarWriter.resume(plainTar, endOffset, mtime);
  try {
    writer.bytes(MANIFEST_FILE, 0o644, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
  } finally {
    writer.close();
  }
  const file = path.join(dir, tarballName(manifest.app, manifest.releaseId));
  const packed = await gzipReproducibly(plainTar, file);
  // The plain tar stays until cleanup(): delta bundles for other hosts are cut from it.
  return { file, ...packed };
}
