/**
 * Symlink traversal and duplicate checks on a file system that folds case or normalises Unicode
 * (casefold ext4 or tmpfs, APFS): `dé/l -> ..` plus `x -> dé/l/..` spelled in NFD, or `D/l` and
 * `d/l`, would resolve outside the release there although every name differs byte by byte.
 * Crafted archives go through the real extraction (node-tar's parser, the entry policy, the tree
 * writer) on this machine's case-sensitive disk; the tree writer is also fed directly, as the
 * second line behind the policy.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { extractTarball } from '../../agent/release/extract.js';
import { foldName } from '../../agent/release/name-fold.js';
import { TreeMismatch, TreeWriter, type EntryBody } from '../../agent/release/tree-writer.js';
import { tarball, type CraftEntry } from '../helpers/crafted-tar.js';

const NFC = 'd\u00e9';
const NFD = 'de\u0301';
const LIMITS = { maxEntries: 100, maxUnpackedBytes: 1024 * 1024 };

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'slipway-fold-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function refusal(entries: CraftEntry[]): Promise<SlipwayError> {
  const file = path.join(root, 'release.tar');
  await writeFile(file, tarball(entries));
  try {
    await extractTarball(file, path.join(root, 'out'), LIMITS);
  } catch (error) {
    if (error instanceof SlipwayError) return error;
    throw error;
  }
  throw new Error('the archive was extracted');
}

describe('foldName', () => {
  it.each([
    [NFC, NFD], ['D/l', 'd/l'], ['stra\u00dfe', 'STRASSE'], ['\u212a', 'k'], ['\ufb01le', 'FILE'], ['a\u200db', 'ab'], ['\u01c5', '\u01c6'],
  ])('%j and %j fold alike', (a, b) => {
    expect(foldName(a)).toBe(foldName(b));
  });

  it('keeps different names apart', () => {
    expect(foldName('a')).not.toBe(foldName('b'));
    expect(foldName(NFC)).not.toBe(foldName('de'));
  });
});

describe('crafted archives through the extraction', () => {
  it.each([
    ['dé/l -> .. (NFC), then x -> dé/l/.. (NFD)', `${NFC}/l`, `${NFD}/l/..`],
    ['dé/l -> .. (NFD), then x -> dé/l/.. (NFC)', `${NFD}/l`, `${NFC}/l/..`],
    ['D/l -> .., then x -> d/l/..', 'D/l', 'd/l/..'],
    ['d/l -> .., then x -> D/L/..', 'd/l', 'D/L/..'],
  ])('%s: refused, nothing left', async (_label, link, target) => {
    const error = await refusal([
      { path: './', type: 'dir' },
      { path: link, type: 'symlink', linkpath: '..' },
      { path: 'x', type: 'symlink', linkpath: target },
    ]);
    expect({ code: error.code, status: error.status }).toEqual({ code: 'bad_tarball', status: 400 });
    expect(error.details).toContain('rule: through_symlink');
    expect(await readdir(root)).toEqual(['release.tar']);
  });

  it.each([
    ['README and readme', [{ path: 'README', body: 'a' }, { path: 'readme', body: 'b' }]],
    ['dé composed and decomposed', [{ path: NFC, body: 'a' }, { path: NFD, body: 'b' }]],
    ['D/l -> .., then d/l/evil', [{ path: 'D/l', type: 'symlink', linkpath: '..' }, { path: 'd/l/evil', body: 'b' }]],
  ] as Array<[string, CraftEntry[]]>)('one name spelled two ways (%s): refused, nothing left', async (_label, entries) => {
    const error = await refusal(entries);
    expect({ code: error.code, status: error.status }).toEqual({ code: 'bad_tarball', status: 400 });
    expect(error.details).toContain('rule: name_collision');
    expect(await readdir(root)).toEqual(['release.tar']);
  });
});

describe('the tree writer, fed directly (policy bypassed)', () => {
  const body = (data: string, extra: Partial<EntryBody> = {}): EntryBody => {
    const bytes = Buffer.from(data);
    return Object.assign(Readable.from(bytes.length > 0 ? [bytes] : []), { size: bytes.length, ...extra });
  };

  async function write(entries: Array<[EntryBody, { path: string; kind: 'file' | 'directory' | 'symlink'; mode: number }]>): Promise<unknown[]> {
    const dest = path.join(root, 'out');
    await mkdir(dest, { mode: 0o700 });
    const errors: unknown[] = [];
    const writer = await TreeWriter.create(dest, { flushFromBytes: Infinity, onError: (error) => errors.push(error) });
    for (const [entryBody, entry] of entries) writer.add(entryBody, entry);
    await writer.settle();
    return errors;
  }

  it('refuses to create a second spelling of a directory below which a symlink points out', async () => {
    const errors = await write([
      [body(''), { path: NFC, kind: 'directory', mode: 0o755 }],
      [body('', { linkpath: '..' }), { path: `${NFC}/l`, kind: 'symlink', mode: 0o777 }],
      // Where the file system normalises names, this is dé/l/x: a file written through the link.
      [body('x'), { path: `${NFD}/l/x`, kind: 'file', mode: 0o644 }],
    ]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TreeMismatch);
    expect(String(errors[0])).toContain('folds case or normalises Unicode');
    expect(await readdir(path.join(root, 'out'))).toEqual([NFC]);
  });

  it.each([
    ['upper and lower case', 'D', 'd'],
    ['composed and decomposed', NFC, NFD],
  ])('refuses one name made twice (%s)', async (_label, first, second) => {
    const errors = await write([
      [body('a'), { path: `${first}/a`, kind: 'file', mode: 0o644 }],
      [body('b'), { path: `${second}/b`, kind: 'file', mode: 0o644 }],
    ]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TreeMismatch);
    expect(await readdir(path.join(root, 'out'))).toEqual([first]);
  });
});
