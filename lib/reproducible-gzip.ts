import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, open } from 'node:fs/promises';
import { once } from 'node:events';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { constants, createDeflateRaw, deflateRawSync, type DeflateRaw } from 'node:zlib';

/** The level for data that compresses: what every release was packed with. */
export const GZIP_LEVEL = 6;
/** The input is judged, and its level chosen, per segment of this many bytes (the last may be shorter). */
export const SEGMENT_BYTES = 1024 * 1024;
/** Bytes of each probe window (three per segment: its start, middle and end). */
const PROBE_BYTES = 8 * 1024;
/** Order-0 entropy (bits per byte) above which a window may be incompressible; text is 4–6, random 7.97. */
const ENTROPY_ABOVE = 7.8;
/** The middle window then "does not compress" when level 1 leaves it above this share of its size. */
const STORE_ABOVE = 0.95;

/**
 * Pure: the deflate level for one segment of the input: 0 (stored as it is) when its three probe
 * windows (start, middle, end) all have the byte statistics of random data and the middle one does
 * not compress at level 1 either (a repeated pattern would), else GZIP_LEVEL. Random or
 * already-compressed bytes (media, archives, encrypted blobs) leave level 6 at 0.02% above their
 * size anyway (zlib falls back to stored blocks), after a full match search costing ≈ 20–30 CPU-ms
 * per MB; level 0 writes stored blocks at memcpy speed. A segment shorter than three windows is compressed.
 */
export function segmentLevel(segment: Buffer): number {
  if (segment.length < 3 * PROBE_BYTES) return GZIP_LEVEL;
  const middle = Math.floor((segment.length - PROBE_BYTES) / 2);
  for (const start of [0, middle, segment.length - PROBE_BYTES]) {
    if (entropy(segment, start, PROBE_BYTES) <= ENTROPY_ABOVE) return GZIP_LEVEL;
  }
  const window = segment.subarray(middle, middle + PROBE_BYTES);
  return deflateRawSync(window, { level: 1 }).length > window.length * STORE_ABOVE ? 0 : GZIP_LEVEL;
}

/** Pure: the order-0 entropy, in bits per byte, of `length` bytes of `data` from `start`. */
export function entropy(data: Buffer, start: number, length: number): number {
  const counts = new Uint32Array(256);
  for (let i = start; i < start + length; i++) counts[data[i]!]!++;
  let bits = 0;
  for (const count of counts) {
    if (count === 0) continue;
    const p = count / length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/**
 * Gzips `source` into `target` (created 0600), hashing on the way out. The output depends only on
 * the input: a fixed gzip header (mtime 0, no name, OS byte 3 = Unix: what zlib writes for level 6
 * on Unix) whatever the platform, and each SEGMENT_BYTES of the input deflated at the level
 * segmentLevel() gives for its bytes (the level changes with a sync flush, between segments only),
 * so the controller packing a release and the agent re-packing it from its files
 * (agent/release/repack.ts) give the same bytes. Input that compresses gives exactly the bytes of a
 * plain level-6 gzip (no flush is ever made); incompressible segments are stored, not searched for
 * matches. Any gunzip reads both.
 *
 * The deflate stream is raw, framed here (RFC 1952), because node's Gzip ignores params() (node 20: a
 * Gzip switched to level 0 still searched for matches and wrote level 6's bytes; DeflateRaw switches).
 */
export async function gzipReproducibly(source: string, target: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const deflate = createDeflateRaw({ level: GZIP_LEVEL });
  const sink = createWriteStream(target, { mode: 0o600 });
  // The header goes out before the deflate stream, the trailer after it (feed() writes it).
  tap.write(GZIP_HEADER);
  // deflate stays out of the pipeline: a failing write (a full disk) destroys what is in it, and
  // deflate must not be destroyed while feed() calls into it. A write into a destroyed stream waits
  // for a 'drain' that never comes (the source stays open), and a level switch in flight then
  // fails node's internal assertion ("zlib binding closed"), uncaught.
  const written = pipeline(tap, sink);
  const stop = new AbortController();
  deflate.on('error', (error) => tap.destroy(error));
  deflate.pipe(tap);
  written.catch((error: unknown) => {
    stop.abort(error);
    // Its output is dropped from now on, so a write or a level switch under way completes.
    deflate.unpipe(tap);
    deflate.resume();
  });
  let trailer: Buffer;
  try {
    trailer = await feed(source, deflate, stop.signal);
    await written;
  } catch (error) {
    const cause: unknown = stop.signal.aborted ? stop.signal.reason : error;
    // feed() has settled: nothing calls into deflate any more.
    deflate.destroy();
    tap.destroy(error as Error);
    await written.catch(() => undefined);
    // The pipeline may settle before the output's fd is closed (or even opened): the caller gets
    // the error once nothing of this call holds a file any more.
    sink.destroy();
    if (!sink.closed) await once(sink, 'close');
    throw cause;
  }
  await appendFile(target, trailer);
  hash.update(trailer);
  bytes += trailer.length;
  return { bytes, sha256: hash.digest('hex') };
}

/** RFC 1952 header: magic, deflate, no flags, mtime 0, XFL 0 (level 6), OS 3 (Unix). */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);

/**
 * Writes `source` into `deflate` segment by segment, each at its level; ends it; returns the gzip
 * trailer (CRC-32, size mod 2^32). Stops with the output's error once `stopped` aborts; a level
 * switch it started is awaited even then (deflate must not be destroyed under it).
 */
async function feed(source: string, deflate: DeflateRaw, stopped: AbortSignal): Promise<Buffer> {
  const handle = await open(source, 'r');
  let crc = 0;
  let size = 0;
  try {
    let level = GZIP_LEVEL;
    for (;;) {
      // A fresh buffer per segment: zlib holds a written chunk until it has consumed it.
      const segment = Buffer.allocUnsafe(SEGMENT_BYTES);
      let filled = 0;
      while (filled < SEGMENT_BYTES) {
        const { bytesRead } = await handle.read(segment, filled, SEGMENT_BYTES - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) break;
      const chunk = segment.subarray(0, filled);
      const want = segmentLevel(chunk);
      if (want !== level) {
        stopped.throwIfAborted();
        await new Promise<void>((resolve) => deflate.params(want, constants.Z_DEFAULT_STRATEGY, () => resolve()));
        level = want;
      }
      crc = crc32(chunk, crc);
      size += filled;
      stopped.throwIfAborted();
      if (!deflate.write(chunk)) await once(deflate, 'drain', { signal: stopped });
      if (filled < SEGMENT_BYTES) break;
    }
  } finally {
    await handle.close();
  }
  deflate.end();
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(size % 2 ** 32, 4);
  return trailer;
}

/** zlib.crc32 (node ≥ 20.15, 22.2), else a table-driven one (older node 20 agents). */
// A namespace read, not a named import: a named import of an export node lacks fails at load time.
const zlibCrc32 = (zlib as { crc32?: (data: Buffer, value: number) => number }).crc32;
const crc32: (data: Buffer, value: number) => number = typeof zlibCrc32 === 'function' ? zlibCrc32 : tableCrc32;

let table: Uint32Array | null = null;
/** CRC-32 (IEEE, as gzip's trailer) of `data`, continuing from `value`; exported for its test. */
export function tableCrc32(data: Buffer, value: number): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
