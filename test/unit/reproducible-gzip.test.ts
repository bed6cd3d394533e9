/**
 * lib/reproducible-gzip.ts: input that compresses gives the bytes of a plain level-6 gzip (what
 * every release was packed with before incompressible segments were stored); random segments are
 * stored; the output is a gzip any reader takes, and depends only on the input; a failing output
 * or source rejects the promise and leaves nothing open or running. And
 * controller/pack.ts bundleOncePerSet: one bundle per manifest and set of contents.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fs, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as zlib from 'node:zlib';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { entropy, GZIP_LEVEL, gzipReproducibly, SEGMENT_BYTES, segmentLevel, tableCrc32 } from '../../lib/reproducible-gzip.js';
import { bundleKey, bundleOncePerSet } from '../../controller/pack.js';
import type { DeltaBundle } from '../../controller/delta-bundle.js';
import type { ReleaseManifest } from '../../contract/manifest.js';

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-gzip-')); });
afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

/** Deterministic incompressible bytes. */
function random(bytes: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(bytes));
}

/** Source-like text that compresses well. */
function text(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `export function handler_${i}(request) { return request.params.id * ${i % 1013} + ${(i * 7919) % 10007}; }\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/** node's level-6 gzip with the OS byte the packer always writes (3, Unix). */
function plainGzip(data: Buffer): Buffer {
  const out = gzipSync(data, { level: GZIP_LEVEL });
  out[9] = 3;
  return out;
}

async function gzipOf(data: Buffer, name = 'in'): Promise<{ out: Buffer; bytes: number; sha256: string }> {
  const source = path.join(dir, name);
  await fs.writeFile(source, data);
  const target = path.join(dir, `${name}.gz`);
  const packed = await gzipReproducibly(source, target);
  return { out: await fs.readFile(target), ...packed };
}

describe('segmentLevel', () => {
  it('stores random bytes and compresses text, short segments and a repeated random pattern', () => {
    expect(segmentLevel(random(SEGMENT_BYTES, 'a'))).toBe(0);
    expect(segmentLevel(text(SEGMENT_BYTES))).toBe(GZIP_LEVEL);
    expect(segmentLevel(random(16 * 1024, 'short'))).toBe(GZIP_LEVEL);
    // Random at the start, text in the middle: one text window is enough to compress.
    expect(segmentLevel(Buffer.concat([random(SEGMENT_BYTES / 2, 'b'), text(SEGMENT_BYTES / 2)]))).toBe(GZIP_LEVEL);
    // High byte entropy, but a 2 KiB pattern repeats: deflate finds it, so it is compressed.
    const pattern = random(2048, 'c');
    expect(segmentLevel(Buffer.concat(Array.from({ length: SEGMENT_BYTES / 2048 }, () => pattern)))).toBe(GZIP_LEVEL);
  });

  it('the table CRC-32 (for node < 20.15) is zlib\'s, in one piece and continued', () => {
    const data = random(100_003, 'crc');
    const crc32 = (zlib as { crc32?: (d: Buffer, v?: number) => number }).crc32;
    expect(tableCrc32(Buffer.from('123456789'), 0)).toBe(0xcbf43926);
    expect(tableCrc32(data.subarray(5000), tableCrc32(data.subarray(0, 5000), 0))).toBe(tableCrc32(data, 0));
    if (crc32) expect(tableCrc32(data, 0)).toBe(crc32(data));
  });

  it('entropy: 8 bits for every byte value once, 0 for one value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(entropy(all, 0, 256)).toBeCloseTo(8, 10);
    expect(entropy(Buffer.alloc(100, 7), 0, 100)).toBe(0);
  });
});

describe('gzipReproducibly', () => {
  it('gives the bytes of a plain level-6 gzip for input that compresses (no flush, same header)', async () => {
    const data = text(3 * SEGMENT_BYTES + 12_345);
    const { out, bytes, sha256 } = await gzipOf(data);
    expect(out.equals(plainGzip(data))).toBe(true);
    expect(bytes).toBe(out.length);
    expect(sha256).toBe(createHash('sha256').update(out).digest('hex'));
  });

  it('stores random segments: about the input size, far from a compressed size, and read back whole by gunzip', async () => {
    const data = Buffer.concat([text(SEGMENT_BYTES), random(3 * SEGMENT_BYTES, 'r'), text(SEGMENT_BYTES + 999)]);
    const { out, bytes } = await gzipOf(data);
    expect(gunzipSync(out).equals(data)).toBe(true);
    // Stored blocks: 5 bytes per 64 KiB of random input, plus the compressed text; never above level 6's size.
    expect(bytes).toBeLessThanOrEqual(plainGzip(data).length);
    expect(bytes).toBeGreaterThan(3 * SEGMENT_BYTES);
    expect(out.subarray(0, 10).equals(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]))).toBe(true);
  });

  it('depends only on the input: the same bytes twice give the same gzip; empty input gives a valid gzip', async () => {
    const data = Buffer.concat([random(SEGMENT_BYTES + 5, 'x'), text(200_000)]);
    const first = await gzipOf(data, 'one');
    const second = await gzipOf(Buffer.from(data), 'two');
    expect(second.out.equals(first.out)).toBe(true);
    expect(second.sha256).toBe(first.sha256);
    const empty = await gzipOf(Buffer.alloc(0), 'empty');
    expect(gunzipSync(empty.out).length).toBe(0);
    expect(empty.out.equals(plainGzip(Buffer.alloc(0)))).toBe(true);
  });

  it('fails (and creates nothing readable as a release) when the source is missing', async () => {
    await expect(gzipReproducibly(path.join(dir, 'absent'), path.join(dir, 'absent.gz'))).rejects.toThrow(/ENOENT/);
  });
});

describe('bundleOncePerSet', () => {
  const manifest = { app: 'a', releaseId: 'r1', contentDigest: 'd' } as unknown as ReleaseManifest;
  const fake = (n: number): DeltaBundle => ({ file: `/tmp/b${n}`, bytes: n, sha256: `${n}`, objects: 1, objectBytes: n });

  it('cuts one bundle per manifest and set of contents, in any order; cuts again after a failure', async () => {
    let cuts = 0;
    let fail = false;
    const bundle = bundleOncePerSet(() => undefined, async () => {
      cuts++;
      if (fail) throw new Error('disk full');
      return fake(cuts);
    });
    const [a, b] = await Promise.all([bundle(manifest, new Set(['x', 'y'])), bundle(manifest, new Set(['y', 'x']))]);
    expect(a).toBe(b);
    expect(cuts).toBe(1);
    await bundle(manifest, new Set(['x']));
    expect(cuts).toBe(2);
    fail = true;
    await expect(bundle(manifest, new Set(['z']))).rejects.toThrow('disk full');
    fail = false;
    await expect(bundle(manifest, new Set(['z']))).resolves.toMatchObject({ bytes: 4 });
    expect(bundleKey(manifest, new Set(['b', 'a']))).toBe(bundleKey(manifest, new Set(['a', 'b'])));
    expect(bundleKey(manifest, new Set(['a']))).not.toBe(bundleKey({ ...manifest, releaseId: 'r2' }, new Set(['a'])));
  });

  it('checks the manifest every time, before any cut', async () => {
    const bundle = bundleOncePerSet((m) => { if (m.contentDigest !== 'd') throw new Error('digest'); }, async () => fake(1));
    await bundle(manifest, new Set(['x']));
    expect(() => bundle({ ...manifest, contentDigest: 'other' }, new Set(['x']))).toThrow('digest');
  });
});

// A case that waits for a 'drain' that never comes fails at this, not at the suite's 120 s.
const TEST_TIMEOUT_MS = 15_000;

/** The files this process holds open (its /proc/self/fd links). */
function openFiles(): string[] {
  const fds = '/proc/self/fd';
  return readdirSync(fds).flatMap((fd) => {
    try {
      return [readlinkSync(path.join(fds, fd))];
    } catch {
      return []; // closed while listing (the listing's own fd)
    }
  });
}

describe('gzipReproducibly into a full disk (/dev/full answers every write with ENOSPC)', () => {
  // The promise rejects with the write's error; nothing is thrown outside it (a level switch in
  // flight when the output failed must not reach node's "zlib binding closed" assertion); the
  // source is closed by then (a leaked handle keeps a deleted temp tar's space held on the full
  // disk). A source that cannot be read fails it the same way.
  const uncaught: unknown[] = [];
  const record = (error: unknown) => { uncaught.push(error); };
  beforeEach(() => {
    uncaught.length = 0;
    process.on('uncaughtException', record);
  });
  afterEach(() => { process.off('uncaughtException', record); });

  async function gzipToFullDisk(data: Buffer): Promise<void> {
    const source = path.join(dir, 'plain.tar');
    await fs.writeFile(source, data);
    await expect(gzipReproducibly(source, '/dev/full')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(openFiles()).not.toContain(source);
    expect(uncaught).toEqual([]);
  }

  it('incompressible input (its first segment switches the level): rejects with ENOSPC, no uncaught error, the source closed', async () => {
    await gzipToFullDisk(random(4 * SEGMENT_BYTES, 'full-random'));
  }, TEST_TIMEOUT_MS);

  it('text (one level throughout): rejects with ENOSPC, the source closed', async () => {
    await gzipToFullDisk(text(8 * SEGMENT_BYTES));
  }, TEST_TIMEOUT_MS);

  it('segments that switch the level several times: rejects with ENOSPC, no uncaught error, the source closed', async () => {
    const segments = Array.from({ length: 8 }, (_, i) => (i % 2 ? text(SEGMENT_BYTES) : random(SEGMENT_BYTES, `mixed-${i}`)));
    await gzipToFullDisk(Buffer.concat(segments));
  }, TEST_TIMEOUT_MS);

  it('the same inputs, repeated: every run settles the same way', async () => {
    const inputs = [random(2 * SEGMENT_BYTES, 'again'), text(2 * SEGMENT_BYTES), Buffer.concat([text(SEGMENT_BYTES), random(SEGMENT_BYTES, 'x'), text(SEGMENT_BYTES)])];
    for (let round = 0; round < 5; round++) {
      for (const input of inputs) await gzipToFullDisk(input);
    }
  }, 4 * TEST_TIMEOUT_MS);

  it('a source that cannot be read (a directory): rejects with its error, the output closed', async () => {
    const target = path.join(dir, 'out.gz');
    await expect(gzipReproducibly(dir, target)).rejects.toMatchObject({ code: 'EISDIR' });
    expect(openFiles()).not.toContain(target);
    expect(uncaught).toEqual([]);
  }, TEST_TIMEOUT_MS);
});
