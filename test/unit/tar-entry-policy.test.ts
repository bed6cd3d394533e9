import { describe, expect, it } from 'vitest';
import {
  checkEntry, createPolicyState, normalizeMode,
  type EntryVerdict, type PolicyState, type TarEntryInfo,
} from '../../agent/release/tar-entry-policy.js';

const roomy = { maxEntries: 1000, maxUnpackedBytes: 1024 * 1024 };

const file = (path: string, extra: Partial<TarEntryInfo> = {}): TarEntryInfo => ({ path, type: 'File', mode: 0o644, size: 0, ...extra });
const dir = (path: string, extra: Partial<TarEntryInfo> = {}): TarEntryInfo => ({ path, type: 'Directory', mode: 0o755, size: 0, ...extra });
const symlink = (path: string, linkpath: string): TarEntryInfo => ({ path, type: 'SymbolicLink', linkpath, mode: 0o777, size: 0 });

/** Feeds entries in order and returns the verdict of the last one; all earlier ones must pass. */
function sequence(entries: TarEntryInfo[], state: PolicyState = createPolicyState(roomy)): EntryVerdict {
  entries.slice(0, -1).forEach((entry, i) => {
    const verdict = checkEntry(entry, state);
    expect(verdict, `entry #${i} (${entry.path}) should pass`).toMatchObject({ ok: true });
  });
  return checkEntry(entries.at(-1)!, state);
}

function rejected(verdict: EntryVerdict): { rule: string; reason: string; limit?: string } {
  if (verdict.ok) throw new Error(`expected a rejection, got ${JSON.stringify(verdict)}`);
  return verdict;
}

describe('tar entry policy: paths', () => {
  it('accepts ordinary entries and normalises their path', () => {
    expect(sequence([file('./app//server.js/')])).toEqual({ ok: true, path: 'app/server.js', kind: 'file', mode: 0o644 });
    expect(sequence([dir('./')])).toEqual({ ok: true, path: '', kind: 'directory', mode: 0o755 });
    expect(sequence([file('a/..b/...c')])).toMatchObject({ ok: true, path: 'a/..b/...c' });
  });

  it.each([
    ['/etc/passwd', 'absolute_path'],
    ['////tmp/x', 'absolute_path'],
    ['/', 'absolute_path'],
    ['C:/Windows/x', 'absolute_path'],
    ['c:x', 'absolute_path'],
    ['C:\\x', 'absolute_path'],
    ['../../etc/cron.d/x', 'dot_dot'],
    ['a/../../x', 'dot_dot'],
    ['a/..', 'dot_dot'],
    ['..', 'dot_dot'],
    ['./../x', 'dot_dot'],
    ['a\u0000b', 'bad_path'],
    ['a\nb', 'bad_path'],
    ['a\\..\\..\\x', 'bad_path'],
    ['', 'bad_path'],
  ])('rejects the path %j (%s)', (path, rule) => {
    expect(rejected(sequence([file(path)])).rule).toBe(rule);
  });

  it('does not let a non-directory replace the release root', () => {
    expect(rejected(sequence([file('./')])).rule).toBe('type_conflict');
    expect(rejected(sequence([symlink('.', '/etc')])).rule).toBe('type_conflict');
  });
});

describe('tar entry policy: entry types', () => {
  it('rejects every hardlink, even one pointing inside the release', () => {
    expect(rejected(sequence([file('a'), { path: 'b', type: 'Link', linkpath: 'a', size: 0 }])).rule).toBe('hardlink');
    expect(rejected(sequence([{ path: 'b', type: 'Link', linkpath: '/etc/shadow', size: 0 }])).rule).toBe('hardlink');
    expect(rejected(sequence([{ path: 'b', type: 'Link', linkpath: '../../x', size: 0 }])).rule).toBe('hardlink');
  });

  it.each(['FIFO', 'CharacterDevice', 'BlockDevice'])('rejects %s entries', (type) => {
    expect(rejected(sequence([{ path: 'dev', type, size: 0 }])).rule).toBe('special_file');
  });

  it.each(['SparseFile', 'GNUDumpDir', 'TapeVolumeHeader', 'Unsupported', 'Inode'])('rejects the unsupported type %s', (type) => {
    expect(rejected(sequence([{ path: 'x', type, size: 0 }])).rule).toBe('unsupported_type');
  });

  it('accepts the file type variants', () => {
    for (const type of ['File', 'OldFile', 'ContiguousFile']) {
      expect(sequence([{ path: 'f', type, size: 3 }])).toMatchObject({ ok: true, kind: 'file' });
    }
  });
});

describe('tar entry policy: symlinks', () => {
  it.each([
    ['a', 'b'],
    ['a', './b/c'],
    ['d/l', '../x'],
    ['d/e/l', '../../x'],
    ['d/l', '..'],
    ['l', '.'],
    ['public/current', '../assets/v1'],
  ])('allows %s -> %s (stays inside)', (path, target) => {
    expect(sequence([symlink(path, target)])).toMatchObject({ ok: true, kind: 'symlink' });
  });

  it.each([
    ['a', '/etc'],
    ['a', '//etc'],
    ['a', 'C:/x'],
    ['a', '..'],
    ['a', '../x'],
    ['d/l', '../../x'],
    ['d/l', 'x/../../..'],
    ['d/e/l', '../../../x'],
  ])('rejects %s -> %s (escapes)', (path, target) => {
    expect(rejected(sequence([symlink(path, target)])).rule).toBe('symlink_escape');
  });

  it('rejects a symlink without target or with a NUL in it', () => {
    expect(rejected(sequence([symlink('a', '')])).rule).toBe('symlink_escape');
    expect(rejected(sequence([symlink('a', 'b\u0000c')])).rule).toBe('bad_path');
  });

  it('rejects an entry written through an earlier symlink (a -> /etc case, done with an allowed link)', () => {
    const verdict = rejected(sequence([dir('sub'), symlink('a', 'sub'), file('a/passwd')]));
    expect(verdict.rule).toBe('through_symlink');
    expect(verdict.reason).toContain("'a'");
  });

  it('rejects `a -> .` followed by a/x, and deeper writes through links', () => {
    expect(rejected(sequence([symlink('a', '.'), file('a/x')])).rule).toBe('through_symlink');
    expect(rejected(sequence([symlink('d/l', '..'), dir('d/l/sub')])).rule).toBe('through_symlink');
    expect(rejected(sequence([symlink('d/l', '..'), symlink('d/l/m', 'x')])).rule).toBe('through_symlink');
  });

  it('rejects a target that walks through a symlink, which lexical resolution would miss', () => {
    // d/l points at the root, so d/l/.. is the root's parent although it "normalises" to d.
    expect(rejected(sequence([symlink('d/l', '..'), symlink('x', 'd/l/..')])).rule).toBe('through_symlink');
  });

  it('rejects the same trick in the other order', () => {
    expect(rejected(sequence([symlink('x', 'd/l/..'), symlink('d/l', '..')])).rule).toBe('through_symlink');
  });

  it('allows a chain of links that ends inside', () => {
    expect(sequence([symlink('a', 'b'), symlink('b', 'c'), file('c')])).toMatchObject({ ok: true });
  });

  it('rejects a symlink whose target passes through itself', () => {
    expect(rejected(sequence([symlink('a', 'a/..')])).rule).toBe('through_symlink');
  });
});

describe('tar entry policy: conflicts', () => {
  it('rejects a path that appears twice unless both are directories', () => {
    expect(rejected(sequence([file('a'), file('a')])).rule).toBe('duplicate');
    expect(rejected(sequence([symlink('a', 'b'), file('a')])).rule).toBe('duplicate');
    expect(sequence([dir('a'), dir('a/')])).toMatchObject({ ok: true });
  });

  it('rejects entries under a file, and links or files replacing a directory', () => {
    expect(rejected(sequence([file('a'), file('a/b')])).rule).toBe('type_conflict');
    expect(rejected(sequence([file('a/b'), symlink('a', '/etc')])).rule).toBe('type_conflict');
    expect(rejected(sequence([file('a/b'), symlink('a', 'c')])).rule).toBe('type_conflict');
    expect(rejected(sequence([dir('a/b'), file('a')])).rule).toBe('type_conflict');
    expect(rejected(sequence([dir('a'), file('a')])).rule).toBe('duplicate');
  });
});

describe('tar entry policy: modes', () => {
  it.each([
    ['file', '0o4755', 0o4755, 0o755],
    ['file', '0o2755', 0o2755, 0o755],
    ['file', '0o6777', 0o6777, 0o755],
    ['file', '0o666', 0o666, 0o644],
    ['file', '0o777', 0o777, 0o755],
    ['file', '0o744', 0o744, 0o744],
    ['file', '0o600', 0o600, 0o600],
    ['file', '0o000', 0o000, 0o400],
    ['file', 'undefined', undefined, 0o644],
    ['directory', '0o1777', 0o1777, 0o755],
    ['directory', '0o2775', 0o2775, 0o755],
    ['directory', '0o500', 0o500, 0o700],
    ['directory', 'undefined', undefined, 0o755],
  ] as const)('%s mode %s', (kind, _label, mode, expected) => {
    expect(normalizeMode(kind, mode)).toBe(expected);
  });

  it('returns the normalised mode in the verdict', () => {
    expect(sequence([file('bin/run', { mode: 0o4777 })])).toMatchObject({ ok: true, mode: 0o755 });
    expect(sequence([dir('tmp', { mode: 0o1777 })])).toMatchObject({ ok: true, mode: 0o755 });
  });
});

describe('tar entry policy: limits', () => {
  it('counts entries against maxEntries and names the setting', () => {
    const state = createPolicyState({ maxEntries: 3, maxUnpackedBytes: 1000 });
    const verdict = rejected(sequence([dir('a'), file('a/b'), file('c'), file('d')], state));
    expect(verdict).toMatchObject({ rule: 'max_entries', limit: 'maxEntries' });
    expect(verdict.reason).toContain('limits.maxEntries');
    expect(verdict.reason).toContain('3');
  });

  it('sums declared sizes against maxUnpackedBytes and names the setting', () => {
    const state = createPolicyState({ maxEntries: 10, maxUnpackedBytes: 100 });
    const verdict = rejected(sequence([file('a', { size: 60 }), file('b', { size: 41 })], state));
    expect(verdict).toMatchObject({ rule: 'max_unpacked_bytes', limit: 'maxUnpackedBytes' });
    expect(verdict.reason).toContain('limits.maxUnpackedBytes');
    expect(state.declaredBytes).toBe(101);
  });

  it('allows exactly the limit', () => {
    const state = createPolicyState({ maxEntries: 2, maxUnpackedBytes: 100 });
    expect(sequence([file('a', { size: 60 }), file('b', { size: 40 })], state)).toMatchObject({ ok: true });
  });

  it.each([-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2])('rejects the declared size %s', (size) => {
    expect(rejected(sequence([file('a', { size })])).rule).toBe('bad_size');
  });
});

describe('tar entry policy: names a file system may fold (case, Unicode normalisation)', () => {
  const NFC = 'd\u00e9';
  const NFD = 'de\u0301';

  it.each([
    ['NFC link, NFD target', `${NFC}/l`, `${NFD}/l/..`],
    ['NFD link, NFC target', `${NFD}/l`, `${NFC}/l/..`],
    ['upper-case link, lower-case target', 'D/l', 'd/l/..'],
    ['lower-case link, upper-case target', 'd/l', 'D/l/..'],
    ['sharp s and SS', 'stra\u00dfe/l', 'STRASSE/l/..'],
    ['Kelvin sign and k', '\u212a/l', 'k/l/..'],
  ])('rejects a target walking through a symlink spelled another way (%s), in either order', (_label, link, target) => {
    expect(rejected(sequence([symlink(link, '..'), symlink('x', target)])).rule).toBe('through_symlink');
    expect(rejected(sequence([symlink('x', target), symlink(link, '..')])).rule).toBe('through_symlink');
  });

  it.each([
    ['upper and lower case', 'README', 'readme'],
    ['composed and decomposed', `${NFC}.txt`, `${NFD}.txt`],
    ['sharp s and SS', 'stra\u00dfe', 'STRASSE'],
    ['a zero-width joiner', 'ab', 'a\u200db'],
  ])('rejects one name spelled two ways (%s), whatever the entries are', (_label, first, second) => {
    const verdict = rejected(sequence([file(first), file(second)]));
    expect(verdict.rule).toBe('name_collision');
    expect(verdict.reason).toContain('folds case or normalises Unicode');
    expect(rejected(sequence([dir(first), file(`${second}/x`)])).rule).toBe('name_collision');
    expect(rejected(sequence([file(`${first}/x`), symlink(second, '.')])).rule).toBe('name_collision');
  });

  it('rejects writing through a symlink spelled another way', () => {
    expect(rejected(sequence([dir('sub'), symlink('a', 'sub'), file('A/passwd')])).rule).toBe('name_collision');
    expect(rejected(sequence([dir('sub'), symlink(`${NFC}`, 'sub'), file(`${NFD}/passwd`)])).rule).toBe('name_collision');
  });

  it('shows both spellings with their code points, so the difference is visible', () => {
    expect(rejected(sequence([file(`${NFC}.txt`), file(`${NFD}.txt`)])).reason).toContain("'de\\u{301}.txt' and 'd\\u{e9}.txt'");
  });

  it('accepts one spelling used throughout, and targets that merely name a path another way', () => {
    expect(sequence([dir('Lib'), dir('Lib/'), file('Lib/x'), symlink('Lib/y', 'x')])).toMatchObject({ ok: true });
    expect(sequence([file(`${NFD}/x`), symlink('l', `${NFC}/x`)])).toMatchObject({ ok: true });
  });

  it('rejects a name made only of characters a file system may ignore', () => {
    expect(rejected(sequence([file('a/\u200d/b')])).rule).toBe('bad_path');
  });
});
