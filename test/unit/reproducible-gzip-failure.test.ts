/**
 * lib/reproducible-gzip.ts when writing the output fails (a full disk: /dev/full answers every
 * write with ENOSPC): the promise rejects with that error, nothing is thrown outside it (a level
 * switch in flight when the output failed must not reach node's "zlib binding closed" assertion),
 * and the source is closed by then (a leaked handle keeps a deleted temp tar's space held on the
 * full disk). And a source that cannot be read fails it the same way.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fs, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gzipReproducibly, SEGMENT_BYTES } from '../../lib/reproducible-gzip.js';

// Without the fix a case can wait for a 'drain' that never comes: fail fast instead.
const TEST_TIMEOUT_MS = 15_000;

let dir: string;
const uncaught: unknown[] = [];
const record = (error: unknown) => { uncaught.push(error); };
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-gzip-fail-'));
  uncaught.length = 0;
  process.on('uncaughtException', record);
});
afterEach(async () => {
  process.off('uncaughtException', record);
  await fs.rm(dir, { recursive: true, force: true });
});

function random(bytes: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(bytes));
}

function text(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `export const value_${i} = compute(${i % 977}, "${(i * 7919) % 10007}");\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

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

async function gzipToFullDisk(data: Buffer): Promise<void> {
  const source = path.join(dir, 'plain.tar');
  await fs.writeFile(source, data);
  await expect(gzipReproducibly(source, '/dev/full')).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(openFiles()).not.toContain(source);
  expect(uncaught).toEqual([]);
}

describe('gzipReproducibly into a full disk', () => {
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
