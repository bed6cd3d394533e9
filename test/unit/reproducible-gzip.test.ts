/**
 * lib/reproducible-gzip.ts: input that compresses gives the bytes of a plain level-6 gzip (what
 * every release was packed with before incompressible segments were stored); random segments are
 * stored; the output is a gzip any reader takes, and depends only on the input. And
 * controller/pack.ts bundleOncePerSet: one bundle per manifest and set of contents.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
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
