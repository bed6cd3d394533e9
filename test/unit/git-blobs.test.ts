/**
 * The streamed blob reader (controller/content/git-blobs.ts) against a real repository: blobs in
 * the order asked for, and close() ends at once however much of git's output was never read (a
 * packing that stops at the first changed file must not wait on the blobs after it).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStream } from '../../controller/content/git-blobs.js';
import { runCommand } from '../../lib/exec.js';
import { createAppRepo } from '../helpers/git-repo.js';

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-git-blobs-')); });
afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

async function repoWithBlobs(count: number, size: number): Promise<{ repo: string; oids: string[]; contents: Buffer[] }> {
  const src = path.join(dir, 'src');
  await fs.mkdir(src, { recursive: true });
  const contents: Buffer[] = [];
  for (let i = 0; i < count; i += 1) {
    // Different bytes per file, so each is its own blob.
    const content = Buffer.alloc(size, i % 251);
    content.writeUInt32BE(i, 0);
    contents.push(content);
    await fs.writeFile(path.join(src, `f${i}.bin`), content);
  }
  const repo = await createAppRepo(path.join(dir, 'repo'), src);
  const oids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    oids.push((await runCommand(['git', 'rev-parse', `HEAD:f${i}.bin`], { cwd: repo.dir })).stdout.trim());
  }
  return { repo: repo.dir, oids, contents };
}

function readAll(stream: BlobStream, oid: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return stream.read(oid, (chunk) => { chunks.push(Buffer.from(chunk)); }).then(() => Buffer.concat(chunks));
}

describe('BlobStream', () => {
  it('streams the blobs in the order asked for', async () => {
    const { repo, oids, contents } = await repoWithBlobs(4, 200_000);
    const stream = BlobStream.open(repo, oids);
    try {
      for (let i = 0; i < oids.length; i += 1) expect((await readAll(stream, oids[i]!)).equals(contents[i]!)).toBe(true);
    } finally {
      await stream.close();
    }
  });

  it('closes at once when most of git\'s output was never read (it does not wait for the unread bytes to drain)', async () => {
    // 8 × 1 MB: far more than the pipe and the stream's buffer hold, so git is still writing,
    // and unread bytes sit in the stream when close() is called.
    const { repo, oids, contents } = await repoWithBlobs(8, 1024 * 1024);
    const stream = BlobStream.open(repo, oids);
    expect((await readAll(stream, oids[0]!)).equals(contents[0]!)).toBe(true);
    await stream.close();
  });

  it('closes at once after reading a few bytes of one blob, once the rest has arrived unread', async () => {
    const { repo, oids } = await repoWithBlobs(3, 1000);
    const stream = BlobStream.open(repo, oids);
    let stopped = false;
    await expect(stream.read(oids[0]!, () => { if (!stopped) { stopped = true; throw new Error('stop here'); } })).rejects.toThrow('stop here');
    await stream.close();
  });
});
