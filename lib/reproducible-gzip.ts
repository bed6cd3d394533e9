import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

/** RFC 1952: the OS byte of the gzip header. */
const GZIP_OS_OFFSET = 9;
const GZIP_OS_UNIX = 3;

/**
 * Gzips `source` into `target` (created 0600), hashing on the way out. The output depends only on
 * the input: the gzip header's mtime is 0 (zlib's) and its OS byte is 3 (Unix) whatever the
 * platform, so the controller packing a release and the agent re-packing it from its files
 * (agent/release/repack.ts) give the same bytes.
 */
export async function gzipReproducibly(source: string, target: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (bytes <= GZIP_OS_OFFSET && bytes + chunk.length > GZIP_OS_OFFSET) {
        chunk = Buffer.from(chunk);
        chunk[GZIP_OS_OFFSET - bytes] = GZIP_OS_UNIX;
      }
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(createReadStream(source), createGzip({ level: 6 }), tap, createWriteStream(target, { mode: 0o600 }));
  return { bytes, sha256: hash.digest('hex') };
}
