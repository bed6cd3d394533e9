// An app's env file (`KEY=VALUE` lines, dotenv style): the one parser the agent reads it with, and
// the edits `deploy env set/unset` make to it. Pure, and shared: the controller parses `--stdin`
// with the same rules the agent reads the file with. No function here puts a value in an error.
import { SlipwayError } from './errors.js';

/** A key the parser accepts (and so the only keys `deploy env` writes). */
export const ENV_KEY_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
const ENV_KEY = new RegExp(ENV_KEY_PATTERN);
/** An assignment line, once trimmed: optional `export `, the key, `=`, the raw value. */
const ASSIGNMENT = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/;

export type EnvParse = { ok: true; env: Record<string, string> } | { ok: false; errors: string[] };

export function isEnvKey(key: string): boolean {
  return ENV_KEY.test(key);
}

/** Pure: parses KEY=VALUE lines (dotenv style: comments, blank lines, optional quotes, `export `). */
export function parseEnvFile(text: string): EnvParse {
  const env: Record<string, string> = {};
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const match = ASSIGNMENT.exec(line);
    if (!match) {
      // Never echo the line: it may hold a secret.
      errors.push(`line ${index + 1}: expected KEY=VALUE`);
      return;
    }
    let value = match[2]!;
    const quoted = /^(['"])(.*)\1$/.exec(value);
    if (quoted) {
      value = quoted[1] === '"' ? quoted[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"') : quoted[2]!;
    } else {
      value = value.replace(/\s+#.*$/, '');
    }
    env[match[1]!] = value;
  });
  return errors.length ? { ok: false, errors } : { ok: true, env };
}

/** Keys of the file's assignment lines, in file order, each once (where it first appears). */
export function envKeysOf(text: string): string[] {
  const keys = new Set<string>();
  for (const raw of text.split('\n')) {
    const match = ASSIGNMENT.exec(raw.trim());
    if (match && !raw.trim().startsWith('#')) keys.add(match[1]!);
  }
  return [...keys];
}

/** Values written as they are: nothing the parser trims, unquotes, or cuts at a ` #` comment. */
const BARE_VALUE = /^[A-Za-z0-9_./:@%+,=~-]*$/;

function parsesBackTo(rendered: string, value: string): boolean {
  const parsed = parseEnvFile(`K=${rendered}\n`);
  return parsed.ok && parsed.env.K === value;
}

/**
 * Pure: the value as it goes after `KEY=`, so that parseEnvFile gives back exactly `value`: bare
 * when nothing in it is special, in single quotes (no escapes inside) when it has no `'` and no
 * line break, else in double quotes with the parser's two escapes (`\n`, `\"`). Every form is
 * checked by parsing it back; a value no form carries is refused, naming the key only.
 */
export function renderEnvValue(key: string, value: string): string {
  if (value.includes('\0')) {
    throw new SlipwayError('env_value_invalid', `the value of ${key} holds a NUL character, which no environment variable can hold`, {
      hint: 'remove the NUL character from the value', status: 400,
    });
  }
  const candidates: string[] = [];
  if (BARE_VALUE.test(value)) candidates.push(value);
  if (!value.includes("'") && !value.includes('\n')) candidates.push(`'${value}'`);
  candidates.push(`"${value.replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  const rendered = candidates.find((candidate) => parsesBackTo(candidate, value));
  if (rendered !== undefined) return rendered;
  throw new SlipwayError('env_value_invalid', `the value of ${key} cannot be written to the env file so that it reads back the same`, {
    hint: 'the env file cannot hold a carriage return or a Unicode line/paragraph separator, nor a backslash followed by "n" in a value that also holds a \' or a line break: encode the value (e.g. base64) and decode it in the app',
    status: 400,
  });
}

export interface EnvEditRequest { set: Readonly<Record<string, string>>; unset: readonly string[] }

/** What an edit did, by key name only (each list sorted as the request named them). */
export interface EnvEdit {
  /** The file's new text (the old text itself when nothing changed). */
  text: string;
  /** Keys of the new file, in file order. */
  keys: string[];
  added: string[];
  changed: string[];
  removed: string[];
  /** Keys set to the value they had, and keys unset that were not there. */
  unchanged: string[];
}

function requestProblems(request: EnvEditRequest): string[] {
  const problems: string[] = [];
  const setKeys = Object.keys(request.set);
  for (const key of [...setKeys, ...request.unset]) if (!isEnvKey(key)) problems.push(`${key}: not a key the env file can hold (${ENV_KEY_PATTERN})`);
  for (const key of request.unset) if (Object.hasOwn(request.set, key)) problems.push(`${key}: both set and unset`);
  if (setKeys.length === 0 && request.unset.length === 0) problems.push('nothing to set or unset');
  if (setKeys.length + request.unset.length > ENV_MAX_KEYS) problems.push(`more than ${ENV_MAX_KEYS} keys in one change`);
  return problems;
}

/**
 * Pure: the env file `text` with `request` applied. Comments, blank lines and untouched lines
 * stay as they are, in their order; a key set gets one line (where its last line was: the last one
 * is what the parser keeps, so earlier duplicates go), a new key is appended, an unset key loses
 * all its lines. A key set to the value it has keeps its line(s) untouched. The caller has checked
 * that `text` parses (its bad lines, if any, are kept as they are).
 */
export function editEnvFile(text: string, request: EnvEditRequest): EnvEdit {
  const problems = requestProblems(request);
  if (problems.length) {
    throw new SlipwayError('invalid_request', 'the env change is not valid', { details: problems, hint: 'name each key once, as KEY (letters, digits, _)', status: 400 });
  }
  const before = parseEnvFile(text);
  const current: Record<string, string> = before.ok ? before.env : {};
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  const unchanged: string[] = [];
  const rendered = new Map<string, string>();
  for (const [key, value] of Object.entries(request.set)) {
    if (!Object.hasOwn(current, key)) added.push(key);
    else if (current[key] === value) { unchanged.push(key); continue; } else changed.push(key);
    rendered.set(key, renderEnvValue(key, value));
  }
  for (const key of request.unset) (Object.hasOwn(current, key) ? removed : unchanged).push(key);
  if (rendered.size === 0 && removed.length === 0) return { text, keys: envKeysOf(text), added, changed, removed, unchanged };

  const crlf = text.includes('\r\n');
  const lines = text === '' ? [] : text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const keyOf = (raw: string): string | null => {
    const line = raw.trim();
    if (line.startsWith('#')) return null;
    return ASSIGNMENT.exec(line)?.[1] ?? null;
  };
  const lastLine = new Map<string, number>();
  lines.forEach((raw, i) => { const key = keyOf(raw); if (key !== null) lastLine.set(key, i); });
  const dropped = new Set(removed);
  const out: string[] = [];
  lines.forEach((raw, i) => {
    const key = keyOf(raw);
    if (key === null) return void out.push(raw);
    if (dropped.has(key)) return;
    const value = rendered.get(key);
    if (value === undefined) return void out.push(raw);
    if (lastLine.get(key) !== i) return;
    const exported = /^\s*export\s/.test(raw) ? 'export ' : '';
    out.push(`${exported}${key}=${value}${raw.endsWith('\r') ? '\r' : ''}`);
  });
  for (const key of added) out.push(`${key}=${rendered.get(key)!}${crlf ? '\r' : ''}`);
  const next = out.length ? `${out.join('\n')}\n` : '';
  return { text: next, keys: envKeysOf(next), added, changed, removed, unchanged };
}

/** Limits of one PATCH /apps/:app/env: keys named, characters of one value, bytes of the whole body. */
export const ENV_MAX_KEYS = 200;
export const ENV_MAX_VALUE_CHARS = 64 * 1024;
export const ENV_MAX_BODY_BYTES = 1024 * 1024;

/** GET /apps/:app/env: the file's keys, never a value. */
export interface AppEnvView {
  file: string;
  /** Keys in file order. */
  keys: string[];
  /** The file's permission bits, octal ('600'; a file others may read is refused, not shown). */
  mode: string;
  /** When the file was last written; null when there is no file yet. */
  updatedAt: string | null;
  /** Keys the live release's spec requires that are absent or empty; null without a live release (or with an unreadable spec). */
  missing: string[] | null;
}

/** PATCH /apps/:app/env: a change of some keys. */
export interface AppEnvPatch { set?: Record<string, string>; unset?: string[] }

/** What a PATCH did, by key name only. */
export type AppEnvChange = Omit<EnvEdit, 'text'>;
