/**
 * The agent's trust decision for a kept file it hardlinks (agent/release/trust.ts) and what a
 * release assembled from a delta upload must sync (agent/release/sync-assembled.ts): pure logic.
 */
import { describe, expect, it } from 'vitest';
import { carryOver, inodeKey, isTrusted, recordOf } from '../../agent/release/trust.js';
import { syncPlan } from '../../agent/release/sync-assembled.js';

const SHA = 'a'.repeat(64);
const st = { dev: 8n, ino: 1234n, size: 100n, mtimeNs: 1_700_000_000_000_000_000n, ctimeNs: 1_700_000_001_000_000_000n, nlink: 2n };

describe('trusting a kept file by its inode', () => {
  it('trusts it only for the content recorded, with the same size, mtime and ctime', () => {
    const record = recordOf(st, SHA);
    expect(isTrusted(record, st, SHA)).toBe(true);
    expect(isTrusted(undefined, st, SHA), 'never verified').toBe(false);
    expect(isTrusted(record, st, 'b'.repeat(64)), 'another content').toBe(false);
    expect(isTrusted(record, { ...st, size: 101n }, SHA)).toBe(false);
    expect(isTrusted(record, { ...st, mtimeNs: st.mtimeNs + 1n }, SHA), 'written').toBe(false);
    expect(isTrusted(record, { ...st, ctimeNs: st.ctimeNs + 1n }, SHA), 'written with its mtime put back, or chmod').toBe(false);
    expect(isTrusted(record, { ...st, nlink: 3n }, SHA), 'the link count alone is not the content').toBe(true);
    expect(inodeKey(st)).toBe('8:1234');
  });

  it('follows the ctime an unlink moved only when nothing but the link count changed', () => {
    const record = recordOf(st, SHA);
    const after = { ...st, nlink: 1n, ctimeNs: st.ctimeNs + 5n };
    expect(carryOver(record, st, after)).toEqual(recordOf(after, SHA));
    expect(carryOver(record, st, { ...after, nlink: 2n }), 'no link removed: something else moved ctime').toBeNull();
    expect(carryOver(record, st, { ...after, mtimeNs: st.mtimeNs + 1n }), 'written meanwhile').toBeNull();
    expect(carryOver(record, st, { ...after, ino: 99n }), 'another inode').toBeNull();
    expect(carryOver(record, { ...st, ctimeNs: st.ctimeNs + 1n }, after), 'not trusted before').toBeNull();
    expect(carryOver(undefined, st, after)).toBeNull();
  });
});

describe('syncing an assembled release', () => {
  it('syncs new data and every directory (deepest first, the root last), not hardlinked files', () => {
    const plan = syncPlan([
      { path: 'a', type: 'directory', mode: 0o755 },
      { path: 'a/b', type: 'directory', mode: 0o755 },
      { path: 'a/b/linked.js', type: 'file', mode: 0o644, size: 1, sha256: SHA },
      { path: 'a/new.js', type: 'file', mode: 0o644, size: 1, sha256: SHA },
      { path: 'l', type: 'symlink', target: 'a' },
    ], ['a/new.js', 'manifest.json']);
    expect(plan).toEqual({ files: ['a/new.js', 'manifest.json'], dirs: ['a/b', 'a', ''] });
  });
});
