/**
 * Reproducible packing (controller/pack.ts, controller/tar-writer.ts): the same commit and the
 * same build output give a byte-identical tarball, whatever the clock, the files' mtimes, the
 * umask, the order files were created in, or the clone they are packed from.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease } from '../../controller/pack.js';
import { commitInfo } from '../../controller/git.js';
import { runCommand } from '../../lib/exec.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-repro-')); });
afterEach(async () => {
  vi.useRealTimers();
  await fs.rm(dir, { recursive: true, force: true });
});

const LONG = `${'deep/'.repeat(25)}file-with-a-name-past-the-ustar-limit.txt`;

/** Build output written in a given order, with given modes and mtimes. */
async function writeBuildOutput(repo: string, order: 'forward' | 'reverse', mode: number, mtime: Date): Promise<void> {
  const out = path.join(repo, 'dist');
  await fs.rm(out, { recursive: true, force: true });
  const names = ['a.js', 'b.js', 'c/d.js', 'c/e.js', 'z.js'];
  for (const name of order === 'forward' ? names : [...names].reverse()) {
    await fs.mkdir(path.dirname(path.join(out, name)), { recursive: true });
    await fs.writeFile(path.join(out, name), `// ${name}\n`, { mode });
    await fs.utimes(path.join(out, name), mtime, mtime);
  }
  await fs.chmod(path.join(out, 'c'), mode | 0o111);
  await fs.rm(path.join(out, 'link'), { force: true });
  await fs.symlink('a.js', path.join(out, 'link'));
}

async function packOnce(repo: AppRepo, sha: string, now: Date) {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(now);
  const info = await commitInfo(repo.dir, sha);
  const prepared = await prepareRelease({ repo: repo.dir, treeish: sha, include: ['dist'], mtime: new Date(info.commitTime) });
  try {
    const manifest = buildManifest({ app: 'shop', sha, dirtySnapshot: null, branch: 'main', ...info },
      prepared.contentDigest, '0.1.0');
    const packed = await prepared.seal(manifest);
    const bytes = await fs.readFile(packed.file);
    const entries: Pick<tar.ReadEntry, 'path' | 'type' | 'mode' | 'mtime' | 'uid' | 'gid' | 'uname' | 'gname'>[] = [];
    await tar.t({ file: packed.file, onReadEntry: ({ path: p, type, mode, mtime, uid, gid, uname, gname }) => {
      entries.push({ path: p, type, mode, mtime, uid, gid, uname, gname });
    } });
    return { packed, bytes, manifest, entries, commitTime: info.commitTime };
  } finally {
    await prepared.cleanup();
    vi.useRealTimers();
  }
}

describe('reproducible packing', () => {
  it('gives the same sha256 for the same commit and build output, packed at other times, from another clone, with other mtimes and umask', async () => {
    const src = path.join(dir, 'src');
    await fs.mkdir(path.join(src, 'bin'), { recursive: true });
    await fs.writeFile(path.join(src, 'server.js'), 'console.log(1)\n');
    const repo = await createAppRepo(path.join(dir, 'repo'), src, { '.gitignore': 'dist/\n', 'bin/run': '#!/bin/sh\n', [LONG]: 'long\n' });
    await runCommand(['chmod', '+x', 'bin/run'], { cwd: repo.dir });
    const sha = await repo.commit({ 'server.js': 'console.log(2)\n' }, 'second');

    await writeBuildOutput(repo.dir, 'forward', 0o664, new Date('2020-01-01T00:00:00Z'));
    const first = await packOnce(repo, sha, new Date('2026-01-01T00:00:00Z'));

    // Another clone, packed a year later, build output written in the other order with other modes and mtimes.
    const clone = path.join(dir, 'clone');
    expect((await runCommand(['git', 'clone', '-q', repo.dir, clone], { timeoutMs: 30_000 })).exitCode).toBe(0);
    const oldUmask = process.umask(0o077);
    try {
      await writeBuildOutput(clone, 'reverse', 0o600, new Date());
    } finally {
      process.umask(oldUmask);
    }
    const second = await packOnce({ ...repo, dir: clone }, sha, new Date('2027-06-01T12:34:56Z'));

    expect(second.packed.sha256).toBe(first.packed.sha256);
    expect(Buffer.compare(second.bytes, first.bytes)).toBe(0);
    expect(first.manifest).toMatchObject({ buildTime: first.commitTime, tag: null });

    // gzip header: mtime 0, OS byte 3 (Unix).
    expect(first.bytes.readUInt32LE(4)).toBe(0);
    expect(first.bytes[9]).toBe(3);

    // Every entry: commit time, uid/gid 0, no names, normalised modes; entries of a dir in name order.
    const { entries } = first;
    const commitSeconds = Math.floor(new Date(first.commitTime).getTime() / 1000);
    for (const entry of entries) {
      expect(Math.floor(entry.mtime!.getTime() / 1000), entry.path).toBe(commitSeconds);
      expect([entry.uid, entry.gid, entry.uname ?? '', entry.gname ?? ''], entry.path).toEqual([0, 0, '', '']);
      const mode = entry.mode! & 0o7777;
      if (entry.type === 'Directory') expect(mode, entry.path).toBe(0o755);
      else if (entry.type === 'File') expect([0o644, 0o755], entry.path).toContain(mode);
    }
    const byPath = new Map(entries.map((e) => [e.path.replace(/\/$/, ''), e]));
    expect(byPath.get('bin/run')!.mode! & 0o777).toBe(0o755);
    expect(byPath.get('dist/a.js')!.mode! & 0o777).toBe(0o644);
    expect(byPath.get('dist/link')!.type).toBe('SymbolicLink');
    expect(byPath.has(LONG)).toBe(true);
    const distOrder = entries.map((e) => e.path).filter((p) => p.startsWith('dist/'));
    expect(distOrder).toEqual(['dist/', 'dist/a.js', 'dist/b.js', 'dist/c/', 'dist/c/d.js', 'dist/c/e.js', 'dist/link', 'dist/z.js']);
    expect(entries.at(-1)!.path).toBe('manifest.json');
  });

  it('a different build output gives another release id and tarball', async () => {
    const src = path.join(dir, 'src');
    await fs.mkdir(src, { recursive: true });
    await fs.writeFile(path.join(src, 'server.js'), 'console.log(1)\n');
    const repo = await createAppRepo(path.join(dir, 'repo'), src, { '.gitignore': 'dist/\n' });
    const sha = await repo.head();
    await writeBuildOutput(repo.dir, 'forward', 0o644, new Date());
    const first = await packOnce(repo, sha, new Date());
    await fs.writeFile(path.join(repo.dir, 'dist', 'a.js'), '// changed\n');
    const second = await packOnce(repo, sha, new Date());
    expect(second.manifest.releaseId).not.toBe(first.manifest.releaseId);
    expect(second.packed.sha256).not.toBe(first.packed.sha256);
  });
});
