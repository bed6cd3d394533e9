/**
 * The release identity (contract/release-content.ts): what the digest covers, that its encoding
 * stays put (the controller and the agent of different versions must agree on it), and that the
 * controller's digest of what it packs equals the agent's digest of what it unpacks.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentTree, contentDigest, releaseIdFor, type ContentEntry } from '../../contract/release-content.js';
import { isContentReleaseId, isReleaseId, shortSha } from '../../contract/names.js';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease } from '../../controller/pack.js';
import { extractTarball } from '../../agent/release/extract.js';
import { createAppRepo } from '../helpers/git-repo.js';

const sha = (fill: string) => fill.repeat(64);
const base: ContentEntry[] = [
  { path: 'server.js', type: 'file', mode: 0o644, size: 10, sha256: sha('a') },
  { path: 'bin', type: 'directory', mode: 0o755 },
  { path: 'bin/run', type: 'file', mode: 0o755, size: 3, sha256: sha('b') },
  { path: 'current', type: 'symlink', target: 'bin' },
];

describe('content digest', () => {
  it('is pinned: the canonical encoding does not change without a new version', () => {
    // sha256 of the documented encoding, written out by hand:
    // 'slipway-release-content-v1\n["bin","directory","755",null,null,null]\n["bin/run","file","755",3,"bbb…",null]\n'
    // + '["current","symlink",null,null,null,"bin"]\n["server.js","file","644",10,"aaa…",null]\n'
    expect(contentDigest(base)).toBe('d203f3a5e52d6b52e6dd6515ebeb99479754569897e4822c5a3fcd1ac57e3c69');
  });

  it('does not depend on order, the root, manifest.json or how paths are written', () => {
    const shuffled = [...base].reverse().map((e) => ({ ...e, path: `./${e.path}` }));
    expect(contentDigest([...shuffled, { path: '', type: 'directory', mode: 0o700 }, { path: 'manifest.json', type: 'file', mode: 0o644, size: 1, sha256: sha('c') }]))
      .toBe(contentDigest(base));
  });

  it.each([
    ['a file content', { path: 'server.js', type: 'file', mode: 0o644, size: 10, sha256: sha('f') }],
    ['a file mode', { path: 'server.js', type: 'file', mode: 0o755, size: 10, sha256: sha('a') }],
    ['a symlink target', { path: 'current', type: 'symlink', target: 'server.js' }],
    ['a directory mode', { path: 'bin', type: 'directory', mode: 0o700 }],
  ] as Array<[string, ContentEntry]>)('changes with %s', (_label, changed) => {
    expect(contentDigest(base.map((e) => (e.path === changed.path ? changed : e)))).not.toBe(contentDigest(base));
  });

  it('changes with an empty directory or one more file', () => {
    expect(contentDigest([...base, { path: 'tmp', type: 'directory', mode: 0o755 }])).not.toBe(contentDigest(base));
    expect(contentDigest([...base, { path: 'bin/x', type: 'file', mode: 0o644, size: 0, sha256: sha('e') }])).not.toBe(contentDigest(base));
  });

  it('from archive entries: parents implied (755), modes normalised, the last mode of a directory listed twice', () => {
    const tree = new ContentTree();
    tree.add({ path: 'bin/', type: 'directory', mode: 0o700 });
    tree.add({ path: 'server.js', type: 'file', mode: 0o4666, size: 10, sha256: sha('a') });
    tree.add({ path: 'bin/run', type: 'file', mode: 0o2775, size: 3, sha256: sha('b') });
    tree.add({ path: 'bin', type: 'directory', mode: 0o1777 });
    tree.add({ path: 'current', type: 'symlink', target: 'bin' });
    expect(tree.digest()).toBe(contentDigest(base));
    const implied = new ContentTree();
    implied.add({ path: 'a/b/c', type: 'file', mode: 0o644, size: 0, sha256: sha('0') });
    expect(implied.digest()).toBe(contentDigest([
      { path: 'a', type: 'directory', mode: 0o755 }, { path: 'a/b', type: 'directory', mode: 0o755 },
      { path: 'a/b/c', type: 'file', mode: 0o644, size: 0, sha256: sha('0') },
    ]));
  });

  it('names a release <12 hex of the commit>-<12 hex of the digest>', () => {
    const id = releaseIdFor('0123456789ab'.padEnd(40, 'f'), 'fedcba987654'.padEnd(64, '0'));
    expect(id).toBe('0123456789ab-fedcba987654');
    expect(isReleaseId(id) && isContentReleaseId(id)).toBe(true);
    expect(shortSha(id), 'shown whole: two releases of one commit stay apart').toBe(id);
  });

  it('still knows the commit-SHA ids of releases published before, but only content ids name an upload', () => {
    for (const legacy of ['a'.repeat(40), `${'a'.repeat(40)}-dirty-${'b'.repeat(12)}`]) {
      expect(isReleaseId(legacy), legacy).toBe(true);
      expect(isContentReleaseId(legacy), legacy).toBe(false);
    }
    for (const bad of ['0123456789AB-fedcba987654', '0123456789ab-fedcba98765', '0123456789ab_fedcba987654', '0123456789ab-fedcba987654;', '0123456789ab-fedcba987654\n', 'none']) {
      expect(isReleaseId(bad), bad).toBe(false);
    }
  });
});

describe('the controller packs what the agent unpacks', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-content-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('same digest on both sides; hardlinked build output packed as regular files', async () => {
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    await fs.writeFile(path.join(src, 'server.js'), 'console.log(1)\n');
    const repo = await createAppRepo(path.join(dir, 'repo'), src, { '.gitignore': 'build/\n', 'bin/run': '#!/bin/sh\n' });
    const out = path.join(repo.dir, 'build', 'Release');
    await fs.mkdir(path.join(out, 'obj.target'), { recursive: true, mode: 0o775 });
    await fs.writeFile(path.join(out, 'obj.target', 'addon.node'), 'binary\n', { mode: 0o755 });
    await fs.link(path.join(out, 'obj.target', 'addon.node'), path.join(out, 'addon.node'));
    await fs.symlink('Release/addon.node', path.join(repo.dir, 'build', 'addon.node'));

    const sha1 = await repo.head();
    const prepared = await prepareRelease({ repo: repo.dir, treeish: sha1, include: ['build'], mtime: new Date(0) });
    try {
      const manifest = buildManifest({
        app: 'shop', sha: sha1, dirtySnapshot: null, branch: 'main', authorName: 'a', authorEmail: 'a@b', commitTime: new Date().toISOString(),
      }, prepared.contentDigest, '0.1.0');
      const packed = await prepared.seal(manifest);
      const types: string[] = [];
      await tar.t({ file: packed.file, onReadEntry: (entry) => { types.push(`${entry.type} ${entry.path}`); } });
      expect(types.filter((t) => !/^(File|Directory|SymbolicLink) /.test(t)), 'only files, directories and symlinks').toEqual([]);
      expect(types).toEqual(expect.arrayContaining(['File build/Release/addon.node', 'File build/Release/obj.target/addon.node']));

      const unpacked = await extractTarball(packed.file, path.join(dir, 'out'), { maxEntries: 100, maxUnpackedBytes: 1024 * 1024 });
      expect(contentDigest(unpacked.contents)).toBe(prepared.contentDigest);
      expect(manifest.releaseId).toBe(releaseIdFor(sha1, contentDigest(unpacked.contents)));
    } finally {
      await prepared.cleanup();
    }
    const again = await prepareRelease({ repo: repo.dir, treeish: sha1, include: ['build'], mtime: new Date(0) });
    await again.cleanup();
    expect(again.contentDigest, 'packing the same files again gives the same digest').toBe(prepared.contentDigest);
  });
});
