/**
 * Builds tar archives byte by byte, so tests can make the entries no well-behaved tool would
 * write: `../` and absolute paths, links out of the tree, device files, setuid modes, broken
 * checksums, missing end markers, lying sizes and gzip bombs. Every field is written as given;
 * nothing is sanitised.
 */
import { gzipSync } from 'node:zlib';

export type CraftType =
  | 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'contiguous'
  | 'sparse' | 'pax' | 'globalPax' | 'gnuLongName';

const TYPEFLAG: Record<CraftType, string> = {
  file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6', contiguous: '7',
  sparse: 'S', pax: 'x', globalPax: 'g', gnuLongName: 'L',
};

export interface CraftEntry {
  /** Written verbatim into the name field (and the prefix field, if given). */
  path: string;
  type?: CraftType;
  /** Raw typeflag character; overrides `type`. */
  typeflag?: string;
  body?: string | Buffer;
  /** Size written into the header; defaults to the body's length. The body is written as is. */
  size?: number;
  linkpath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** ustar prefix field (joined to the name with `/` by readers). */
  prefix?: string;
  devmajor?: number;
  devminor?: number;
  /** Store a checksum that is off by one. */
  corruptChecksum?: boolean;
  /** Magic field; defaults to POSIX `ustar\0` + version `00`. */
  magic?: 'posix' | 'gnu' | 'none';
}

const BLOCK = 512;

function writeString(block: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new Error(`crafted-tar: ${JSON.stringify(value)} does not fit in ${length} bytes`);
  bytes.copy(block, offset);
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`crafted-tar: ${value} does not fit in a ${length}-byte octal field`);
  writeString(block, offset, length, `${digits.padStart(length - 1, '0')}\0`);
}

function bodyOf(entry: CraftEntry): Buffer {
  return entry.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(entry.body) ? entry.body : Buffer.from(entry.body, 'utf8');
}

/** One 512-byte header block. */
export function header(entry: CraftEntry): Buffer {
  const block = Buffer.alloc(BLOCK);
  const type = entry.type ?? 'file';
  const isDir = type === 'dir';
  writeString(block, 0, 100, entry.path);
  writeOctal(block, 100, 8, entry.mode ?? (isDir ? 0o755 : 0o644));
  writeOctal(block, 108, 8, entry.uid ?? 1000);
  writeOctal(block, 116, 8, entry.gid ?? 1000);
  writeOctal(block, 124, 12, entry.size ?? bodyOf(entry).length);
  writeOctal(block, 136, 12, entry.mtime ?? 1_700_000_000);
  block.write(entry.typeflag ?? TYPEFLAG[type], 156, 'latin1');
  if (entry.linkpath !== undefined) writeString(block, 157, 100, entry.linkpath);
  const magic = entry.magic ?? 'posix';
  if (magic === 'posix') block.write('ustar\u000000', 257, 'latin1');
  if (magic === 'gnu') block.write('ustar  \u0000', 257, 'latin1');
  writeString(block, 265, 32, 'app');
  writeString(block, 297, 32, 'app');
  writeOctal(block, 329, 8, entry.devmajor ?? 0);
  writeOctal(block, 337, 8, entry.devminor ?? 0);
  if (entry.prefix !== undefined) writeString(block, 345, 155, entry.prefix);
  // The checksum is computed with its own field read as eight spaces.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  if (entry.corruptChecksum) sum += 1;
  writeString(block, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return block;
}

function padded(body: Buffer): Buffer {
  const rest = body.length % BLOCK;
  return rest === 0 ? body : Buffer.concat([body, Buffer.alloc(BLOCK - rest)]);
}

/** Header plus body, padded to whole blocks. */
export function entryBlocks(entry: CraftEntry): Buffer {
  return Buffer.concat([header(entry), padded(bodyOf(entry))]);
}

/** A pax extended header (`x`, or `g` for global) carrying the given records. */
export function paxEntry(records: Record<string, string>, global = false): CraftEntry {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const line = ` ${key}=${value}\n`;
    // The length prefix counts itself, so find the length that is consistent.
    let length = Buffer.byteLength(line) + 1;
    while (String(length).length + Buffer.byteLength(line) !== length) length += 1;
    text += `${length}${line}`;
  }
  return { path: global ? 'pax_global_header' : 'PaxHeader/entry', type: global ? 'globalPax' : 'pax', body: text };
}

export interface TarballOptions {
  /** Write the two zero blocks that end an archive (default true). */
  endMarker?: boolean;
  /** Bytes appended after everything else (padding, garbage, another archive). */
  trailing?: Buffer;
}

export function tarball(entries: CraftEntry[], options: TarballOptions = {}): Buffer {
  const parts = entries.map(entryBlocks);
  if (options.endMarker ?? true) parts.push(Buffer.alloc(2 * BLOCK));
  if (options.trailing) parts.push(options.trailing);
  return Buffer.concat(parts);
}

export function gzip(data: Buffer): Buffer {
  return gzipSync(data, { level: 9 });
}

let zeroMember: Buffer | undefined;
const ZERO_MEMBER_BYTES = 16 * 1024 * 1024;

/**
 * gzip(`prefix`) followed by enough gzip members of zeros to decompress to at least
 * `zeroBytes` more bytes (in multiples of 16 MiB). Concatenated members are one valid gzip
 * stream, so a ~1 MB file expands to a gigabyte without ever holding it in memory.
 */
export function gzipBomb(prefix: Buffer, zeroBytes: number): Buffer {
  zeroMember ??= gzipSync(Buffer.alloc(ZERO_MEMBER_BYTES), { level: 9 });
  const members = Math.ceil(zeroBytes / ZERO_MEMBER_BYTES);
  return Buffer.concat([gzipSync(prefix), ...Array.from({ length: members }, () => zeroMember!)]);
}

/** Bytes a gzipBomb decompresses to. */
export function gzipBombExpandedBytes(prefix: Buffer, zeroBytes: number): number {
  return prefix.length + Math.ceil(zeroBytes / ZERO_MEMBER_BYTES) * ZERO_MEMBER_BYTES;
}
