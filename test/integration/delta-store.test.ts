/**
 * Delta uploads (issue 16, part 1) through the real packer (controller/pack.ts) and the real
 * release store (agent/release/store.ts), on the real file system: the controller's question,
 * its bundle, the agent's assembly from kept releases, and every way it must fall back or refuse.
 * A release stored by delta must be the release a full upload stores: same digest, same files,
 * same modes, same links; a kept release must stay byte-identical.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { contentHashes, DELTA_BUNDLE, encodeFileManifest } from '../../contract/file-manifest.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { ReleaseStore, type IngestResult, type ReleaseLimits } from '../../agent/release/store.js';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease, type PreparedRelease } from '../../controller/pack.js';
import { TarWriter } from '../../lib/tar-writer.js';
import { runCommand } from '../../lib/exec.js';
import { contentDigestOfStoredRelease } from '../helpers/release-content.js';
import { gzip } from '../helpers/crafted-tar.js';

const APP = 'shop';
const MiB = 1024 * 1024;
const LIMITS: ReleaseLimits = { maxReleaseBytes: 64 * MiB, maxUnpackedBytes: 256 * MiB, maxEntries: 20_000 };
const FILES = 1_000;
const MTIME = new Date('2024-01-01T00:00:00Z');

type Tree = Record<string, string | { body: string; mode: number } | { link: string }>;

/** Everything of a release dir that makes it that release: path, type, mode, content hash, link, inode. */
interface Snapshot { [rel: string]: { type: string; mode: number; sha256?: string; target?: string; ino: number } }

async function snapshot(dir: string): Promise<Snapshot> {
  const out: Snapshot = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fs.readdir(path.join(dir, rel))).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, child);
      const st = await fs.lstat(full);
      if (st.isSymbolicLink()) out[child] = { type: 'symlink', mode: 0, target: await fs.readlink(full), ino: st.ino };
      else if (st.isDirectory()) {
        out[child] = { type: 'directory', mode: st.mode & 0o7777, ino: 0 };
        await walk(child);
      } else out[child] = { type: 'file', mode: st.mode & 0o7777, sha256: createHash('sha256').update(await fs.readFile(full)).digest('hex'), ino: st.ino };
    }
  };
  await walk('');
  return out;
}

/** A snapshot without inodes: what two copies of one release must share. */
const contentOnly = (snap: Snapshot) => Object.fromEntries(Object.entries(snap).map(([k, v]) => [k, { ...v, ino: 0 }]));

describe('delta uploads: packer + release store on a real file system', () => {
  let root: string;
  let repo: string;
  let store: ReleaseStore;
  let commit: string;
  const prepared: PreparedRelease[] = [];

  /** A tree of FILES small files plus a few of note, changed by `change`. */
  function baseTree(): Tree {
    const tree: Tree = {};
    for (let i = 0; i < FILES; i++) tree[`node_modules/pkg${i % 50}/file${i}.js`] = `module.exports = ${i};\n`;
    tree['server.js'] = 'console.log("v1")\n';
    tree['bin/run'] = { body: '#!/bin/sh\necho run\n', mode: 0o755 };
    tree['doomed.txt'] = 'to be deleted\n';
    tree['config.json'] = '{"a":1}\n';
    tree['tool.sh'] = 'echo tool\n';
    return tree;
  }

  async function writeTree(tree: Tree): Promise<string> {
    const dir = await fs.mkdtemp(path.join(root, 'src-'));
    for (const [rel, value] of Object.entries(tree)) {
      const full = path.join(dir, rel);
      await fs.mkdir(path.dirname(full), { recursive: true });
      if (typeof value === 'string') await fs.writeFile(full, value, { mode: 0o644 });
      else if ('link' in value) await fs.symlink(value.link, full);
      else await fs.writeFile(full, value.body, { mode: value.mode });
    }
    return dir;
  }

  async function pack(tree: Tree): Promise<{ prep: PreparedRelease; manifest: ReleaseManifest }> {
    const builtDir = await writeTree(tree);
    const prep = await prepareRelease({ repo, treeish: commit, include: [], builtDir, mtime: MTIME });
    prepared.push(prep);
    const manifest = buildManifest({
      app: APP, sha: randomBytes(20).toString('hex'), dirtySnapshot: null, branch: 'main', authorName: 'T', authorEmail: 't@example.com',
      commitTime: MTIME.toISOString(),
    }, prep.contentDigest, '0.0.0-test');
    return { prep, manifest };
  }

  async function fullUpload(target: ReleaseStore, release: { prep: PreparedRelease; manifest: ReleaseManifest }): Promise<IngestResult & { sha256: string }> {
    const packed = await release.prep.seal(release.manifest);
    const stored = await target.ingest({ app: APP, releaseId: release.manifest.releaseId, sha256: packed.sha256, source: createReadStream(packed.file), expectedBytes: packed.bytes });
    return { ...stored, sha256: packed.sha256 };
  }

  /** The controller's question, then the bundle of what is missing, then the delta upload. */
  async function deltaUpload(release: { prep: PreparedRelease; manifest: ReleaseManifest }, between?: () => Promise<void>) {
    const missing = await store.missingContents(APP, contentHashes(release.prep.files));
    const bundle = await release.prep.bundle(release.manifest, new Set(missing));
    await between?.();
    const result = await store.ingestDelta({
      app: APP, releaseId: release.manifest.releaseId, sha256: bundle.sha256, source: createReadStream(bundle.file), expectedBytes: bundle.bytes,
    });
    return { result, bundle, missing };
  }

  async function refusal(promise: Promise<unknown>): Promise<SlipwayError> {
    const error = await promise.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    return error as SlipwayError;
  }

  /** Nothing but published releases in releases/<app>, nothing in incoming/. */
  async function expectNoLeftovers(): Promise<void> {
    expect(await fs.readdir(path.join(root, 'home', 'incoming'))).toEqual([]);
    expect((await fs.readdir(path.join(root, 'home', 'releases', APP))).filter((n) => n.startsWith('.'))).toEqual([]);
  }

  let base: { prep: PreparedRelease; manifest: ReleaseManifest };
  let baseSnapshot: Snapshot;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-delta-'));
    repo = path.join(root, 'repo');
    await fs.mkdir(repo);
    for (const argv of [['git', 'init', '-q'], ['git', 'commit', '-q', '--allow-empty', '-m', 'empty']]) {
      const result = await runCommand(argv, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@e' } });
      expect(result.exitCode, result.stderr).toBe(0);
    }
    commit = 'HEAD';
    store = new ReleaseStore({ home: path.join(root, 'home'), limits: LIMITS });
    base = await pack(baseTree());
    await fullUpload(store, base);
    baseSnapshot = await snapshot(store.releaseDir(APP, base.manifest.releaseId));
  }, 120_000);

  afterAll(async () => {
    for (const prep of prepared) await prep.cleanup();
    if (root) {
      await runCommand(['chmod', '-R', 'u+w', root]);
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it(`${FILES} files, one changed: only that file crosses, the release is the one a full upload makes, the base stays byte-identical`, async () => {
    const tree = baseTree();
    tree['server.js'] = `console.log("v2 ${'x'.repeat(10_000)}")\n`;
    const next = await pack(tree);
    const { result, bundle, missing } = await deltaUpload(next);
    expect(missing).toHaveLength(1);
    expect(bundle.objects).toBe(1);
    expect(bundle.objectBytes).toBe(Buffer.byteLength(tree['server.js'] as string));
    // The file (compressed) plus the file manifest: far below the release's size.
    const fileManifestBytes = Buffer.byteLength(encodeFileManifest(next.prep.files));
    expect(bundle.bytes).toBeLessThan(fileManifestBytes);
    expect(result.delta).toEqual({ received: 1, linked: FILES + 4, copied: 0 });

    const dir = store.releaseDir(APP, next.manifest.releaseId);
    expect(await contentDigestOfStoredRelease(dir)).toBe(next.manifest.contentDigest);
    // The same release stored by a full upload elsewhere: the same files, modes and links.
    const other = new ReleaseStore({ home: path.join(root, 'other'), limits: LIMITS });
    const full = await fullUpload(other, next);
    expect(contentOnly(await snapshot(dir))).toEqual(contentOnly(await snapshot(other.releaseDir(APP, next.manifest.releaseId))));
    // What `deploy promote` fetches: packed again from the files, it is the tarball the controller makes.
    expect(await store.artifactSize(APP, next.manifest.releaseId)).toBeNull();
    expect(await store.repackArtifact(APP, next.manifest.releaseId)).toEqual({ bytes: full.bytes, sha256: full.sha256 });
    expect(await store.artifactSize(APP, next.manifest.releaseId)).toBe(full.bytes);

    // Shared files are hardlinks of the base's; the base is exactly as it was.
    const snap = await snapshot(dir);
    expect(snap['node_modules/pkg0/file0.js']!.ino).toBe(baseSnapshot['node_modules/pkg0/file0.js']!.ino);
    expect(snap['server.js']!.ino).not.toBe(baseSnapshot['server.js']!.ino);
    expect(await snapshot(store.releaseDir(APP, base.manifest.releaseId))).toEqual(baseSnapshot);
    await expectNoLeftovers();
  }, 120_000);

  it('a file deleted, a file turned into a symlink, a mode changed: made as listed, the base untouched (a changed mode is a copy)', async () => {
    const tree = baseTree();
    delete tree['doomed.txt'];
    tree['config.json'] = { link: 'server.js' };
    tree['tool.sh'] = { body: 'echo tool\n', mode: 0o755 };
    const next = await pack(tree);
    const { result, bundle } = await deltaUpload(next);
    expect(bundle.objects).toBe(0);
    expect(result.delta).toMatchObject({ received: 0, copied: 1 });
    const dir = store.releaseDir(APP, next.manifest.releaseId);
    const snap = await snapshot(dir);
    expect(snap['doomed.txt']).toBeUndefined();
    expect(snap['config.json']).toMatchObject({ type: 'symlink', target: 'server.js' });
    expect(snap['tool.sh']).toMatchObject({ type: 'file', mode: 0o555, sha256: baseSnapshot['tool.sh']!.sha256 });
    expect(snap['tool.sh']!.ino).not.toBe(baseSnapshot['tool.sh']!.ino);
    expect(await contentDigestOfStoredRelease(dir)).toBe(next.manifest.contentDigest);
    expect(await snapshot(store.releaseDir(APP, base.manifest.releaseId))).toEqual(baseSnapshot);
  }, 120_000);

  it('a base release removed between the question and the upload: refused as delta_base_missing, nothing stored; the full upload then works', async () => {
    const onlyHere = randomBytes(4096).toString('hex');
    const donor = await pack({ ...baseTree(), 'only-here.bin': onlyHere });
    await fullUpload(store, donor);
    // The next release shares only-here.bin's content with the donor alone.
    const next = await pack({ ...baseTree(), 'only-here.bin': onlyHere, 'new.txt': 'new\n' });
    const error = await refusal(deltaUpload(next, () => store.remove(APP, donor.manifest.releaseId)));
    expect(error.code).toBe('delta_base_missing');
    expect(error.status).toBe(409);
    expect(error.message).toContain('only-here.bin');
    expect(store.has(APP, next.manifest.releaseId)).toBe(false);
    await expectNoLeftovers();
    await fullUpload(store, next);
    expect(await contentDigestOfStoredRelease(store.releaseDir(APP, next.manifest.releaseId))).toBe(next.manifest.contentDigest);
    // Another host may still want a delta of it after the tarball was sealed (fleets).
    await expect(next.prep.bundle(next.manifest, new Set(contentHashes(next.prep.files)))).resolves.toMatchObject({ objects: contentHashes(next.prep.files).length });
  }, 120_000);

  it('a corrupted base file: detected as delta_base_mismatch, nothing stored, never a release', async () => {
    const unique = randomBytes(2048).toString('hex');
    const holder = await pack({ ...baseTree(), 'unique.txt': unique });
    await fullUpload(store, holder);
    const victim = path.join(store.releaseDir(APP, holder.manifest.releaseId), 'unique.txt');
    // Same size, other bytes: only a hash can tell.
    await fs.writeFile(victim, `${unique.slice(0, -1)}${unique.endsWith('0') ? '1' : '0'}`);
    const next = await pack({ ...baseTree(), 'unique.txt': unique, 'extra.txt': 'extra\n' });
    const missing = await store.missingContents(APP, contentHashes(next.prep.files));
    expect(missing, 'the host says it has unique.txt').toEqual([createHash('sha256').update('extra\n').digest('hex')]);
    const error = await refusal(deltaUpload(next));
    expect(error.code).toBe('delta_base_mismatch');
    expect(error.message).toContain('unique.txt');
    expect(store.has(APP, next.manifest.releaseId)).toBe(false);
    await expectNoLeftovers();
  }, 120_000);

  it('a trusted base file corrupted with its mtime put back (utimes): its ctime moved, so it is hashed, detected, never a release', async () => {
    const unique = randomBytes(2048).toString('hex');
    const holder = await pack({ ...baseTree(), 'trusted.txt': unique });
    await fullUpload(store, holder);
    // The first delta hashes the linked file and records its inode; the second takes it on that record.
    const first = await pack({ ...baseTree(), 'trusted.txt': unique, 'first.txt': 'first\n' });
    await deltaUpload(first);
    const second = await pack({ ...baseTree(), 'trusted.txt': unique, 'second.txt': 'second\n' });
    await deltaUpload(second);
    const victim = path.join(store.releaseDir(APP, second.manifest.releaseId), 'trusted.txt');
    const st = await fs.stat(victim, { bigint: true });
    const trusted = JSON.parse(await fs.readFile(path.join(root, 'home', 'index', APP, 'trusted.json'), 'utf8')) as { records: Record<string, { ctimeNs: string; mtimeNs: string }> };
    expect(trusted.records[`${st.dev}:${st.ino}`], 'the shared inode is on record as lstat sees it now').toMatchObject({ ctimeNs: String(st.ctimeNs), mtimeNs: String(st.mtimeNs) });

    // Same size, other bytes, and the old mtime put back: only ctime tells.
    await fs.writeFile(victim, `${unique.slice(0, -1)}${unique.endsWith('0') ? '1' : '0'}`);
    await fs.utimes(victim, Number(st.atimeMs) / 1000, Number(st.mtimeMs) / 1000);
    const after = await fs.stat(victim, { bigint: true });
    expect(after.mtimeNs, 'mtime restored exactly').toBe(st.mtimeNs);
    expect(after.size).toBe(st.size);
    const third = await pack({ ...baseTree(), 'trusted.txt': unique, 'third.txt': 'third\n' });
    const error = await refusal(deltaUpload(third));
    expect(error.code).toBe('delta_base_mismatch');
    expect(error.message).toContain('trusted.txt');
    expect(store.has(APP, third.manifest.releaseId)).toBe(false);
    await expectNoLeftovers();
    // The full upload the controller then sends is the release, with its own good copy.
    await fullUpload(store, third);
    const good = path.join(store.releaseDir(APP, third.manifest.releaseId), 'trusted.txt');
    expect(await fs.readFile(good, 'utf8')).toBe(unique);
  }, 120_000);

  it('two releases sharing most files, uploaded at once: both assembled and verified', async () => {
    const a = { ...baseTree(), 'a.txt': 'a\n' };
    const b = { ...baseTree(), 'b.txt': 'b\n' };
    const [ra, rb] = await Promise.all([pack(a), pack(b)]);
    const [da, db] = await Promise.all([deltaUpload(ra!), deltaUpload(rb!)]);
    expect(da.bundle.objects).toBe(1);
    expect(db.bundle.objects).toBe(1);
    for (const r of [ra!, rb!]) expect(await contentDigestOfStoredRelease(store.releaseDir(APP, r.manifest.releaseId))).toBe(r.manifest.contentDigest);
    await expectNoLeftovers();
  }, 120_000);

  it('removing the base release never changes a kept release that shares its files', async () => {
    const tree = { ...baseTree(), 'keep.txt': 'keep\n' };
    const kept = await pack(tree);
    await deltaUpload(kept);
    const dir = store.releaseDir(APP, kept.manifest.releaseId);
    const before = await snapshot(dir);
    await store.remove(APP, base.manifest.releaseId);
    expect(store.has(APP, base.manifest.releaseId)).toBe(false);
    expect(await snapshot(dir)).toEqual(before);
    expect(await contentDigestOfStoredRelease(dir)).toBe(kept.manifest.contentDigest);
    // Its files are now the host's only copies, and still offered as a base.
    expect(await store.missingContents(APP, contentHashes(kept.prep.files))).toEqual([]);
  }, 120_000);

  it('a bundle whose file manifest escapes the release, or whose content is not its name: refused, nothing stored', async () => {
    const manifest = buildManifest({
      app: APP, sha: randomBytes(20).toString('hex'), dirtySnapshot: null, branch: null, authorName: 'T', authorEmail: 't@e', commitTime: MTIME.toISOString(),
    }, 'a'.repeat(64), '0.0.0-test');
    const craft = async (files: string, objects: Record<string, string>) => {
      const dir = await fs.mkdtemp(path.join(root, 'craft-'));
      const writer = TarWriter.create(path.join(dir, 'b.tar'), MTIME);
      writer.bytes(DELTA_BUNDLE.files, 0o644, Buffer.from(files));
      for (const [name, body] of Object.entries(objects)) writer.bytes(`objects/${name}`, 0o644, Buffer.from(body));
      writer.bytes(DELTA_BUNDLE.manifest, 0o644, Buffer.from(JSON.stringify(manifest)));
      writer.close();
      const body = gzip(await fs.readFile(path.join(dir, 'b.tar')));
      return store.ingestDelta({
        app: APP, releaseId: manifest.releaseId, sha256: createHash('sha256').update(body).digest('hex'), source: Readable.from([body]), expectedBytes: body.length,
      });
    };
    const escape = await refusal(craft(encodeFileManifest([{ path: '../evil', type: 'file', mode: 0o644, size: 1, sha256: 'b'.repeat(64) }]), {}));
    expect(escape.code).toBe('bad_tarball');
    const misnamed = await refusal(craft(encodeFileManifest([]), { ['c'.repeat(64)]: 'not c' }));
    expect(misnamed.code).toBe('delta_bundle_invalid');
    const outside = await refusal(craft(encodeFileManifest([{ path: 'x', type: 'symlink', target: '/etc/passwd' }]), {}));
    expect(outside.code).toBe('bad_tarball');
    expect(store.has(APP, manifest.releaseId)).toBe(false);
    await expectNoLeftovers();
  }, 60_000);
});
