/**
 * A release's file manifest: every entry of its tree (contract/release-content.ts) in tree order,
 * each directory before what it holds. The content digest, the release's identity, is the digest
 * of exactly these entries, so a release assembled from a manifest is the release it names.
 *
 * It travels in a delta upload (files.json in the bundle, see DELTA_BUNDLE below) and is kept by
 * the agent beside every release it stores: the index of the file contents it can reuse.
 *
 * Encoding, version 1: JSON `{ "format": "slipway-files-v1", "entries": [tuple, ...] }`, each tuple
 * the one the content digest hashes: [path, type, mode (octal string) | null, size | null,
 * sha256 | null, symlink target | null].
 */
import { SlipwayError } from './errors.js';
import { contentDigest, type ContentEntry } from './release-content.js';

export const FILE_MANIFEST_FORMAT = 'slipway-files-v1';

/**
 * A delta upload's body is a gzip tar of: `files.json` (the file manifest), `objects/<sha256>`
 * for every file content the host lacks (once each, whatever its paths and modes), and the
 * release's `manifest.json`. Nothing else may be in it.
 */
export const DELTA_BUNDLE = { files: 'files.json', objectsDir: 'objects', manifest: 'manifest.json' } as const;

type Tuple = [string, ContentEntry['type'], string | null, number | null, string | null, string | null];

const SHA256 = /^[0-9a-f]{64}$/;
const OCTAL_MODE = /^[0-7]{1,4}$/;

export function encodeFileManifest(entries: readonly ContentEntry[]): string {
  return JSON.stringify({ format: FILE_MANIFEST_FORMAT, entries: entries.map(toTuple) });
}

function toTuple(entry: ContentEntry): Tuple {
  switch (entry.type) {
    case 'file': return [entry.path, 'file', entry.mode.toString(8), entry.size, entry.sha256, null];
    case 'directory': return [entry.path, 'directory', entry.mode.toString(8), null, null, null];
    case 'symlink': return [entry.path, 'symlink', null, null, null, entry.target];
  }
}

/**
 * Pure: the entries of an encoded file manifest, each checked for its shape (paths and links are
 * the tar entry policy's to judge, where the tree is made). Throws delta_bundle_invalid.
 */
export function decodeFileManifest(text: string, maxEntries: number): ContentEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid(`it is not JSON (${(error as Error).message})`);
  }
  if (!isRecord(parsed) || parsed.format !== FILE_MANIFEST_FORMAT || !Array.isArray(parsed.entries)) {
    throw invalid(`it is not a ${FILE_MANIFEST_FORMAT} manifest`);
  }
  if (parsed.entries.length > maxEntries) {
    throw invalid(`it lists ${parsed.entries.length} entries, more than limits.maxEntries (${maxEntries})`);
  }
  return parsed.entries.map((tuple, index) => fromTuple(tuple, index));
}

function fromTuple(tuple: unknown, index: number): ContentEntry {
  const bad = (why: string) => invalid(`entry ${index} ${why}`);
  if (!Array.isArray(tuple) || tuple.length !== 6) throw bad('is not a 6-field tuple');
  const [path, type, mode, size, sha256, target] = tuple as unknown[];
  if (typeof path !== 'string' || path === '') throw bad('has no path');
  switch (type) {
    case 'file':
      if (typeof mode !== 'string' || !OCTAL_MODE.test(mode)) throw bad('has no octal mode');
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('has no byte size');
      if (typeof sha256 !== 'string' || !SHA256.test(sha256)) throw bad('has no sha256');
      if (target !== null) throw bad('is a file with a link target');
      return { path, type, mode: parseInt(mode, 8), size, sha256 };
    case 'directory':
      if (typeof mode !== 'string' || !OCTAL_MODE.test(mode)) throw bad('has no octal mode');
      if (size !== null || sha256 !== null || target !== null) throw bad('is a directory with a size, hash or target');
      return { path, type, mode: parseInt(mode, 8) };
    case 'symlink':
      if (typeof target !== 'string') throw bad('is a symlink without a target');
      if (mode !== null || size !== null || sha256 !== null) throw bad('is a symlink with a mode, size or hash');
      return { path, type, target };
    default:
      throw bad(`has the unknown type ${JSON.stringify(type)}`);
  }
}

/** The distinct file contents a manifest names, in first-use order. */
export function contentHashes(entries: readonly ContentEntry[]): string[] {
  const seen = new Set<string>();
  for (const entry of entries) if (entry.type === 'file') seen.add(entry.sha256);
  return [...seen];
}

/** Bytes of the distinct contents among `hashes` (each counted once). */
export function bytesOf(entries: readonly ContentEntry[], hashes: ReadonlySet<string>): number {
  const counted = new Set<string>();
  let total = 0;
  for (const entry of entries) {
    if (entry.type !== 'file' || !hashes.has(entry.sha256) || counted.has(entry.sha256)) continue;
    counted.add(entry.sha256);
    total += entry.size;
  }
  return total;
}

/** The release identity of a file manifest: its content digest. */
export function fileManifestDigest(entries: readonly ContentEntry[]): string {
  return contentDigest(entries);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(why: string): SlipwayError {
  return new SlipwayError('delta_bundle_invalid', `the delta upload's ${DELTA_BUNDLE.files} is invalid: ${why}`, {
    status: 400, hint: 'push with `deploy push`, which writes the file manifest; nothing was stored',
  });
}
