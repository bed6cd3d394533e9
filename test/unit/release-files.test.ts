/**
 * The file manifest from `git ls-tree` and the content hash cache (controller/content/*): the same
 * entries and digest as packing `git archive` and hashing it back, a second push reads no
 * unchanged file, a cache that lies is caught before anything is sent, and the pure parts.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease } from '../../controller/pack.js';
import { tarFileManifest } from '../../controller/tar-contents.js';
import { archiveIsPlainBlobs, parseLsTree } from '../../controller/content/git-tree.js';
import {
  HashCache, blobKey, cacheableStat, decodeHashCache, encodeHashCache, hashCacheFile, pruneRows, statKey, RACY_MS,
} from '../../controller/content/hash-cache.js';
import { listReleaseFiles } from '../../controller/content/release-files.js';
import { runCommand } from '../../lib/exec.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-release-files-')); });
afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

const LONG = `${'deep/'.repeat(25)}file-with-a-name-past-the-ustar-limit.txt`;
const PAST = new Date(Date.now() - 60_000);

async function makeRepo(): Promise<{ repo: AppRepo; sha: string }> {
  const src = path.join(dir, 'src');
  await fs.mkdir(path.join(src, 'lib', 'sub'), { recursive: true });
  await fs.writeFile(path.join(src, 'server.js'), 'console.log(1)\n');
  await fs.writeFile(path.join(src, 'lib', 'sub', 'same.js'), 'same\n');
  await fs.writeFile(path.join(src, 'lib', 'same-too.js'), 'same\n');
  await fs.symlink('sub/same.js', path.join(src, 'lib', 'link.js'));
  const repo = await createAppRepo(path.join(dir, 'repo'), src, { '.gitignore': 'dist/\nout/\n', 'bin/run': '#!/bin/sh\n', [LONG]: 'long\n', 'ünïcode näme.txt': 'u\n' });
  await runCommand(['chmod', '+x', 'bin/run'], { cwd: repo.dir });
  const sha = await repo.commit({ 'server.js': 'console.log(2)\n', 'empty.txt': '' }, 'second');
  // Build output (not in git): a tree with a symlink and an executable, and a nested include.
  await fs.mkdir(path.join(repo.dir, 'dist', 'c'), { recursive: true });
  await fs.writeFile(path.join(repo.dir, 'dist', 'a.js'), '// a\n');
  await fs.writeFile(path.join(repo.dir, 'dist', 'c', 'tool'), '#!/bin/sh\n', { mode: 0o775 });
  await fs.symlink('a.js', path.join(repo.dir, 'dist', 'link'));
  await fs.mkdir(path.join(repo.dir, 'out', 'deep'), { recursive: true });
  await fs.writeFile(path.join(repo.dir, 'out', 'deep', 'x.js'), 'same\n');
  for (const file of ['dist/a.js', 'dist/c/tool', 'out/deep/x.js']) await fs.utimes(path.join(repo.dir, file), PAST, PAST);
  return { repo, sha };
}

function manifestFor(sha: string, contentDigest: string) {
  return buildManifest({ app: 'shop', sha, dirtySnapshot: null, branch: 'main', authorName: 'a', authorEmail: 'a@b', commitTime: new Date(0).toISOString() }, contentDigest, '0.1.0');
}

describe('file manifest from git ls-tree and the hash cache', () => {
  it('gives the entries and digest of packing git archive, and a tarball that hashes back to them', async () => {
    const { repo, sha } = await makeRepo();
    const include = ['dist', 'out/deep'];
    const cacheFile = path.join(dir, 'cache', 'content-hashes.json');
    const archived = await prepareRelease({ repo: repo.dir, treeish: sha, include, mtime: new Date(0), packAtOnce: true });
    const listed = await prepareRelease({ repo: repo.dir, treeish: sha, include, mtime: new Date(0), hashCache: cacheFile });
    const again = await prepareRelease({ repo: repo.dir, treeish: sha, include, mtime: new Date(0), hashCache: cacheFile });
    try {
      expect(listed.files).toEqual(archived.files);
      expect(listed.contentDigest).toBe(archived.contentDigest);
      expect(again.contentDigest, 'from the cache').toBe(archived.contentDigest);
      const packed = await again.seal(manifestFor(sha, again.contentDigest));
      const back = await tarFileManifest(packed.file);
      expect(back.digest).toBe(archived.contentDigest);
    } finally {
      await Promise.all([archived.cleanup(), listed.cleanup(), again.cleanup()]);
    }
  });

  it('reads no unchanged file the second time: committed ones by blob id, build output by stat', async () => {
    const { repo, sha } = await makeRepo();
    const cacheFile = path.join(dir, 'content-hashes.json');
    // Hashed "later": the build output was written (ctime) just now, within the racy window.
    const now = () => Date.now() + 10_000;
    const first = await listReleaseFiles({ repo: repo.dir, treeish: sha, include: ['dist'], cache: await HashCache.load(cacheFile), now });
    expect(first!.hashed).toBeGreaterThan(5);
    const second = await listReleaseFiles({ repo: repo.dir, treeish: sha, include: ['dist'], cache: await HashCache.load(cacheFile), now });
    expect(second!.hashed).toBe(0);
    expect(second!.digest).toBe(first!.digest);

    // One committed file and one build output file change: those two are read.
    const sha2 = await repo.commit({ 'server.js': 'console.log(3)\n' }, 'third');
    await fs.writeFile(path.join(repo.dir, 'dist', 'a.js'), '// A\n');
    const third = await listReleaseFiles({ repo: repo.dir, treeish: sha2, include: ['dist'], cache: await HashCache.load(cacheFile), now });
    expect(third!.hashed).toBe(2);
    // Without the clock moved on, a file written within the racy window is hashed each time.
    await fs.writeFile(path.join(repo.dir, 'dist', 'b.js'), '// b\n');
    const racy = await listReleaseFiles({ repo: repo.dir, treeish: sha2, include: ['dist'], cache: await HashCache.load(cacheFile) });
    const racyAgain = await listReleaseFiles({ repo: repo.dir, treeish: sha2, include: ['dist'], cache: await HashCache.load(cacheFile) });
    expect(racyAgain!.hashed).toBe(1);
    expect(racyAgain!.digest).toBe(racy!.digest);
    expect(third!.digest).not.toBe(first!.digest);
  });

  it('packs git archive instead when .gitattributes could change what it writes, with the same digest either way', async () => {
    const { repo } = await makeRepo();
    const sha = await repo.commit({ '.gitattributes': '*.txt export-ignore\n' }, 'attributes');
    expect(await listReleaseFiles({ repo: repo.dir, treeish: sha, include: [], cache: await HashCache.load(null) })).toBeNull();
    const prepared = await prepareRelease({ repo: repo.dir, treeish: sha, include: [], mtime: new Date(0), hashCache: null });
    const archived = await prepareRelease({ repo: repo.dir, treeish: sha, include: [], mtime: new Date(0), packAtOnce: true });
    try {
      expect(prepared.contentDigest).toBe(archived.contentDigest);
      expect(prepared.files.some((e) => e.path === 'empty.txt'), 'export-ignore applied').toBe(false);
    } finally {
      await Promise.all([prepared.cleanup(), archived.cleanup()]);
    }
  });

  it('refuses to seal a tarball whose bytes are not the manifest (a cache entry that lies)', async () => {
    const { repo, sha } = await makeRepo();
    const cacheFile = path.join(dir, 'content-hashes.json');
    const cache = await HashCache.load(cacheFile);
    const oid = (await runCommand(['git', 'rev-parse', `${sha}:server.js`], { cwd: repo.dir })).stdout.trim();
    cache.set(blobKey(oid), { sha256: 'f'.repeat(64), size: 'console.log(2)\n'.length });
    await cache.save();
    const prepared = await prepareRelease({ repo: repo.dir, treeish: sha, include: [], mtime: new Date(0), hashCache: cacheFile });
    try {
      await expect(prepared.seal(manifestFor(sha, prepared.contentDigest))).rejects.toMatchObject({ code: 'release_content_changed' });
      await expect(prepared.bundle(manifestFor(sha, prepared.contentDigest), new Set(['f'.repeat(64)]))).rejects.toMatchObject({ code: 'release_content_changed' });
    } finally {
      await prepared.cleanup();
    }
  });
});

describe('pure parts', () => {
  it('parses ls-tree -z output, paths with tabs and newlines included', () => {
    const out = '040000 tree aaa\tlib\u0000100755 blob bbb\tlib/run\u0000120000 blob ccc\tlib/a\tb\nc\u0000160000 commit ddd\tmod\u0000';
    expect(parseLsTree(out)).toEqual([
      { mode: '040000', type: 'tree', oid: 'aaa', path: 'lib' },
      { mode: '100755', type: 'blob', oid: 'bbb', path: 'lib/run' },
      { mode: '120000', type: 'blob', oid: 'ccc', path: 'lib/a\tb\nc' },
      { mode: '160000', type: 'commit', oid: 'ddd', path: 'mod' },
    ]);
    expect(() => parseLsTree('garbage\u0000')).toThrow(/ls-tree/);
  });

  it('uses the blobs as they are only without attributes, autocrlf or undecodable names', () => {
    const entries = [{ mode: '100644', type: 'blob' as const, oid: 'a', path: 'x.txt' }];
    const unset = 'x.txt\u0000text\u0000unspecified\u0000x.txt\u0000filter\u0000unspecified\u0000';
    expect(archiveIsPlainBlobs(entries, unset, '')).toBe(true);
    expect(archiveIsPlainBlobs(entries, unset, 'false\n')).toBe(true);
    expect(archiveIsPlainBlobs(entries, unset, 'true\n')).toBe(false);
    expect(archiveIsPlainBlobs(entries, 'x.txt\u0000filter\u0000lfs\u0000', '')).toBe(false);
    expect(archiveIsPlainBlobs([...entries, { mode: '100644', type: 'blob', oid: 'b', path: 'a/.gitattributes' }], unset, '')).toBe(false);
    expect(archiveIsPlainBlobs([{ ...entries[0]!, path: 'bad\uFFFD' }], unset, '')).toBe(false);
  });

  it('keys a file by path, device, inode, size, mtime and ctime; caches it only when stable and not racy', () => {
    const st = { dev: 1n, ino: 2n, size: 3n, mtimeNs: 4_000_000_000n, ctimeNs: 5_000_000_000n };
    expect(statKey('/a', st)).toBe('stat:1:2:3:4000000000:5000000000:/a');
    for (const field of ['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'] as const) {
      expect(statKey('/a', { ...st, [field]: st[field] + 1n })).not.toBe(statKey('/a', st));
    }
    expect(statKey('/b', st)).not.toBe(statKey('/a', st));
    expect(cacheableStat('/a', st, st, 5_000 + RACY_MS)).toBe(true);
    expect(cacheableStat('/a', st, st, 5_000 + RACY_MS - 1), 'written within the racy window').toBe(false);
    expect(cacheableStat('/a', st, { ...st, ctimeNs: 6_000_000_000n }, 60_000), 'changed while read').toBe(false);
  });

  it('round-trips the cache file, drops it whole when tampered with, prunes the least recently used', () => {
    const rows = new Map<string, [string, number, number]>([['blob:a', ['a'.repeat(64), 1, 10]], ['blob:b', ['b'.repeat(64), 2, 20]]]);
    const text = encodeHashCache(rows);
    expect(decodeHashCache(text)).toEqual(rows);
    expect(decodeHashCache(text.replace('"a', '"c')).size).toBe(0);
    expect(decodeHashCache(text.replace('aaaa', 'aaab')).size).toBe(0);
    expect(decodeHashCache('{').size).toBe(0);
    expect([...pruneRows(rows, 1).keys()]).toEqual(['blob:b']);
  });

  it('lives in the user cache dir unless told otherwise', () => {
    expect(hashCacheFile({}, '/home/u')).toBe('/home/u/.cache/slipway/content-hashes.json');
    expect(hashCacheFile({ XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/x/slipway/content-hashes.json');
    expect(hashCacheFile({ SLIPWAY_CONTENT_CACHE: 'off' }, '/home/u')).toBeNull();
  });
});
