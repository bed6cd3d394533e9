/**
 * What a release tarball may contain, decided one entry at a time and without I/O, so the
 * extractor can refuse an archive before (and while) it touches the disk.
 *
 * node-tar's own defaults are lenient on purpose: they strip a leading `/`, skip `..` entries
 * and carry on. A release must instead be refused as a whole, so every rule here is a refusal,
 * never a rewrite; the only thing "fixed" is the mode, which is normalised rather than trusted.
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

export type EntryKind = 'file' | 'directory' | 'symlink';

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

/** What the policy has seen so far in one archive; create one per pass over the archive. */
export interface PolicyState {
  readonly limits: TarEntryLimits;
  entries: number;
  declaredBytes: number;
  /** Normalised path -> kind of every entry seen. */
  readonly seen: Map<string, EntryKind>;
  /** Directories that exist, explicitly or because a deeper entry implies them. */
  readonly dirs: Set<string>;
  /** Symlink path -> its linkpath. */
  readonly symlinks: Map<string, string>;
  /** Paths an earlier symlink's target walks through (not counting where it ends). */
  readonly traversed: Set<string>;
}

export function createPolicyState(limits: TarEntryLimits): PolicyState {
  return {
    limits,
    entries: 0,
    declaredBytes: 0,
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

/** Releases never need these bits: setuid/setgid/sticky and group/world write are dropped. */
export function normalizeMode(kind: EntryKind, mode: number | undefined): number {
  if (kind === 'symlink') return 0o777;
  if (kind === 'directory') return ((mode ?? 0o755) & 0o755) | 0o700;
  // Owner read is forced so the app (same user as the agent) can always load its own files.
  return ((mode ?? 0o644) & 0o755) | 0o400;
}

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

function describeLink(state: PolicyState, at: string): string {
  return `symlink '${clip(at)}' (-> ${clip(state.symlinks.get(at) ?? '?')})`;
}

/**
 * Decides one entry and records it in `state`. Call it for every non-metadata entry, in
 * archive order; the first `ok: false` must abort the whole extraction.
 */
export function checkEntry(entry: TarEntryInfo, state: PolicyState): EntryVerdict {
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

  if (typeof entry.path !== 'string' || entry.path === '') return fail('bad_path', 'the entry has no path');
  const pathProblem = textProblem(entry.path, 'path');
  if (pathProblem) return fail(pathProblem.rule, pathProblem.reason);
  const segments = segmentsOf(entry.path);
  if (segments.includes('..')) return fail('dot_dot', "path contains a '..' segment");
  const path = segments.join('/');

  let kind: EntryKind;
  if (FILE_TYPES.has(entry.type)) kind = 'file';
  else if (entry.type === 'Directory') kind = 'directory';
  else if (entry.type === 'SymbolicLink') kind = 'symlink';
  else if (entry.type === 'Link') return fail('hardlink', `hardlinks are not allowed (-> ${clip(entry.linkpath ?? '?')})`);
  else if (SPECIAL_TYPES.has(entry.type)) return fail('special_file', `${entry.type} entries are not allowed in a release`);
  else return fail('unsupported_type', `entry type '${entry.type}' is not supported`);

  if (path === '') {
    // `./` is what `tar -C dir .` writes first; anything else may not replace the release root.
    if (kind !== 'directory') return fail('type_conflict', `a ${kind} may not replace the release root`);
    return { ok: true, path, kind, mode: normalizeMode(kind, entry.mode) };
  }

  // The path may not pass through a symlink (case: `a -> /etc`, then `a/passwd`) nor sit under a file.
  for (let i = 1; i < segments.length; i++) {
    const prefix = segments.slice(0, i).join('/');
    if (state.symlinks.has(prefix)) return fail('through_symlink', `path passes through ${describeLink(state, prefix)}`);
    const earlier = state.seen.get(prefix);
    if (earlier !== undefined && earlier !== 'directory') {
      return fail('type_conflict', `path lies under '${clip(prefix)}', which is a ${earlier} in this archive`);
    }
  }

  const earlier = state.seen.get(path);
  if (earlier !== undefined && !(earlier === 'directory' && kind === 'directory')) {
    return fail('duplicate', `'${clip(path)}' appears twice in the archive (as ${earlier}, then as ${kind})`);
  }
  if (kind !== 'directory' && state.dirs.has(path)) {
    return fail('type_conflict', `a ${kind} would replace the directory '${clip(path)}'`);
  }

  if (kind === 'symlink') {
    const problem = checkSymlink(path, segments, entry.linkpath, state);
    if (problem) return problem;
  }

  state.seen.set(path, kind);
  for (let i = 1; i < segments.length; i++) state.dirs.add(segments.slice(0, i).join('/'));
  if (kind === 'directory') state.dirs.add(path);
  return { ok: true, path, kind, mode: normalizeMode(kind, entry.mode) };
}

/**
 * A symlink must stay inside the release however it is followed. Lexical resolution alone is
 * not enough: `d/l -> ..` makes `x -> d/l/..` leave the root although it "normalises" to `d`.
 * So a target may not walk through another symlink, and a symlink may not be created where an
 * earlier target walks through (order in the archive must not matter).
 */
function checkSymlink(path: string, segments: string[], linkpath: string | undefined, state: PolicyState): EntryVerdict | undefined {
  if (!linkpath) return fail('symlink_escape', 'symlink has no target');
  const problem = textProblem(linkpath, 'symlink target');
  if (problem) return fail(problem.rule === 'absolute_path' ? 'symlink_escape' : problem.rule, `${problem.reason} (-> ${clip(linkpath)})`);
  if (state.traversed.has(path)) {
    return fail('through_symlink', `an earlier symlink's target passes through '${clip(path)}', so it may not become a symlink`);
  }

  const position = segments.slice(0, -1);
  const steps = linkpath.split('/').filter((s) => s !== '' && s !== '.');
  const visited: string[] = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step === '..') {
      if (position.length === 0) return fail('symlink_escape', `symlink target resolves outside the release (-> ${clip(linkpath)})`);
      position.pop();
    } else {
      position.push(step);
    }
    const here = position.join('/');
    if (i < steps.length - 1) {
      if (state.symlinks.has(here) || here === path) {
        return fail('through_symlink', `symlink target passes through ${here === path ? 'itself' : describeLink(state, here)} (-> ${clip(linkpath)})`);
      }
      visited.push(here);
    }
  }
  for (const here of visited) state.traversed.add(here);
  state.symlinks.set(path, linkpath);
  return undefined;
}
