/**
 * The release store against the real filesystem, real gzip and real node-tar. Every hostile
 * archive is built byte by byte (test/helpers/crafted-tar.ts), sent through the same path a
 * push takes (upload → verify → unpack → publish), and must leave the box exactly as it was:
 * no release, no temp dir, no .part file, the live release untouched, and nothing written
 * outside the extraction dir at any moment (a canary dir is watched with inotify throughout).
 */
import { watchDir } from '../helpers/box.js';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, watch } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { runCommand } from '../../lib/exec.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { extractTarball, startExtraction } from '../../agent/release/extract.js';
import { stopUnpackThread } from '../../agent/release/extract-thread.js';
import { ReleaseStore, type ReleaseLimits } from '../../agent/release/store.js';
import { TreeMismatch, TreeWriter, type EntryBody } from '../../agent/release/tree-writer.js';
import { receiveUpload } from '../../agent/release/upload.js';
import { entryBlocks, gzip, gzipBomb, gzipBombExpandedBytes, paxEntry, tarball, type CraftEntry } from '../helpers/crafted-tar.js';
import { waitFor } from '../helpers/wait.js';
import { contentDigestOfEntries, contentDigestOfTree, randomCommit, releaseManifest, sealRelease } from '../helpers/release-content.js';
import { releaseIdFor } from '../../contract/release-content.js';

const APP = 'shop';
const MiB = 1024 * 1024;
const LIMITS: ReleaseLimits = { maxReleaseBytes: 4 * MiB, maxUnpackedBytes: 8 * MiB, maxEntries: 200 };

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** The content digest of goodEntries' files. */
const GOOD_DIGEST = contentDigestOfEntries(goodFiles());
/** The id of goodEntries' files packed from a random commit. */
const newReleaseId = (): string => releaseIdFor(randomCommit(), GOOD_DIGEST);

function manifestFor(app: string, releaseId: string, contentDigest = GOOD_DIGEST): ReleaseManifest {
  return { ...releaseManifest(app, releaseId.slice(0, 12).padEnd(40, '0'), contentDigest), releaseId };
}

/** goodEntries plus `extra`, under the id of those files (a release the store accepts). */
function goodRelease(extra: CraftEntry[]): { releaseId: string; entries: CraftEntry[] } {
  return sealRelease(APP, [...goodEntries(APP, newReleaseId()), ...extra]);
}

/** A realistic release, including the modes and links a careless build might produce. */
function goodEntries(app: string, releaseId: string): CraftEntry[] {
  return [
    { path: './', type: 'dir', mode: 0o755 },
    { path: './manifest.json', body: JSON.stringify(manifestFor(app, releaseId)) },
    ...goodFiles(),
  ];
}

function goodFiles(): CraftEntry[] {
  return [
    { path: './server.js', body: 'console.log("hi")\n', mode: 0o4755, uid: 4242, gid: 4242 },
    { path: './config.json', body: '{"a":1}\n', mode: 0o666 },
    { path: './public/', type: 'dir', mode: 0o777 },
    { path: './public/tmp/', type: 'dir', mode: 0o1777 },
    { path: './assets/v1/app.css', body: 'body{}\n' },
    { path: './public/current', type: 'symlink', linkpath: '../assets/v1' },
    { path: './lib/util.js', body: 'export {}\n', mode: 0o600 },
    { path: './lib/alias.js', type: 'symlink', linkpath: 'util.js' },
    { path: './bin/run', body: '#!/bin/sh\necho run\n', mode: 0o2775 },
  ];
}

/** Feeds `data` in 64 KiB chunks, like a socket would. */
function sourceOf(data: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
  })());
}

async function caught(promise: Promise<unknown>): Promise<SlipwayError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SlipwayError) return error;
    throw new Error(`expected a SlipwayError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected the promise to be rejected');
}

/** Every path under `dir` with its type, mode, size and (for links) target. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const child = path.join(rel, name);
      const st = await lstat(path.join(dir, child));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[child] = `link ${await readlink(path.join(dir, child))}`;
      else if (st.isDirectory()) { out[child] = `dir ${mode}`; await walk(child); } else out[child] = `file ${mode} ${st.size} ${st.mtimeMs}`;
    }
  };
  await walk('');
  return out;
}

async function du(dir: string): Promise<number> {
  const result = await runCommand(['du', '-s', '-B1', dir], { timeoutMs: 30_000 });
  expect(result.exitCode, result.stderr).toBe(0);
  return Number(result.stdout.split('\t')[0]);
}

let root: string;
let home: string;
let canary: string;
let store: ReleaseStore;
let liveId: string;
let liveSnapshot: Record<string, string>;

async function freshBox(limits: ReleaseLimits = LIMITS): Promise<void> {
  root = await mkdtemp(path.join(os.tmpdir(), 'slipway-release-'));
  home = path.join(root, 'home');
  canary = path.join(root, 'canary');
  await mkdir(canary);
  for (const dir of ['incoming', 'releases', `releases/${APP}`]) await mkdir(path.join(home, dir), { recursive: true, mode: 0o700 });
  // Every upload through the unpacking thread, the path of large releases; the main thread's path
  // (small ones) is the one startExtraction and extractTarball take in the tests that call them.
  store = new ReleaseStore({ home, limits, threadFromBytes: 0 });
  // The release that is "live": every failure below must leave it exactly as it is.
  liveId = newReleaseId();
  const archive = gzip(tarball(goodEntries(APP, liveId)));
  await store.ingest({ app: APP, releaseId: liveId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });
  liveSnapshot = await snapshot(store.releaseDir(APP, liveId));
}

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface Refusal {
  code: string;
  status: number;
  message?: RegExp;
  /** Only refusals after a successful unpack (manifest problems) may create a temp dir at all. */
  unpacks?: boolean;
}

/**
 * Ingests `archive` as a new release and checks that it is refused with `expected` and that
 * the box is exactly as before: same tree under the test root (home, canary, everything),
 * no event at any moment in the canary dir, nothing in incoming/, no temp dir, live release intact.
 */
async function expectRefusedCleanly(
  archive: Buffer, expected: Refusal, options: { releaseId?: string; sha?: string; expectedBytes?: number } = {},
): Promise<SlipwayError> {
  const releaseId = options.releaseId ?? newReleaseId();
  const before = await snapshot(root);
  const canaryWatch = watchDir(canary);
  const rootWatch = watchDir(root);
  const appWatch = watchDir(path.join(home, 'releases', APP));
  try {
    const error = await caught(store.ingest({
      app: APP, releaseId, sha256: options.sha ?? sha256(archive), source: sourceOf(archive), expectedBytes: options.expectedBytes ?? archive.length,
    }));
    expect({ code: error.code, status: error.status }, error.message).toEqual({ code: expected.code, status: expected.status });
    if (expected.message) expect(error.message).toMatch(expected.message);
    expect(error.hint, 'every refusal says what to do next').toBeTruthy();
    expect(await canaryWatch.settle(), 'nothing may appear in the canary dir, even briefly').toEqual([]);
    expect(await rootWatch.settle(), 'nothing may appear beside home/').toEqual([]);
    const appEvents = await appWatch.settle();
    if (!expected.unpacks) expect(appEvents, 'a refused archive is refused before anything is written').toEqual([]);
    // Unpacking happens beside the final place; the release's own name never shows up.
    expect(appEvents.filter((e) => !/ \.tmp-[0-9a-f]+(\.discard-[0-9a-f]+)?$/.test(e))).toEqual([]);
    expect(await snapshot(root)).toEqual(before);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect((await readdir(path.join(home, 'releases', APP))).sort()).toEqual([liveId]);
    expect(store.has(APP, releaseId)).toBe(false);
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
    return error;
  } finally {
    canaryWatch.close();
    rootWatch.close();
    appWatch.close();
  }
}

/** From `releases/shop/.tmp-*` to the canary dir. */
const UP_TO_ROOT = '../../../..';

describe('ReleaseStore: a good release', () => {
  beforeEach(() => freshBox());

  it('ingests with modes normalised, owner forced and relative symlinks kept', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(goodEntries(APP, releaseId)));
    const result = await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });

    const dir = store.releaseDir(APP, releaseId);
    expect(result.dir).toBe(dir);
    expect(path.isAbsolute(dir)).toBe(true);
    expect(result.bytes).toBe(archive.length);
    expect(result.manifest).toEqual(manifestFor(APP, releaseId));
    expect(store.has(APP, releaseId)).toBe(true);
    const tree = await snapshot(dir);
    const modes = Object.fromEntries(Object.entries(tree).map(([p, v]) => [p, v.split(' ').slice(0, 2).join(' ')]));
    expect(modes).toEqual({
      'assets': 'dir 555',
      'assets/v1': 'dir 555',
      'assets/v1/app.css': 'file 444',
      'bin': 'dir 555',
      'bin/run': 'file 555', // setgid dropped
      'config.json': 'file 444', // world write dropped
      'lib': 'dir 555',
      'lib/alias.js': 'link util.js',
      'lib/util.js': 'file 400',
      'manifest.json': 'file 444',
      'public': 'dir 555', // 0777 -> group/world write dropped
      'public/current': 'link ../assets/v1',
      'public/tmp': 'dir 555', // sticky and world write dropped
      'server.js': 'file 555', // setuid dropped
    });
    // Read-only to its owner too (the agent's user, which the apps run as).
    expect((await stat(dir)).mode & 0o7777).toBe(0o555);
    // The archive claims uid 4242; node-tar would keep it when run as root.
    expect((await stat(path.join(dir, 'server.js'))).uid).toBe(process.getuid!());
    expect(await readFile(path.join(dir, 'public/current/app.css'), 'utf8')).toBe('body{}\n');
    expect(await readFile(path.join(dir, 'bin/run'), 'utf8')).toBe('#!/bin/sh\necho run\n');
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect((await readdir(path.join(home, 'releases', APP))).sort()).toEqual([liveId, releaseId].sort());
    expect(await store.list(APP)).toEqual([liveId, releaseId].sort());
    expect(await store.readManifest(APP, releaseId)).toEqual(manifestFor(APP, releaseId));
  });

  it('keeps the verified tarball beside the release (0600, the bytes uploaded), and removes it with the release', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(goodEntries(APP, releaseId)));
    await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });
    const kept = store.artifactPath(APP, releaseId);
    expect(kept).toBe(path.join(home, 'artifacts', APP, `${releaseId}.tar.gz`));
    expect(sha256(await readFile(kept))).toBe(sha256(archive));
    expect((await stat(kept)).mode & 0o777).toBe(0o600);
    expect(await store.artifactSize(APP, releaseId)).toBe(archive.length);
    expect(await store.artifactIds(APP)).toContain(releaseId);
    await store.remove(APP, releaseId);
    expect(await store.artifactSize(APP, releaseId)).toBeNull();
    expect(await store.artifactIds(APP)).not.toContain(releaseId);
  });

  it('publishes the release dir only once everything succeeded', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(goodEntries(APP, releaseId)));
    const source = new PassThrough();
    const ingest = store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length });
    source.write(archive.subarray(0, 100));
    const part = path.join(home, 'incoming', `${sha256(archive)}.part`);
    await waitFor(async () => (await stat(part).catch(() => undefined))?.size === 100, { description: 'the first bytes in the .part file' });
    expect((await stat(part)).mode & 0o777).toBe(0o600);
    expect(store.has(APP, releaseId)).toBe(false);
    expect(existsSync(store.releaseDir(APP, releaseId))).toBe(false);
    source.end(archive.subarray(100));
    await ingest;
    expect(store.has(APP, releaseId)).toBe(true);
    expect(existsSync(part)).toBe(false);
  });

  it('accepts archives made by GNU tar and by node-tar, with long paths, plain or gzipped', async () => {
    const src = path.join(root, 'src');
    const deep = path.join(src, 'node_modules', 'a'.repeat(60), 'b'.repeat(60), 'c'.repeat(60));
    const made: Array<[string, Buffer]> = [];
    for (const [label, build] of [
      ['gnu tar, gzip', async (out: string) => runCommand(['tar', '-czf', out, '-C', src, '.'], { timeoutMs: 30_000 })],
      ['gnu tar, plain', async (out: string) => runCommand(['tar', '-cf', out, '-C', src, '.'], { timeoutMs: 30_000 })],
      ['node-tar, gzip', async (out: string) => tar.c({ gzip: true, file: out, cwd: src, portable: true }, ['.'])],
      ['pax (posix) via gnu tar', async (out: string) => runCommand(['tar', '--format=posix', '-czf', out, '-C', src, '.'], { timeoutMs: 30_000 })],
    ] as const) {
      await rm(src, { recursive: true, force: true });
      await mkdir(deep, { recursive: true });
      await writeFile(path.join(deep, 'index.js'), 'module.exports = 1\n');
      const manifest = releaseManifest(APP, randomCommit(), await contentDigestOfTree(src));
      const { releaseId } = manifest;
      await writeFile(path.join(src, 'manifest.json'), JSON.stringify(manifest));
      const out = path.join(root, `${made.length}.tar`);
      await build(out);
      made.push([label, await readFile(out)]);
      const archive = made.at(-1)![1];
      const result = await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });
      const rel = path.relative(src, path.join(deep, 'index.js'));
      expect(rel.length, label).toBeGreaterThan(100);
      expect(await readFile(path.join(result.dir, rel), 'utf8'), label).toBe('module.exports = 1\n');
    }
  });

  it('accepts a pax global header (as git archive writes) and ignores padding after the end marker', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball([paxEntry({ comment: releaseId }, true), ...goodEntries(APP, releaseId)], { trailing: Buffer.alloc(9 * 1024) }));
    const result = await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive) });
    expect(result.manifest.releaseId).toBe(releaseId);
  });

  it('never extracts what hides after the end-of-archive marker', async () => {
    const releaseId = newReleaseId();
    const hidden = entryBlocks({ path: 'evil.sh', body: 'rm -rf /\n', mode: 0o755 });
    const archive = gzip(tarball(goodEntries(APP, releaseId), { trailing: hidden }));
    const result = await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive) });
    expect(existsSync(path.join(result.dir, 'evil.sh'))).toBe(false);
    expect(existsSync(path.join(result.dir, 'server.js'))).toBe(true);
  });
});

describe('ReleaseStore: hostile archives (RELIABILITY cases 1-4, 8)', () => {
  beforeEach(() => freshBox());
  const good = (): CraftEntry[] => goodEntries(APP, newReleaseId());

  it.each([
    ['../../etc/cron.d/x'],
    [`${UP_TO_ROOT}/canary/cron`],
    ['ok/../../x'],
  ])('case 1: refuses the entry %s', async (entryPath) => {
    const error = await expectRefusedCleanly(gzip(tarball([...good(), { path: entryPath, body: '* * * * * root sh\n' }])), {
      code: 'bad_tarball', status: 400, message: /'\.\.' segment/,
    });
    expect(error.message).toContain(JSON.stringify(entryPath));
  });

  it('case 1: refuses a `..` entry placed first, before anything else was written', async () => {
    await expectRefusedCleanly(gzip(tarball([{ path: `${UP_TO_ROOT}/canary/first`, body: 'x' }, ...good()])), {
      code: 'bad_tarball', status: 400, message: /canary\/first/,
    });
  });

  it.each([
    ['/etc/passwd'],
    ['////tmp/slipway-never-written'],
    ['//CANARY/abs'],
  ])('case 2: refuses the absolute entry %s instead of making it relative', async (raw) => {
    const entryPath = raw.replace('/CANARY', canary);
    const passwd = await readFile('/etc/passwd');
    const error = await expectRefusedCleanly(gzip(tarball([...good(), { path: entryPath, body: 'root::0:0::/:/bin/sh\n' }])), {
      code: 'bad_tarball', status: 400, message: /absolute/,
    });
    expect(error.message).toContain(JSON.stringify(entryPath));
    expect(await readFile('/etc/passwd')).toEqual(passwd);
    expect(existsSync('/tmp/slipway-never-written')).toBe(false);
  });

  it.each([
    ['a -> /etc, then a/passwd', [{ path: 'a', type: 'symlink', linkpath: '/etc' }, { path: 'a/passwd', body: 'x' }], /absolute/],
    ['a -> canary (absolute), then a/x', [{ path: 'a', type: 'symlink', linkpath: 'CANARY' }, { path: 'a/x', body: 'x' }], /absolute/],
    ['a -> ../../../../canary, then a/x', [{ path: 'a', type: 'symlink', linkpath: `${UP_TO_ROOT}/canary` }, { path: 'a/x', body: 'x' }], /outside the release/],
    ['a -> sub (allowed), then a/x written through it', [{ path: 'sub/', type: 'dir' }, { path: 'a', type: 'symlink', linkpath: 'sub' }, { path: 'a/x', body: 'x' }], /passes through symlink 'a'/],
    ['a -> ., then a/x', [{ path: 'a', type: 'symlink', linkpath: '.' }, { path: 'a/x', body: 'x' }], /passes through symlink/],
    ['d/l -> .., then x -> d/l/../../../../canary', [{ path: 'd/l', type: 'symlink', linkpath: '..' }, { path: 'x', type: 'symlink', linkpath: `d/l/${UP_TO_ROOT}/canary` }], /outside the release|passes through/],
    ['d/l -> .., then x -> d/l/.. (escapes only when followed)', [{ path: 'd/l', type: 'symlink', linkpath: '..' }, { path: 'x', type: 'symlink', linkpath: 'd/l/..' }, { path: 'x/canary/y', body: 'x' }], /passes through/],
  ] as Array<[string, CraftEntry[], RegExp]>)('case 3: refuses %s', async (_label, hostile, message) => {
    const entries = hostile.map((e) => (e.linkpath === 'CANARY' ? { ...e, linkpath: canary } : e));
    await expectRefusedCleanly(gzip(tarball([...good(), ...entries])), { code: 'bad_tarball', status: 400, message });
  });

  it.each([
    ['/etc/passwd'],
    [`${UP_TO_ROOT}/canary/target`],
    ['server.js'],
  ])('case 4: refuses a hardlink to %s', async (target) => {
    const before = await stat('/etc/passwd');
    await expectRefusedCleanly(gzip(tarball([...good(), { path: 'link', type: 'hardlink', linkpath: target }])), {
      code: 'bad_tarball', status: 400, message: /hardlinks are not allowed/,
    });
    expect((await stat('/etc/passwd')).nlink).toBe(before.nlink);
  });

  it.each([
    ['fifo', /FIFO/],
    ['char', /CharacterDevice/],
    ['block', /BlockDevice/],
  ] as const)('case 8: refuses a %s entry', async (type, message) => {
    await expectRefusedCleanly(gzip(tarball([...good(), { path: 'dev/thing', type, devmajor: 1, devminor: 3 }])), {
      code: 'bad_tarball', status: 400, message,
    });
  });

  it.each([
    ['a sparse file', 'S'],
    ['an unknown type', 'Z'],
    ['a volume label', 'V'],
  ])('refuses %s, which node-tar would silently skip', async (_label, typeflag) => {
    await expectRefusedCleanly(gzip(tarball([...good(), { path: 'odd', typeflag, body: 'x' }])), {
      code: 'bad_tarball', status: 400, message: /not supported/,
    });
  });

  it('refuses control characters and backslashes in names', async () => {
    await expectRefusedCleanly(gzip(tarball([...good(), { path: 'a\nb', body: 'x' }])), { code: 'bad_tarball', status: 400, message: /control character/ });
    await expectRefusedCleanly(gzip(tarball([...good(), { path: '..\\..\\x', body: 'x' }])), { code: 'bad_tarball', status: 400, message: /backslash/ });
  });

  it('refuses a pax header that renames an entry to an escaping path', async () => {
    await expectRefusedCleanly(gzip(tarball([...good(), paxEntry({ path: `${UP_TO_ROOT}/canary/pax` }), { path: 'innocent', body: 'x' }])), {
      code: 'bad_tarball', status: 400, message: /canary\/pax/,
    });
  });
});

describe('ReleaseStore: bombs, limits and damage (RELIABILITY cases 5-7, 9)', () => {
  beforeEach(() => freshBox());

  it('case 5: a ~1 MB gzip declaring a 1 GiB file is stopped at its header; disk usage unchanged', async () => {
    const releaseId = newReleaseId();
    const head = tarball([...goodEntries(APP, releaseId), { path: 'bomb.bin', size: 1024 * MiB }], { endMarker: false });
    const bomb = gzipBomb(head, 1024 * MiB);
    expect(bomb.length).toBeLessThan(1.5 * MiB);
    expect(gzipBombExpandedBytes(head, 1024 * MiB)).toBeGreaterThan(1024 * MiB);
    const usage = await du(home);
    const started = Date.now();
    const error = await expectRefusedCleanly(bomb, { code: 'release_limit_exceeded', status: 413, message: /limits\.maxUnpackedBytes/ }, { releaseId });
    expect(error.message).toContain('"bomb.bin"');
    expect(error.hint).toContain('limits.maxUnpackedBytes');
    expect(Date.now() - started, 'refused at the header, long before 1 GiB is inflated').toBeLessThan(15_000);
    expect(await du(home)).toBe(usage);
  });

  it('case 5: a gzip bomb hidden after the end marker is stopped early; disk usage unchanged', async () => {
    const releaseId = newReleaseId();
    const bomb = gzipBomb(tarball(goodEntries(APP, releaseId)), 1024 * MiB);
    expect(bomb.length).toBeLessThan(1.5 * MiB);
    const usage = await du(home);
    const error = await expectRefusedCleanly(bomb, { code: 'bad_tarball', status: 400, message: /gzip bomb/ }, { releaseId });
    const streamed = Number(/over (\d+) bytes of tar stream/.exec(error.message)?.[1]);
    expect(streamed, 'stopped within a few MB, not after a gigabyte').toBeLessThan(4 * MiB);
    expect(await du(home)).toBe(usage);
  });

  it('case 6: too many entries -> limit error naming limits.maxEntries', async () => {
    const releaseId = newReleaseId();
    const many: CraftEntry[] = Array.from({ length: 200 }, (_, i) => ({ path: `f/${i}.js`, body: `${i}` }));
    const error = await expectRefusedCleanly(gzip(tarball([...goodEntries(APP, releaseId), ...many])), {
      code: 'release_limit_exceeded', status: 413, message: /more than 200 entries \(limits\.maxEntries\)/,
    }, { releaseId });
    expect(error.hint).toMatch(/raise limits\.maxEntries/);
    expect(error.details).toContain('limit: limits.maxEntries');
  });

  it('case 6: a plain (uncompressed) tar over the unpacked size cap -> limit error naming limits.maxUnpackedBytes', async () => {
    await rm(root, { recursive: true, force: true });
    await freshBox({ ...LIMITS, maxReleaseBytes: 32 * MiB });
    const releaseId = newReleaseId();
    const big = (name: string): CraftEntry => ({ path: name, body: Buffer.alloc(5 * MiB, 7) });
    const error = await expectRefusedCleanly(tarball([...goodEntries(APP, releaseId), big('a.bin'), big('b.bin')]), {
      code: 'release_limit_exceeded', status: 413, message: /limits\.maxUnpackedBytes/,
    }, { releaseId });
    expect(error.message).toContain('"b.bin"');
    expect(error.hint).toMatch(/raise limits\.maxUnpackedBytes/);
  });

  it('refuses an upload over limits.maxReleaseBytes while it streams, without reading it all', async () => {
    const total = 64 * MiB;
    let pulled = 0;
    // A byte-mode stream with a tiny buffer, so `pulled` is what the store asked for, not read-ahead.
    const source = Readable.from((function* () {
      for (let sent = 0; sent < total; sent += MiB) { pulled += MiB; yield randomBytes(MiB); }
    })(), { objectMode: false, highWaterMark: 1 });
    const before = await snapshot(root);
    const error = await caught(store.ingest({ app: APP, releaseId: newReleaseId(), sha256: 'a'.repeat(64), source }));
    expect(error).toMatchObject({ code: 'release_too_large', status: 413 });
    expect(error.message).toContain('limits.maxReleaseBytes');
    expect(error.hint).toContain('limits.maxReleaseBytes');
    expect(pulled).toBeLessThan(8 * MiB);
    expect(await snapshot(root)).toEqual(before);
  });

  it('refuses at once when the declared length is over limits.maxReleaseBytes', async () => {
    const source = new PassThrough();
    const error = await caught(store.ingest({ app: APP, releaseId: newReleaseId(), sha256: 'b'.repeat(64), source, expectedBytes: 5 * MiB }));
    expect(error).toMatchObject({ code: 'release_too_large', status: 413 });
    expect(source.readableLength).toBe(0);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
  });

  it('case 7: a gzip cut in half fails and leaves nothing', async () => {
    const whole = gzip(tarball(goodEntries(APP, newReleaseId())));
    await expectRefusedCleanly(whole.subarray(0, Math.floor(whole.length / 2)), { code: 'bad_tarball', status: 400, message: /corrupt or truncated/ });
  });

  it('case 7: a plain tar cut mid-entry fails', async () => {
    const whole = tarball([...goodEntries(APP, newReleaseId()), { path: 'data.bin', body: randomBytes(20_000) }]);
    await expectRefusedCleanly(whole.subarray(0, whole.length - 1024 - 4096), { code: 'bad_tarball', status: 400, message: /Truncated/i });
  });

  it('case 7: a tar cut exactly at an entry boundary (which node-tar accepts silently) fails', async () => {
    const releaseId = newReleaseId();
    const noEnd = tarball(goodEntries(APP, releaseId), { endMarker: false });
    // Proof that the trap is real: node-tar lists this archive without any complaint.
    const listed: string[] = [];
    const parser = tar.t({ strict: true, onReadEntry: (e) => { listed.push(e.path); } });
    await new Promise<void>((resolve, reject) => { parser.on('end', resolve); parser.on('error', reject); parser.end(noEnd); });
    expect(listed).toContain('./server.js');
    await expectRefusedCleanly(gzip(noEnd), { code: 'bad_tarball', status: 400, message: /end-of-archive marker/ }, { releaseId });
    await expectRefusedCleanly(noEnd, { code: 'bad_tarball', status: 400, message: /end-of-archive marker/ }, { releaseId });
  });

  it('case 7: a corrupt header checksum fails, even after good entries were seen', async () => {
    const entries = goodEntries(APP, newReleaseId());
    entries.splice(3, 0, { path: 'corrupt.js', body: 'x', corruptChecksum: true });
    await expectRefusedCleanly(gzip(tarball(entries)), { code: 'bad_tarball', status: 400, message: /checksum/ });
  });

  it('case 7: a damaged gzip CRC, a nested gzip and random bytes all fail', async () => {
    const whole = gzip(tarball(goodEntries(APP, newReleaseId())));
    const crc = Buffer.from(whole);
    crc[crc.length - 6]! ^= 0xff;
    await expectRefusedCleanly(crc, { code: 'bad_tarball', status: 400, message: /corrupt/ });
    await expectRefusedCleanly(gzip(whole), { code: 'bad_tarball', status: 400, message: /not a tar archive/ });
    await expectRefusedCleanly(randomBytes(4096), { code: 'bad_tarball', status: 400, message: /not a tar archive/ });
    await expectRefusedCleanly(Buffer.alloc(0), { code: 'bad_tarball', status: 400, message: /too short/ });
  });

  it('case 9: a sha256 mismatch is refused before anything is published', async () => {
    const archive = gzip(tarball(goodEntries(APP, newReleaseId())));
    const declared = sha256(Buffer.from('something else'));
    // The archive is unpacked as it arrives, in the private staging dir under incoming/; the
    // mismatch is known with the last byte. expectRefusedCleanly proves that nothing of it ever
    // showed up in the release store and that the staging dir is gone.
    const error = await expectRefusedCleanly(archive, { code: 'checksum_mismatch', status: 400, message: /does not match/ }, { sha: declared });
    expect(error.details).toEqual(expect.arrayContaining([`expected: ${declared}`, `actual: ${sha256(archive)}`]));
  });
});

describe('ReleaseStore: manifest, names, uploads and concurrency', () => {
  beforeEach(() => freshBox());

  it('refuses a manifest for another release or app, a missing one, an invalid one and a symlinked one', async () => {
    const releaseId = newReleaseId();
    const withManifest = (body: CraftEntry | undefined): Buffer =>
      gzip(tarball([...goodEntries(APP, releaseId).filter((e) => e.path !== './manifest.json'), ...(body ? [body] : [])]));
    const other = await expectRefusedCleanly(withManifest({ path: 'manifest.json', body: JSON.stringify(manifestFor(APP, newReleaseId())) }),
      { code: 'manifest_mismatch', status: 400, unpacks: true }, { releaseId });
    expect(other.details?.join('\n')).toContain(releaseId);
    await expectRefusedCleanly(withManifest({ path: 'manifest.json', body: JSON.stringify(manifestFor('blog', releaseId)) }),
      { code: 'manifest_mismatch', status: 400, message: /blog/, unpacks: true }, { releaseId });
    await expectRefusedCleanly(withManifest(undefined), { code: 'bad_manifest', status: 400, message: /missing/, unpacks: true }, { releaseId });
    await expectRefusedCleanly(withManifest({ path: 'manifest.json', body: '{not json' }), { code: 'bad_manifest', status: 400, message: /not valid JSON/, unpacks: true }, { releaseId });
    const invalid = await expectRefusedCleanly(withManifest({ path: 'manifest.json', body: JSON.stringify({ ...manifestFor(APP, releaseId), extra: 1, dirty: 'no' }) }),
      { code: 'bad_manifest', status: 400, unpacks: true }, { releaseId });
    expect(invalid.details).toEqual(expect.arrayContaining([expect.stringMatching(/^extra: /), expect.stringMatching(/^dirty: /)]));
    await expectRefusedCleanly(withManifest({ path: 'manifest.json', type: 'symlink', linkpath: 'config.json' }),
      { code: 'bad_manifest', status: 400, message: /not a regular file/, unpacks: true }, { releaseId });
  });

  it('refuses files other than the ones its manifest names, and an id not made of its commit and content; nothing is published', async () => {
    const releaseId = newReleaseId();
    const changed: Array<[string, CraftEntry[]]> = [
      ['one file changed after the manifest was written', goodEntries(APP, releaseId).map((e) => (e.path === './config.json' ? { ...e, body: '{"a":2}\n' } : e))],
      ['a mode changed', goodEntries(APP, releaseId).map((e) => (e.path === './server.js' ? { ...e, mode: 0o644 } : e))],
      ['a symlink retargeted', goodEntries(APP, releaseId).map((e) => (e.path === './lib/alias.js' ? { ...e, linkpath: 'other.js' } : e))],
      ['one more file', [...goodEntries(APP, releaseId), { path: 'extra.txt', body: '' }]],
      ['one more empty directory', [...goodEntries(APP, releaseId), { path: 'empty/', type: 'dir' }]],
    ];
    for (const [label, entries] of changed) {
      const error = await expectRefusedCleanly(gzip(tarball(entries)), { code: 'release_digest_mismatch', status: 400, unpacks: true }, { releaseId });
      expect(error.details, label).toEqual(expect.arrayContaining([`manifest contentDigest: ${GOOD_DIGEST}`]));
      expect(error.message, label).toMatch(/do not match the manifest's content digest/);
    }
    const forged = goodEntries(APP, releaseId).map((e) => (e.path === './manifest.json' ? { ...e, body: JSON.stringify({ ...manifestFor(APP, releaseId), sha: randomCommit() }) } : e));
    const error = await expectRefusedCleanly(gzip(tarball(forged)), { code: 'release_digest_mismatch', status: 400, unpacks: true }, { releaseId });
    expect(error.message).toMatch(/is not the one of its commit and content/);
  });

  it('refuses to take an upload under an id that names no content (a commit-SHA id of older releases)', async () => {
    const before = await snapshot(root);
    const error = await caught(store.ingest({ app: APP, releaseId: randomCommit(), sha256: 'c'.repeat(64), source: new PassThrough() }));
    expect(error).toMatchObject({ code: 'invalid_release_id', status: 400 });
    expect(await snapshot(root)).toEqual(before);
  });

  it.each([
    [{ app: 'Shop' }, 'invalid_app_name'],
    [{ app: '../x' }, 'invalid_app_name'],
    [{ releaseId: 'abc' }, 'invalid_release_id'],
    [{ releaseId: `${'a'.repeat(40)}/../x` }, 'invalid_release_id'],
    [{ sha256: 'A'.repeat(64) }, 'invalid_sha256'],
    [{ sha256: '../../x' }, 'invalid_sha256'],
  ])('refuses bad names %j with 400 before touching anything', async (bad, code) => {
    const before = await snapshot(root);
    const error = await caught(store.ingest({ app: APP, releaseId: newReleaseId(), sha256: 'c'.repeat(64), source: new PassThrough(), ...bad }));
    expect(error).toMatchObject({ code, status: 400 });
    expect(await snapshot(root)).toEqual(before);
  });

  it('refuses a release that already exists without reading the upload', async () => {
    const source = new PassThrough();
    const error = await caught(store.ingest({ app: APP, releaseId: liveId, sha256: 'd'.repeat(64), source }));
    expect(error).toMatchObject({ code: 'release_exists', status: 409 });
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
  });

  it('refuses a concurrent upload of the same sha256 and lets the first one finish', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(goodEntries(APP, releaseId)));
    const sha = sha256(archive);
    const first = new PassThrough();
    const ingest = store.ingest({ app: APP, releaseId, sha256: sha, source: first, expectedBytes: archive.length });
    first.write(archive.subarray(0, 200));
    const part = path.join(home, 'incoming', `${sha}.part`);
    await waitFor(async () => (await stat(part).catch(() => undefined))?.size === 200, { description: 'the first upload to be under way' });

    const second = await caught(store.ingest({ app: APP, releaseId, sha256: sha, source: sourceOf(archive), expectedBytes: archive.length }));
    expect(second).toMatchObject({ code: 'upload_in_progress', status: 409 });
    expect((await stat(part)).size, 'the refused upload wrote nothing into the first one').toBe(200);

    first.end(archive.subarray(200));
    const result = await ingest;
    expect(result.manifest.releaseId).toBe(releaseId);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    const again = await caught(store.ingest({ app: APP, releaseId, sha256: sha, source: sourceOf(archive) }));
    expect(again).toMatchObject({ code: 'release_exists', status: 409 });
  });

  it('two different tarballs racing for one release: one wins, the other gets release_exists, nothing leaks', async () => {
    const releaseId = newReleaseId();
    const a = gzip(tarball(goodEntries(APP, releaseId)));
    // Other bytes, the same files: another mtime is not part of a release's content.
    const b = gzip(tarball(goodEntries(APP, releaseId).map((entry) => ({ ...entry, mtime: 1_800_000_000 }))));
    const results = await Promise.allSettled([a, b].map((archive) =>
      store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive) })));
    const fulfilled = results.filter((r) => r.status === 'fulfilled');
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(fulfilled).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toMatchObject({ code: 'release_exists', status: 409 });
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect((await readdir(path.join(home, 'releases', APP))).sort()).toEqual([liveId, releaseId].sort());
  });

  it('a short upload, a source that errors and a stalled source all fail with upload_incomplete', async () => {
    const archive = gzip(tarball(goodEntries(APP, newReleaseId())));
    await expectRefusedCleanly(archive.subarray(0, 300), { code: 'upload_incomplete', status: 400, message: /ended after 300 of/ },
      { sha: sha256(archive), expectedBytes: archive.length });

    const broken = new PassThrough();
    const erroring = store.ingest({ app: APP, releaseId: newReleaseId(), sha256: sha256(archive), source: broken, expectedBytes: archive.length });
    broken.write(archive.subarray(0, 100));
    broken.destroy(new Error('socket hang up'));
    expect(await caught(erroring)).toMatchObject({ code: 'upload_incomplete', status: 400, message: expect.stringMatching(/socket hang up/) });

    const stalledStore = new ReleaseStore({ home, limits: LIMITS, uploadIdleTimeoutMs: 300 });
    const stalled = new PassThrough();
    const pending = stalledStore.ingest({ app: APP, releaseId: newReleaseId(), sha256: sha256(archive), source: stalled, expectedBytes: archive.length });
    stalled.write(archive.subarray(0, 100));
    expect(await caught(pending)).toMatchObject({ code: 'upload_incomplete', message: expect.stringMatching(/no data for 300 ms/) });
    expect(stalled.destroyed).toBe(true);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
  });

  it('sending more than the declared length is refused', async () => {
    const archive = gzip(tarball(goodEntries(APP, newReleaseId())));
    const error = await caught(store.ingest({ app: APP, releaseId: newReleaseId(), sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length - 10 }));
    expect(error).toMatchObject({ code: 'upload_size_mismatch', status: 400 });
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
  });

  it('cleanupOrphans removes partial uploads and temp dirs, and nothing else', async () => {
    await writeFile(path.join(home, 'incoming', `${'e'.repeat(64)}.part`), 'partial');
    await mkdir(path.join(home, 'releases', APP, '.tmp-0123/deep'), { recursive: true });
    await mkdir(path.join(home, 'releases', APP, '.tmp-0123.discard-ab'), { recursive: true });
    await mkdir(path.join(home, 'releases', 'blog', '.tmp-9'), { recursive: true });
    const { removed } = await store.cleanupOrphans();
    expect(removed).toHaveLength(4);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
    expect(await readdir(path.join(home, 'releases', 'blog'))).toEqual([]);
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
  });

  it('cleanupOrphans leaves an ingest that is still running alone', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(goodEntries(APP, releaseId)));
    const source = new PassThrough();
    const ingest = store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length });
    source.write(archive.subarray(0, 50));
    const part = path.join(home, 'incoming', `${sha256(archive)}.part`);
    await waitFor(() => existsSync(part), { description: 'the upload to start' });
    await store.cleanupOrphans();
    expect(existsSync(part)).toBe(true);
    source.end(archive.subarray(50));
    await ingest;
    expect(store.has(APP, releaseId)).toBe(true);
  });

  it('readManifest and has refuse unknown releases and bad names', async () => {
    expect(await caught(store.readManifest(APP, newReleaseId()))).toMatchObject({ code: 'release_not_found', status: 404 });
    expect(() => store.has('Bad', liveId)).toThrow(/not allowed/);
    expect(() => store.releaseDir(APP, '../../etc')).toThrow(/not allowed/);
    expect(await store.list('blog')).toEqual([]);
  });
});

describe('extractTarball and receiveUpload directly', () => {
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'slipway-extract-'));
  });

  it('extracts into a fresh 0700 dir and reports entries and bytes', async () => {
    const file = path.join(root, 'a.tar.gz');
    await writeFile(file, gzip(tarball([{ path: 'x/y.txt', body: 'hello' }, { path: 'z', body: 'abc' }])));
    const dest = path.join(root, 'out');
    expect(await extractTarball(file, dest, { maxEntries: 10, maxUnpackedBytes: 100 })).toEqual({ entries: 2, bytes: 8, contents: expect.any(Array) });
    expect((await stat(dest)).mode & 0o777).toBe(0o700);
    expect(await readFile(path.join(dest, 'x/y.txt'), 'utf8')).toBe('hello');
  });

  it('refuses to extract over an existing directory', async () => {
    const file = path.join(root, 'a.tar');
    await writeFile(file, tarball([{ path: 'z', body: 'abc' }]));
    const dest = path.join(root, 'out');
    await mkdir(dest);
    await writeFile(path.join(dest, 'keep'), 'mine');
    expect(await caught(extractTarball(file, dest, { maxEntries: 10, maxUnpackedBytes: 100 }))).toMatchObject({ code: 'extract_target_exists' });
    expect(await readFile(path.join(dest, 'keep'), 'utf8')).toBe('mine');
  });

  it('the extraction pass aborts and removes the dir when node-tar fails mid-way', async () => {
    // A name longer than the filesystem allows passes the policy but fails in node-tar (strict).
    const file = path.join(root, 'a.tar');
    await writeFile(file, tarball([{ path: 'ok.txt', body: 'fine' }, paxEntry({ path: `${'n'.repeat(300)}` }), { path: 'short', body: 'x' }]));
    const dest = path.join(root, 'out');
    const error = await caught(extractTarball(file, dest, { maxEntries: 10, maxUnpackedBytes: 100 }));
    expect(error).toMatchObject({ code: 'bad_tarball', status: 400 });
    expect(error.message).toMatch(/ENAMETOOLONG/);
    expect(await readdir(root)).toEqual(['a.tar']);
  });

  it('receiveUpload keeps a verified upload and removes a bad one', async () => {
    const data = randomBytes(100_000);
    const incomingDir = path.join(root, 'incoming');
    const ok = await receiveUpload(sourceOf(data, 7_000), { incomingDir, expectedSha256: sha256(data), maxBytes: MiB, expectedBytes: data.length });
    expect(ok).toEqual({ path: path.join(incomingDir, `${sha256(data)}.part`), bytes: data.length, sha256: sha256(data) });
    expect(await readFile(ok.path)).toEqual(data);
    expect((await stat(ok.path)).mode & 0o777).toBe(0o600);
    const bad = await caught(receiveUpload(sourceOf(data), { incomingDir, expectedSha256: 'f'.repeat(64), maxBytes: MiB }));
    expect(bad).toMatchObject({ code: 'checksum_mismatch', status: 400 });
    expect(await readdir(incomingDir)).toEqual([path.basename(ok.path)]);
  });

  it('gunzip sanity: the bomb helper really expands to what it claims', () => {
    const head = tarball([{ path: 'x', body: 'y' }], { endMarker: false });
    const small = gzipBomb(head, 1);
    expect(gunzipSync(small).length).toBe(gzipBombExpandedBytes(head, 1));
  });
});

/** The staging dir of the ingest under way (`incoming/.tmp-*`), once it exists. */
async function stagingDir(): Promise<string | undefined> {
  const names = await readdir(path.join(home, 'incoming')).catch(() => [] as string[]);
  const name = names.find((n) => /^\.tmp-[0-9a-f]+$/.test(n));
  return name === undefined ? undefined : path.join(home, 'incoming', name);
}

/** Waits until the ingest under way has unpacked `name` into its staging dir; returns that dir. */
async function untilStaged(name: string, description: string): Promise<string> {
  let dir: string | undefined;
  await waitFor(async () => {
    dir = await stagingDir();
    return dir !== undefined && existsSync(path.join(dir, name));
  }, { description });
  return dir!;
}

describe('ReleaseStore: unpacking while the upload arrives', () => {
  beforeEach(() => freshBox());

  it('unpacks two uploads at once in the one unpacking thread, each into its own release', async () => {
    const bodyA = randomBytes(300 * 1024);
    const bodyB = randomBytes(300 * 1024);
    const a = goodRelease([{ path: 'only-a.bin', body: bodyA }]);
    const b = goodRelease([{ path: 'only-b.bin', body: bodyB }]);
    const archiveA = gzip(tarball(a.entries));
    const archiveB = gzip(tarball(b.entries));
    const [ra, rb] = await Promise.all([
      store.ingest({ app: APP, releaseId: a.releaseId, sha256: sha256(archiveA), source: sourceOf(archiveA, 8 * 1024), expectedBytes: archiveA.length }),
      store.ingest({ app: APP, releaseId: b.releaseId, sha256: sha256(archiveB), source: sourceOf(archiveB, 8 * 1024), expectedBytes: archiveB.length }),
    ]);
    expect(await readFile(path.join(ra.dir, 'only-a.bin'))).toEqual(bodyA);
    expect(await readFile(path.join(rb.dir, 'only-b.bin'))).toEqual(bodyB);
    expect(existsSync(path.join(ra.dir, 'only-b.bin'))).toBe(false);
    expect(existsSync(path.join(rb.dir, 'only-a.bin'))).toBe(false);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
  });

  it('the unpacking thread and the main thread make the same tree of one archive', async () => {
    const { releaseId, entries } = goodRelease([{ path: 'data/blob.bin', body: randomBytes(200 * 1024), mode: 0o640 }]);
    const archive = gzip(tarball(entries));
    const mainHome = path.join(root, 'main-home');
    const onMain = new ReleaseStore({ home: mainHome, limits: LIMITS, threadFromBytes: Infinity });
    const viaMain = await onMain.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });
    const viaThread = await store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive), expectedBytes: archive.length });
    expect(await snapshot(viaThread.dir)).toEqual(await snapshot(viaMain.dir));
    // Everything but where it lies and how long its steps took.
    expect({ ...viaThread, dir: '', timings: null }).toEqual({ ...viaMain, dir: '', timings: null });
  });

  it('an unpacking thread stopped mid-upload fails the ingest with extract_failed, leaves nothing, and the next upload gets a fresh thread', async () => {
    const { releaseId, entries } = goodRelease([{ path: 'big.bin', body: randomBytes(256 * 1024) }]);
    const archive = tarball(entries);
    const source = new PassThrough();
    const refused = caught(store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length }));
    const cut = archive.length - 100 * 1024;
    source.write(archive.subarray(0, cut));
    await untilStaged('server.js', 'server.js unpacked by the thread while the upload is still under way');
    await stopUnpackThread();
    source.end(archive.subarray(cut));
    const error = await refused;
    expect({ code: error.code, status: error.status }).toEqual({ code: 'extract_failed', status: 500 });
    expect(error.message).toMatch(/unpacking thread stopped/);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);

    const next = goodRelease([]);
    const again = gzip(tarball(next.entries));
    const published = await store.ingest({ app: APP, releaseId: next.releaseId, sha256: sha256(again), source: sourceOf(again), expectedBytes: again.length });
    expect(existsSync(path.join(published.dir, 'server.js'))).toBe(true);
  });

  it('unpacks into a private staging dir outside releases/ before the last byte, and publishes only at the end', async () => {
    const { releaseId, entries } = goodRelease([{ path: 'big.bin', body: randomBytes(256 * 1024) }]);
    // Plain tar, so that the bytes sent map to entries.
    const archive = tarball(entries);
    const source = new PassThrough();
    const ingest = store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length });
    const cut = archive.length - 100 * 1024;
    source.write(archive.subarray(0, cut));
    const dir = await untilStaged('server.js', 'server.js unpacked while the upload is still under way');
    expect((await stat(dir)).mode & 0o777, 'nobody else can look in while it is incomplete').toBe(0o700);
    expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
    source.end(archive.subarray(cut));
    const result = await ingest;
    expect(result.dir).toBe(store.releaseDir(APP, releaseId));
    expect((await stat(result.dir)).mode & 0o777).toBe(0o555);
    expect(existsSync(dir)).toBe(false);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
  });

  it('never writes through a symlink the same archive already put on disk (case 3 while streaming)', async () => {
    const releaseId = newReleaseId();
    const first = tarball([...goodEntries(APP, releaseId), { path: 'sub/', type: 'dir' }, { path: 'a', type: 'symlink', linkpath: 'sub' }], { endMarker: false });
    const rest = tarball([{ path: 'a/x', body: 'through the link\n' }]);
    const archive = Buffer.concat([first, rest]);
    const source = new PassThrough();
    const canaryWatch = watchDir(canary);
    try {
      const refused = caught(store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length }));
      source.write(first);
      let link = '';
      await waitFor(async () => {
        const dir = await stagingDir();
        if (!dir) return false;
        link = path.join(dir, 'a');
        return (await lstat(link).catch(() => undefined))?.isSymbolicLink() ?? false;
      }, { description: 'the symlink a -> sub on disk' });
      const seenInSub: string[] = [];
      const subWatch = watch(path.join(path.dirname(link), 'sub'), (_event, name) => { seenInSub.push(String(name)); });
      subWatch.on('error', () => undefined);
      try {
        source.end(rest);
        const error = await refused;
        expect({ code: error.code, status: error.status }).toEqual({ code: 'bad_tarball', status: 400 });
        expect(error.message).toMatch(/passes through symlink 'a'/);
        expect(seenInSub, 'nothing appeared in sub/, the link\'s target').not.toContain('x');
      } finally {
        subWatch.close();
      }
      expect(await canaryWatch.settle()).toEqual([]);
    } finally {
      canaryWatch.close();
    }
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
  });

  it('removes what a refused archive unpacked at once, while the rest of the upload still arrives', async () => {
    const releaseId = newReleaseId();
    const head = tarball([...goodEntries(APP, releaseId), { path: 'ok/../../x', body: 'x' }], { endMarker: false });
    const tail = tarball([{ path: 'more.bin', body: randomBytes(64 * 1024) }]);
    const archive = Buffer.concat([head, tail]);
    const incoming = path.join(home, 'incoming');
    const events: string[] = [];
    const incomingWatch = watch(incoming, (event, name) => { events.push(`${event} ${String(name)}`); });
    try {
      const source = new PassThrough();
      const refused = caught(store.ingest({ app: APP, releaseId, sha256: sha256(archive), source, expectedBytes: archive.length }));
      source.write(head);
      await waitFor(async () => events.some((e) => / \.tmp-[0-9a-f]+$/.test(e)) && (await readdir(incoming)).every((n) => n.endsWith('.part')), {
        description: 'the staging dir created, then removed, while the upload is still open',
      });
      expect((await readdir(incoming)).length, 'the upload itself is still under way').toBe(1);
      source.end(tail);
      const error = await refused;
      expect({ code: error.code, status: error.status }).toEqual({ code: 'bad_tarball', status: 400 });
      expect(error.message).toMatch(/'\.\.' segment/);
    } finally {
      incomingWatch.close();
    }
    expect(await readdir(incoming)).toEqual([]);
    expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
  });

  it("the upload's own error wins over whatever unpacking a wrong or partial archive ran into", async () => {
    const hostile = gzip(tarball([{ path: `${UP_TO_ROOT}/canary/first`, body: 'x' }, ...goodEntries(APP, newReleaseId())]));
    await expectRefusedCleanly(hostile, { code: 'checksum_mismatch', status: 400, message: /does not match/ }, { sha: sha256(Buffer.from('other')) });
    await expectRefusedCleanly(hostile.subarray(0, 200), { code: 'upload_incomplete', status: 400 }, { sha: sha256(hostile), expectedBytes: hostile.length });
  });

  it('cleanupOrphans removes the staging dirs an interrupted ingest left in incoming/', async () => {
    await mkdir(path.join(home, 'incoming', '.tmp-0123/deep'), { recursive: true });
    await mkdir(path.join(home, 'incoming', '.tmp-0123.discard-ab'), { recursive: true });
    await writeFile(path.join(home, 'incoming', `${'e'.repeat(64)}.part`), 'partial');
    const { removed } = await store.cleanupOrphans();
    expect(removed).toHaveLength(3);
    expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
    expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
  });
});

describe('TreeWriter: the second line behind the entry policy', () => {
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'slipway-writer-'));
    canary = path.join(root, 'canary');
    await mkdir(canary);
  });

  const body = (data: string | Buffer, extra: Partial<EntryBody> = {}): EntryBody => {
    const bytes = Buffer.from(data);
    return Object.assign(Readable.from(bytes.length > 0 ? [bytes] : []), { size: bytes.length, ...extra });
  };

  it('never creates anything below a symlink it made, even for entries the policy would have refused', async () => {
    const dest = path.join(root, 'out');
    await mkdir(dest, { mode: 0o700 });
    const errors: unknown[] = [];
    const writer = await TreeWriter.create(dest, { flushFromBytes: Infinity, onError: (error) => errors.push(error) });
    writer.add(body(''), { path: 'sub', kind: 'directory', mode: 0o755 });
    // Pointing out of the tree: only the policy refuses such a link; the writer must still never follow it.
    writer.add(body('', { linkpath: canary }), { path: 'out-link', kind: 'symlink', mode: 0o777 });
    writer.add(body('', { linkpath: 'sub' }), { path: 'in-link', kind: 'symlink', mode: 0o777 });
    await writer.settle();
    expect(errors).toEqual([]);
    for (const hostile of ['out-link/x', 'in-link/x', 'in-link/deeper/x']) {
      const failed: unknown[] = [];
      const again = await TreeWriter.create(dest, { flushFromBytes: Infinity, onError: (error) => failed.push(error) });
      // A fresh writer knows nothing of the links: it still only creates below directories it made.
      again.add(body('x'), { path: hostile, kind: 'file', mode: 0o644 });
      await again.settle();
      expect(failed, hostile).toHaveLength(1);
    }
    writer.add(body('x'), { path: 'in-link/x', kind: 'file', mode: 0o644 });
    writer.add(body('x'), { path: 'out-link', kind: 'file', mode: 0o644 });
    await writer.settle();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TreeMismatch);
    expect(await readdir(canary)).toEqual([]);
    expect(await readdir(path.join(dest, 'sub'))).toEqual([]);
  });

  it('sync() fsyncs small files and directories itself, and leaves many small files to one syncfs', async () => {
    const dest = path.join(root, 'out');
    const file = path.join(root, 'a.tar');
    await writeFile(file, tarball([{ path: 'a/1', body: '1' }, { path: 'a/2', body: '2' }, { path: 'b', body: '3' }]));
    const extraction = startExtraction(file, dest, { maxEntries: 10, maxUnpackedBytes: 1024 });
    expect(await extraction.finish((await stat(file)).size)).toEqual({ entries: 3, bytes: 3, contents: expect.any(Array) });
    expect(await extraction.sync(2), 'three small files: more than 2').toBe(false);
    expect(await extraction.sync(3)).toBe(true);
    expect(await readFile(path.join(dest, 'a/2'), 'utf8')).toBe('2');
  });
});

/** RELIABILITY case 14: the disk fills up. Needs a small tmpfs, so root and mount(8). */
describe('ReleaseStore: disk full (RELIABILITY case 14)', () => {
  let canMount = false;

  beforeAll(async () => {
    const probe = await mkdtemp(path.join(os.tmpdir(), 'slipway-mount-probe-'));
    const mounted = await runCommand(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { timeoutMs: 10_000 }).catch(() => undefined);
    canMount = mounted?.exitCode === 0;
    if (canMount) await runCommand(['umount', probe], { timeoutMs: 10_000 });
    await rm(probe, { recursive: true, force: true });
  });

  /** Runs `body` with home on a tmpfs of `size` that already holds the live release; unmounts after. */
  async function onSmallDisk(size: string, body: () => Promise<void>): Promise<void> {
    root = await mkdtemp(path.join(os.tmpdir(), 'slipway-full-'));
    const mountPoint = path.join(root, 'disk');
    await mkdir(mountPoint);
    const mounted = await runCommand(['mount', '-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mountPoint], { timeoutMs: 10_000 });
    expect(mounted.exitCode, mounted.stderr).toBe(0);
    try {
      home = path.join(mountPoint, 'home');
      await mkdir(path.join(home, 'incoming'), { recursive: true });
      store = new ReleaseStore({ home, limits: { ...LIMITS, maxReleaseBytes: 16 * MiB, maxUnpackedBytes: 16 * MiB } });
      liveId = newReleaseId();
      const archive = gzip(tarball(goodEntries(APP, liveId)));
      await store.ingest({ app: APP, releaseId: liveId, sha256: sha256(archive), source: sourceOf(archive) });
      liveSnapshot = await snapshot(store.releaseDir(APP, liveId));
      await body();
    } finally {
      const unmounted = await runCommand(['umount', mountPoint], { timeoutMs: 10_000 });
      expect(unmounted.exitCode, unmounted.stderr).toBe(0);
    }
  }

  it('ENOSPC during the upload -> disk_full (507); earlier release intact; nothing left behind', async (ctx) => {
    if (!canMount) ctx.skip();
    await onSmallDisk('2m', async () => {
      const data = randomBytes(3 * MiB);
      const error = await caught(store.ingest({ app: APP, releaseId: newReleaseId(), sha256: sha256(data), source: sourceOf(data), expectedBytes: data.length }));
      expect(error).toMatchObject({ code: 'disk_full', status: 507 });
      expect(error.hint).toMatch(/free space/);
      expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
      expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
      expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
    });
  });

  it('ENOSPC while unpacking -> disk_full (507); temp dir and .part removed; earlier release intact', async (ctx) => {
    if (!canMount) ctx.skip();
    await onSmallDisk('3m', async () => {
      const releaseId = newReleaseId();
      // A few KB compressed, 6 MiB unpacked: the upload fits, the release does not.
      const archive = gzip(tarball([...goodEntries(APP, releaseId), { path: 'a.bin', body: Buffer.alloc(3 * MiB, 1) }, { path: 'b.bin', body: Buffer.alloc(3 * MiB, 2) }]));
      const error = await caught(store.ingest({ app: APP, releaseId, sha256: sha256(archive), source: sourceOf(archive) }));
      expect(error).toMatchObject({ code: 'disk_full', status: 507 });
      expect(await readdir(path.join(home, 'incoming'))).toEqual([]);
      expect(await readdir(path.join(home, 'releases', APP))).toEqual([liveId]);
      expect(await snapshot(store.releaseDir(APP, liveId))).toEqual(liveSnapshot);
      expect(store.has(APP, releaseId)).toBe(false);
    });
  });

  afterAll(() => {
    // On a CI box running as root these cases must run, not be skipped without anyone noticing.
    if (!canMount && process.getuid?.() === 0 && process.env.CI) throw new Error('running as root in CI but could not mount a tmpfs');
  });
});
