import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { createGunzip } from 'node:zlib';
import { MongoArchiveReader, type MongoArchiveSummary } from './mongo-archive.js';

// One read of a backup file: its sha256 and size, its first bytes (format magic), and when asked
// a full gunzip (gzip CRC) and a parse of the mongodump archive inside, all in the same pass.

export interface FileScan {
  sha256: string;
  bytes: number;
  head: Buffer;
  gzipError: string | null;
  mongo: MongoArchiveSummary | null;
}

/** One read of the file: sha256, and when asked, a full gunzip and a mongodump archive parse. */
export async function scanFile(file: string, options: { gzip: boolean; mongoArchive: boolean }): Promise<FileScan> {
  const hash = createHash('sha256');
  let bytes = 0;
  let head = Buffer.alloc(0);
  const reader = options.mongoArchive ? new MongoArchiveReader() : null;
  const gunzip = options.gzip ? createGunzip() : null;
  let gzipError: string | null = null;
  const gunzipDone = gunzip
    ? new Promise<void>((resolve) => {
        gunzip.on('data', (c: Buffer) => reader?.push(c));
        gunzip.once('end', resolve);
        gunzip.once('error', (e) => { gzipError = e.message; resolve(); });
      })
    : Promise.resolve();
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (head.length < 8) head = Buffer.concat([head, chunk.subarray(0, 8 - head.length)]);
    if (gunzip && gzipError === null && !gunzip.write(chunk)) {
      await Promise.race([once(gunzip, 'drain'), gunzipDone]);
    }
  }
  if (gunzip && bytes === 0) {
    gzipError = 'the file is empty';
    gunzip.destroy();
  } else if (gunzip) {
    if (gzipError === null) gunzip.end();
    await gunzipDone;
  }
  return { sha256: hash.digest('hex'), bytes, head, gzipError, mongo: gzipError === null && reader ? reader.end() : null };
}
