import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { ContentTree, normalizeMode, treePath, type ContentEntry } from '../../contract/release-content.js';
import { fileMode } from '../../lib/tar-writer.js';
import { BlobStream } from './git-blobs.js';
import { listGitTree, type GitTreeEntry } from './git-tree.js';
import { blobKey, cacheableStat, statKey, type HashCache } from './hash-cache.js';

/** Where a file's bytes come from: a blob of the repository, or a file on disk (build output). */
export type ContentSource = { kind: 'blob'; oid: string } | { kind: 'file'; file: string };

export interface ReleaseFiles {
  /** The file manifest, in tree order (as tar-contents.ts reads it from the tar pack.ts writes). */
  entries: ContentEntry[];
  digest: string;
  /** By tree path: where each file's bytes are. */
  sources: Map<string, ContentSource>;
  /** Files whose content was read and hashed (cache misses), and their bytes. */
  hashed: number;
  hashedBytes: number;
}

const CHUNK = 1024 * 1024;

/**
 * The release's file manifest without packing it: the commit's tree from `git ls-tree` (blob ids,
 * modes, paths: no content read), each blob's sha256 from the cache or, the first time, hashed from
 * `git cat-file`; then each `include` entry walked on disk as lib/tar-writer.ts's tree() walks it,
 * each file's sha256 from the cache by its stat, or hashed. The same entries and digest as packing
 * the commit and reading the tar back (controller/pack.ts), whichever way it is computed.
 *
 * Null when `git archive` would not give the blobs as they are (.gitattributes, filters, autocrlf:
 * git-tree.ts archiveIsPlainBlobs): the caller packs and hashes the archive instead.
 */
export async function listReleaseFiles(input: {
  repo: string; treeish: string; include: readonly string[]; cache: HashCache;
  /** The clock files on disk are hashed by (tests move it past the racy window). */
  now?: () => number;
}): Promise<ReleaseFiles | null> {
  const { repo, treeish, include, cache } = input;
  const now = input.now ?? Date.now;
  const listed = await listGitTree(repo, treeish);
  if (!listed.plain) return null;
  const result: ReleaseFiles = { entries: [], digest: '', sources: new Map(), hashed: 0, hashedBytes: 0 };
  const blobContents = await blobHashes(repo, listed.entries, cache, result);
  const tree = new ContentTree();
  for (const entry of listed.entries) {
    const p = treePath(entry.path);
    if (entry.type === 'tree' || entry.type === 'commit') {
      // git archive writes a submodule as an empty directory.
      tree.add({ path: p, type: 'directory', mode: normalizeMode('directory', 0o755) });
    } else if (entry.mode === '120000') {
      tree.add({ path: p, type: 'symlink', target: blobContents.targets.get(entry.oid)! });
      result.sources.delete(p);
    } else {
      const content = blobContents.hashes.get(entry.oid)!;
      tree.add({ path: p, type: 'file', mode: normalizeMode('file', fileMode(parseInt(entry.mode, 8))), size: content.size, sha256: content.sha256 });
      result.sources.set(p, { kind: 'blob', oid: entry.oid });
    }
  }
  for (const entry of include) {
    walk(path.join(repo, entry), entry.split(path.sep).filter(Boolean).join('/'), { tree, cache, result, now });
  }
  await cache.save();
  result.entries = tree.list();
  result.digest = tree.digest();
  return result;
}

/** Every blob's sha256 and size (cached, or hashed now), and every symlink's target. */
async function blobHashes(repo: string, entries: readonly GitTreeEntry[], cache: HashCache, result: ReleaseFiles) {
  const hashes = new Map<string, { sha256: string; size: number }>();
  const targets = new Map<string, string>();
  const toRead: string[] = [];
  const wanted = new Set<string>();
  for (const entry of entries) {
    if (entry.type !== 'blob' || wanted.has(entry.oid)) continue;
    const cached = entry.mode === '120000' ? undefined : cache.get(blobKey(entry.oid));
    if (cached) {
      hashes.set(entry.oid, cached);
      continue;
    }
    wanted.add(entry.oid);
    toRead.push(entry.oid);
  }
  if (toRead.length === 0) return { hashes, targets };
  const links = new Set(entries.filter((e) => e.type === 'blob' && e.mode === '120000').map((e) => e.oid));
  const stream = BlobStream.open(repo, toRead);
  try {
    for (const oid of toRead) {
      const hash = createHash('sha256');
      const parts: Buffer[] = [];
      const keep = links.has(oid);
      const size = await stream.read(oid, (chunk) => {
        hash.update(chunk);
        if (keep) parts.push(Buffer.from(chunk));
      });
      const content = { sha256: hash.digest('hex'), size };
      if (keep) targets.set(oid, Buffer.concat(parts).toString('utf8'));
      // The same blob may also be a regular file elsewhere in the tree.
      hashes.set(oid, content);
      cache.set(blobKey(oid), content);
      if (!keep) {
        result.hashed++;
        result.hashedBytes += size;
      }
    }
  } finally {
    await stream.close();
  }
  return { hashes, targets };
}

/** As TarWriter.tree(): `root` as `prefix`, then what is under it in byte order of names, depth first. */
interface Walk { tree: ContentTree; cache: HashCache; result: ReleaseFiles; now: () => number }

function walk(root: string, prefix: string, ctx: Walk): void {
  const { tree, result } = ctx;
  const st = lstatSync(root, { bigint: true });
  if (st.isSymbolicLink()) {
    tree.add({ path: prefix, type: 'symlink', target: readlinkSync(root) });
    result.sources.delete(treePath(prefix));
  } else if (st.isFile()) {
    const content = fileContent(root, st, ctx);
    tree.add({ path: prefix, type: 'file', mode: normalizeMode('file', fileMode(Number(st.mode))), size: content.size, sha256: content.sha256 });
    result.sources.set(treePath(prefix), { kind: 'file', file: root });
  } else if (st.isDirectory()) {
    if (prefix !== '') {
      tree.add({ path: prefix, type: 'directory', mode: normalizeMode('directory', 0o755) });
      result.sources.delete(treePath(prefix));
    }
    for (const name of readdirSync(root).sort(byteOrder)) walk(path.join(root, name), prefix === '' ? name : `${prefix}/${name}`, ctx);
  }
}

function fileContent(file: string, st: BigIntStats, { cache, result, now }: Walk): { sha256: string; size: number } {
  const key = statKey(file, st);
  const cached = cache.get(key);
  if (cached && BigInt(cached.size) === st.size) return cached;
  const hashedAt = now();
  const content = hashFileSync(file);
  result.hashed++;
  result.hashedBytes += content.size;
  if (cacheableStat(file, st, lstatSync(file, { bigint: true }), hashedAt)) cache.set(key, content);
  return content;
}

export function hashFileSync(file: string): { sha256: string; size: number } {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK);
  const fd = openSync(file, 'r');
  let size = 0;
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      hash.update(buffer.subarray(0, read));
      size += read;
    }
  } finally {
    closeSync(fd);
  }
  return { sha256: hash.digest('hex'), size };
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
