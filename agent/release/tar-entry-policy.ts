import { normalizeMode, type ContentKind } from '../../contract/release-content.js';
import { foldName, spelled } from './name-fold.js';

export { normalizeMode };

/**
 * What a release tarball may contain, decided one entry at a time and without I/O, so the
 * extractor can refuse an archive before (and while) it touches the disk.
 *
 * node-tar's own defaults are lenient on purpose: they strip a leading `/`, skip `..` entries
 * and carry on. A release must instead be refused as a whole, so every rule here is a refusal,
 * never a rewrite; the only thing "fixed" is the mode, which is normalised rather than trusted.
 * Names are compared as a case-folding, Unicode-normalising file system would see them
 * (name-fold.ts), and an archive spelling one name two ways is refused.
 */

export interface TarEntryLimits {
  /** Entries of any kind (files, directories, symlinks) counted against `limits.maxEntries`. */
  maxEntries: number;
  /** Sum of the sizes the headers declare, counted against `limits.maxUnpackedBytes`. */
  maxUnpackedBytes: number;
}

/** The fields of a tar entry the policy needs; node-tar's ReadEntry has all of them. */
export interface TarEntryInfo {
  path: string;
  /** node-tar's type name: 'File', 'Directory', 'SymbolicLink', 'Link', 'FIFO', ... */
  type: string;
  linkpath?: string | undefined;
  mode?: number | undefined;
  size?: number | undefined;
}

export type EntryKind = ContentKind;

export type PolicyRule =
  | 'bad_path'
  | 'absolute_path'
  | 'dot_dot'
  | 'hardlink'
  | 'special_file'
  | 'unsupported_type'
  | 'symlink_escape'
  | 'through_symlink'
  | 'type_conflict'
  | 'duplicate'
  | 'name_collision'
  | 'bad_size'
  | 'max_entries'
  | 'max_unpacked_bytes';

export type EntryVerdict =
  | {
      ok: true;
      /** The path normalised to `a/b/c` ('' for the archive root itself). */
      path: string;
      kind: EntryKind;
      /** The mode to give the extracted file or directory (ignored for symlinks). */
      mode: number;
    }
  | {
      ok: false;
      rule: PolicyRule;
      reason: string;
      /** Set when the entry broke a configurable limit rather than a safety rule. */
      limit?: 'maxEntries' | 'maxUnpackedBytes';
    };

/**
 * What the policy has seen so far in one archive; create one per pass over the archive. Paths are
 * keyed by their folded form (foldName of each segment), so that every check also holds on a file
 * system that folds names.
 */
export interface PolicyState {
  readonly limits: TarEntryLimits;
  entries: number;
  declaredBytes: number;
  /** Folded path -> how the archive spells it, for every entry and each of its parents. */
  readonly spellings: Map<string, string>;
  /** Folded path -> kind of every entry seen. */
  readonly seen: Map<string, EntryKind>;
  /** Folded paths of directories that exist, explicitly or because a deeper entry implies them. */
  readonly dirs: Set<string>;
  /** Folded symlink path -> the symlink as spelled, and its linkpath. */
  readonly symlinks: Map<string, { path: string; linkpath: string }>;
  /** Folded paths an earlier symlink's target walks through (not counting where it ends). */
  readonly traversed: Set<string>;
}

export function createPolicyState(limits: TarEntryLimits): PolicyState {
  return {
    limits,
    entries: 0,
    declaredBytes: 0,
    spellings: new Map([['', '']]),
    seen: new Map(),
    dirs: new Set(['']),
    symlinks: new Map(),
    traversed: new Set(),
  };
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const SPECIAL_TYPES = new Set(['CharacterDevice', 'BlockDevice', 'FIFO']);
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const DRIVE_FORM = /^[A-Za-z]:/;

/** Link targets come from the archive and may be huge (pax records): keep messages short. */
function clip(text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 200)}…`;
}

function fail(rule: PolicyRule, reason: string, limit?: 'maxEntries' | 'maxUnpackedBytes'): EntryVerdict {
  return limit ? { ok: false, rule, reason, limit } : { ok: false, rule, reason };
}

/** Problems common to entry paths and symlink targets; undefined when the text is acceptable. */
function textProblem(value: string, what: string): { rule: PolicyRule; reason: string } | undefined {
  if (value.startsWith('/')) return { rule: 'absolute_path', reason: `${what} is absolute` };
  if (DRIVE_FORM.test(value)) return { rule: 'absolute_path', reason: `${what} is a Windows drive path` };
  if (value.includes('\u0000')) return { rule: 'bad_path', reason: `${what} contains a NUL byte` };
  if (CONTROL_CHARS.test(value)) return { rule: 'bad_path', reason: `${what} contains a control character` };
  if (value.includes('\\')) return { rule: 'bad_path', reason: `${what} contains a backslash (Windows separators are not allowed)` };
  return undefined;
}

/** `a//./b/` -> ['a', 'b']; `..` segments are kept so callers can decide what they mean. */
function segmentsOf(value: string): string[] {
  return value.split('/').filter((s) => s !== '' && s !== '.');
}

function describeLink(state: PolicyState, key: string): string {
  const link = state.symlinks.get(key);
  return `symlink '${clip(link?.path ?? key)}' (-> ${clip(link?.linkpath ?? '?')})`;
}

/** An entry's path: as spelled (`segments`, `path`) and folded (`keys`, one per segment). */
interface EntryPath {
  path: string;
  segments: string[];
  keys: string[];
}

/** The folded path of the first `length` segments. */
function keyOf(where: EntryPath, length = where.keys.length): string {
  return where.keys.slice(0, length).join('/');
}

/**
 * Decides one entry and records it in `state`. Call it for every non-metadata entry, in
 * archive order; the first `ok: false` must abort the whole extraction.
 */
export function checkEntry(entry: TarEntryInfo, state: PolicyState): EntryVerdict {
  const overLimit = countEntry(entry, state);
  if (overLimit) return overLimit;
  const where = entryPath(entry.path);
  if ('ok' in where) return where;
  const kind = kindOf(entry);
  if (typeof kind !== 'string') return kind;
  const mode = normalizeMode(kind, entry.mode);

  if (where.path === '') {
    // `./` is what `tar -C dir .` writes first; anything else may not replace the release root.
    if (kind !== 'directory') return fail('type_conflict', `a ${kind} may not replace the release root`);
    return { ok: true, path: '', kind, mode };
  }
  const misplaced = checkSpelling(where, state) ?? checkPlacement(where, kind, state);
  if (misplaced) return misplaced;
  if (kind === 'symlink') {
    const problem = checkSymlink(where, entry.linkpath, state);
    if (problem) return problem;
  }
  record(where, kind, state);
  return { ok: true, path: where.path, kind, mode };
}

/** Counts the entry and its declared size against the limits. */
function countEntry(entry: TarEntryInfo, state: PolicyState): EntryVerdict | undefined {
  const { limits } = state;
  state.entries += 1;
  if (state.entries > limits.maxEntries) {
    return fail('max_entries', `the archive has more than ${limits.maxEntries} entries (limits.maxEntries)`, 'maxEntries');
  }
  const size = entry.size ?? 0;
  if (!Number.isSafeInteger(size) || size < 0) return fail('bad_size', `declared size ${String(entry.size)} is not a valid byte count`);
  state.declaredBytes += size;
  if (state.declaredBytes > limits.maxUnpackedBytes) {
    return fail(
      'max_unpacked_bytes',
      `the archive declares more than ${limits.maxUnpackedBytes} bytes of content (limits.maxUnpackedBytes); reached ${state.declaredBytes} at this entry`,
      'maxUnpackedBytes',
    );
  }
  return undefined;
}

function entryPath(raw: string): EntryPath | EntryVerdict {
  if (typeof raw !== 'string' || raw === '') return fail('bad_path', 'the entry has no path');
  const problem = textProblem(raw, 'path');
  if (problem) return fail(problem.rule, problem.reason);
  const segments = segmentsOf(raw);
  if (segments.includes('..')) return fail('dot_dot', "path contains a '..' segment");
  const keys = segments.map(foldName);
  if (keys.includes('')) return fail('bad_path', 'path has a name made only of characters file systems may ignore (zero-width and the like)');
  return { path: segments.join('/'), segments, keys };
}

function kindOf(entry: TarEntryInfo): EntryKind | EntryVerdict {
  if (FILE_TYPES.has(entry.type)) return 'file';
  if (entry.type === 'Directory') return 'directory';
  if (entry.type === 'SymbolicLink') return 'symlink';
  if (entry.type === 'Link') return fail('hardlink', `hardlinks are not allowed (-> ${clip(entry.linkpath ?? '?')})`);
  if (SPECIAL_TYPES.has(entry.type)) return fail('special_file', `${entry.type} entries are not allowed in a release`);
  return fail('unsupported_type', `entry type '${entry.type}' is not supported`);
}

/**
 * One name spelled two ways (`D/l` and `d/l`, `dé` composed and decomposed) would be one file
 * where the file system folds names: refused whatever the two are, since which one wins (and
 * where a symlink then leads) depends on the machine.
 */
function checkSpelling(where: EntryPath, state: PolicyState): EntryVerdict | undefined {
  for (let i = 1; i <= where.segments.length; i++) {
    const spelledHere = where.segments.slice(0, i).join('/');
    const earlier = state.spellings.get(keyOf(where, i));
    if (earlier !== undefined && earlier !== spelledHere) {
      return fail('name_collision',
        `'${spelled(clip(spelledHere))}' and '${spelled(clip(earlier))}' are one name on a file system that folds case or normalises Unicode (casefold ext4, APFS); rename one`);
    }
  }
  return undefined;
}

/** The path may not pass through a symlink (case: `a -> /etc`, then `a/passwd`), sit under a file, nor replace an entry. */
function checkPlacement(where: EntryPath, kind: EntryKind, state: PolicyState): EntryVerdict | undefined {
  for (let i = 1; i < where.segments.length; i++) {
    const key = keyOf(where, i);
    if (state.symlinks.has(key)) return fail('through_symlink', `path passes through ${describeLink(state, key)}`);
    const earlier = state.seen.get(key);
    if (earlier !== undefined && earlier !== 'directory') {
      return fail('type_conflict', `path lies under '${clip(where.segments.slice(0, i).join('/'))}', which is a ${earlier} in this archive`);
    }
  }
  const key = keyOf(where);
  const earlier = state.seen.get(key);
  if (earlier !== undefined && !(earlier === 'directory' && kind === 'directory')) {
    return fail('duplicate', `'${clip(where.path)}' appears twice in the archive (as ${earlier}, then as ${kind})`);
  }
  if (kind !== 'directory' && state.dirs.has(key)) {
    return fail('type_conflict', `a ${kind} would replace the directory '${clip(where.path)}'`);
  }
  return undefined;
}

function record(where: EntryPath, kind: EntryKind, state: PolicyState): void {
  for (let i = 1; i <= where.segments.length; i++) state.spellings.set(keyOf(where, i), where.segments.slice(0, i).join('/'));
  for (let i = 1; i < where.segments.length; i++) state.dirs.add(keyOf(where, i));
  const key = keyOf(where);
  state.seen.set(key, kind);
  if (kind === 'directory') state.dirs.add(key);
}

/**
 * A symlink must stay inside the release however it is followed. Lexical resolution alone is
 * not enough: `d/l -> ..` makes `x -> d/l/..` leave the root although it "normalises" to `d`.
 * So a target may not walk through another symlink, and a symlink may not be created where an
 * earlier target walks through (order in the archive must not matter). The walk compares folded
 * names: `x -> D/l/..` walks through `d/l` where the file system folds case.
 */
function checkSymlink(where: EntryPath, linkpath: string | undefined, state: PolicyState): EntryVerdict | undefined {
  if (!linkpath) return fail('symlink_escape', 'symlink has no target');
  const problem = textProblem(linkpath, 'symlink target');
  if (problem) return fail(problem.rule === 'absolute_path' ? 'symlink_escape' : problem.rule, `${problem.reason} (-> ${clip(linkpath)})`);
  const self = keyOf(where);
  if (state.traversed.has(self)) {
    return fail('through_symlink', `an earlier symlink's target passes through '${clip(where.path)}', so it may not become a symlink`);
  }

  const position = where.keys.slice(0, -1);
  const steps = segmentsOf(linkpath);
  const visited: string[] = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step === '..') {
      if (position.length === 0) return fail('symlink_escape', `symlink target resolves outside the release (-> ${clip(linkpath)})`);
      position.pop();
    } else {
      position.push(foldName(step));
    }
    const here = position.join('/');
    if (i < steps.length - 1) {
      if (state.symlinks.has(here) || here === self) {
        return fail('through_symlink', `symlink target passes through ${here === self ? 'itself' : describeLink(state, here)} (-> ${clip(linkpath)})`);
      }
      visited.push(here);
    }
  }
  for (const here of visited) state.traversed.add(here);
  state.symlinks.set(self, { path: where.path, linkpath });
  return undefined;
}
