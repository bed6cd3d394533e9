import { describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { bytesOf, contentHashes, decodeFileManifest, encodeFileManifest, fileManifestDigest } from '../../contract/file-manifest.js';
import { ContentTree, type ContentEntry } from '../../contract/release-content.js';
import { deltaPath } from '../../controller/delta-upload.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

function tree(): ContentTree {
  const t = new ContentTree();
  t.add({ path: './lib/util.js', type: 'file', mode: 0o600, size: 3, sha256: A });
  t.add({ path: 'lib/', type: 'directory', mode: 0o777 });
  t.add({ path: 'bin/run', type: 'file', mode: 0o2775, size: 5, sha256: B });
  t.add({ path: 'copy.js', type: 'file', mode: 0o644, size: 3, sha256: A });
  t.add({ path: 'current', type: 'symlink', target: 'lib' });
  return t;
}

describe('file manifest (contract/file-manifest.ts)', () => {
  it('lists the tree parents first, modes normalised, and its digest is the content digest', () => {
    const entries = tree().list();
    expect(entries.map((e) => e.path)).toEqual(['lib', 'lib/util.js', 'bin', 'bin/run', 'copy.js', 'current']);
    expect(entries.find((e) => e.path === 'lib')).toEqual({ path: 'lib', type: 'directory', mode: 0o755 });
    expect(entries.find((e) => e.path === 'bin/run')).toMatchObject({ mode: 0o755 });
    expect(fileManifestDigest(entries)).toBe(tree().digest());
  });

  it('round-trips through its encoding, and the digest with it', () => {
    const entries = tree().list();
    const decoded = decodeFileManifest(encodeFileManifest(entries), 100);
    expect(decoded).toEqual(entries);
    expect(fileManifestDigest(decoded)).toBe(tree().digest());
  });

  it('names each content once, and counts its bytes once', () => {
    const entries = tree().list();
    expect(contentHashes(entries)).toEqual([A, B]);
    expect(bytesOf(entries, new Set([A]))).toBe(3);
    expect(bytesOf(entries, new Set([A, B]))).toBe(8);
  });

  it.each([
    ['not JSON', '{'],
    ['another format', JSON.stringify({ format: 'x', entries: [] })],
    ['a short tuple', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'file']] })],
    ['a file without a hash', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'file', '644', 1, 'zz', null]] })],
    ['a negative size', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'file', '644', -1, A, null]] })],
    ['a symlink with a mode', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'symlink', '777', null, null, 'b']] })],
    ['a hardlink', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'link', null, null, null, 'b']] })],
    ['a decimal mode', JSON.stringify({ format: 'slipway-files-v1', entries: [['a', 'directory', '9', null, null, null]] })],
  ])('refuses %s as delta_bundle_invalid', (_what, text) => {
    expect(() => decodeFileManifest(text, 100)).toThrow(SlipwayError);
    try { decodeFileManifest(text, 100); } catch (error) { expect((error as SlipwayError).code).toBe('delta_bundle_invalid'); }
  });

  it('refuses more entries than limits.maxEntries before reading them', () => {
    const entries: ContentEntry[] = Array.from({ length: 3 }, (_, i) => ({ path: `f${i}`, type: 'file', mode: 0o644, size: 0, sha256: A }));
    expect(() => decodeFileManifest(encodeFileManifest(entries), 2)).toThrow(/more than limits.maxEntries \(2\)/);
  });

  it('puts the delta upload beside the full one, query kept', () => {
    expect(deltaPath('/apps/shop/releases/abc')).toBe('/apps/shop/releases/abc/delta');
    expect(deltaPath('/apps/shop-staging/releases/abc?project=shop&env=staging')).toBe('/apps/shop-staging/releases/abc/delta?project=shop&env=staging');
  });
});
