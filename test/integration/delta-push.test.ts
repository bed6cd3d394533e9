/**
 * Delta uploads end to end (issue 16, part 1): `deploy push` through the CLI against real sshd,
 * nginx, PM2 and SQLite. A second push sends only what changed; a base file corrupted on the box
 * is detected, the push falls back to the full tarball, and the release served is exactly the
 * commit.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';

const VENDOR_FILES = 300;

describe('delta uploads through deploy push (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;

  async function pushJson(): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; output: string }> {
    const result = await stack.deploy(['--json', 'push']);
    const lines = result.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    return { code: result.code, lines, output: result.stdout + result.stderr };
  }
  const served = async (): Promise<{ release: string; message: string }> => JSON.parse((await stack.get('/')).body);
  const releaseDir = (id: string) => path.join(stack.home, 'releases', APP, id);
  const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

  async function hashes(dir: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const walk = async (rel: string): Promise<void> => {
      for (const name of (await fs.readdir(path.join(dir, rel))).sort()) {
        const child = rel ? `${rel}/${name}` : name;
        const st = await fs.lstat(path.join(dir, child));
        if (st.isDirectory()) await walk(child);
        else if (st.isFile()) out[child] = `${(st.mode & 0o777).toString(8)} ${sha256(await fs.readFile(path.join(dir, child)))}`;
      }
    };
    await walk('');
    return out;
  }

  beforeAll(async () => {
    stack = await startStack();
    const vendor: Record<string, string> = {};
    for (let i = 0; i < VENDOR_FILES; i++) vendor[`vendor/lib${i % 10}/mod${i}.js`] = `module.exports = ${JSON.stringify(randomBytes(1000).toString('hex'))};\n`;
    await stack.repo.commit(vendor, 'vendored dependencies');
    const first = await pushJson();
    expect(first.code, first.output).toBe(0);
    expect(first.lines.find((l) => l.upload === 'full'), first.output).toBeTruthy();
  }, 240_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('one file changed: only it and the file manifest cross; the new release is served; the previous one stays byte-identical', async () => {
    const previous = (await served()).release;
    const before = await hashes(releaseDir(previous));
    const [kept] = await fs.readdir(path.join(stack.home, 'artifacts', APP));
    const fullBytes = (await fs.stat(path.join(stack.home, 'artifacts', APP, kept!))).size;
    await stack.repo.commit({ 'message.txt': 'delta one\n' }, 'one file changed');
    const pushed = await pushJson();
    expect(pushed.code, pushed.output).toBe(0);
    const delta = pushed.lines.find((l) => l.delta !== undefined)?.delta as { missing: number; contents: number } | undefined;
    expect(delta, pushed.output).toMatchObject({ missing: 1 });
    expect(pushed.lines.find((l) => l.upload === 'delta'), pushed.output).toBeTruthy();
    const result = pushed.lines.at(-1)!;
    expect(result).toMatchObject({ type: 'result', outcome: 'succeeded' });
    // The whole release compresses to fullBytes; the delta is the one file and the file manifest.
    expect(result.uploadedBytes as number).toBeLessThan(fullBytes / 10);
    const now = await served();
    expect(now.message).toBe('delta one');
    expect(now.release).not.toBe(previous);
    expect(await hashes(releaseDir(previous))).toEqual(before);
    const vendorFile = 'vendor/lib0/mod0.js';
    const [a, b] = await Promise.all([fs.stat(path.join(releaseDir(previous), vendorFile)), fs.stat(path.join(releaseDir(now.release), vendorFile))]);
    expect(b.ino, 'an unchanged file is shared, not sent').toBe(a.ino);
  }, 240_000);

  it('a base file corrupted on the box: detected, the full release is sent, the release served is exactly the commit', async () => {
    const live = (await served()).release;
    const victim = path.join(releaseDir(live), 'vendor/lib1/mod1.js');
    const good = await fs.readFile(victim);
    // Every release holding this content shares the inode: the only copy the box has goes bad.
    const bad = Buffer.from(good);
    bad[20] = bad[20] === 0x79 ? 0x7a : 0x79;
    await fs.writeFile(victim, bad);
    try {
      await stack.repo.commit({ 'message.txt': 'after corruption\n' }, 'another change');
      const pushed = await pushJson();
      expect(pushed.code, pushed.output).toBe(0);
      expect(pushed.lines.find((l) => l.upload === 'fallback' && l.reason === 'delta_base_mismatch'), pushed.output).toBeTruthy();
      expect(pushed.lines.find((l) => l.upload === 'full'), pushed.output).toBeTruthy();
      const now = await served();
      expect(now.message).toBe('after corruption');
      expect(await fs.readFile(path.join(releaseDir(now.release), 'vendor/lib1/mod1.js'))).toEqual(good);
      const st = await fs.stat(path.join(releaseDir(now.release), 'vendor/lib1/mod1.js'));
      expect(st.ino, 'the new release has its own good copy').not.toBe((await fs.stat(victim)).ino);
    } finally {
      await fs.writeFile(victim, good);
    }
  }, 240_000);
});
