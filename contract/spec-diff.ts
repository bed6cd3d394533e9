import type { AppSpec } from './spec.js';

// Pure: what changed in the app spec between two releases, one line per change, by field path:
//   + processes/worker                      (added)
//   - processes/api                         (removed)
//   ~ routes/0/path: "/" → "/api"           (changed)
// Objects are compared key by key and lists of objects index by index (routes/0, routes/1);
// lists of plain values (argv, serverNames) are compared whole, as one value. A missing spec (a
// release that ran on the agent's legacy config) compares as an empty one.

/** Values longer than this are cut in diff lines. */
const MAX_VALUE_CHARS = 120;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: unknown): value is Record<string, Json> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isPlain(value: unknown): boolean {
  return value === null || typeof value !== 'object';
}

/** A list of plain values (an argv, server names) reads best as one value. */
function isPlainList(value: unknown): boolean {
  return Array.isArray(value) && value.every(isPlain);
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined';
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 1)}…` : text;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** An added or removed field: its value when that reads on one line, else the path alone. */
function whole(sign: '+' | '-', path: string, value: unknown): string {
  return isPlain(value) || isPlainList(value) ? `${sign} ${path}: ${show(value)}` : `${sign} ${path}`;
}

function walk(a: unknown, b: unknown, path: string, lines: string[]): void {
  if (same(a, b)) return;
  const at = (key: string | number) => (path ? `${path}/${key}` : String(key));
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const key of keys) {
      if (!(key in b) || b[key] === undefined) lines.push(whole('-', at(key), a[key]));
      else if (!(key in a) || a[key] === undefined) lines.push(whole('+', at(key), b[key]));
      else walk(a[key], b[key], at(key), lines);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b) && !(isPlainList(a) && isPlainList(b))) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= b.length) lines.push(whole('-', at(i), a[i]));
      else if (i >= a.length) lines.push(whole('+', at(i), b[i]));
      else walk(a[i], b[i], at(i), lines);
    }
    return;
  }
  lines.push(`~ ${path || '(spec)'}: ${show(a)} → ${show(b)}`);
}

/** Pure: the changes from spec `a` (the older release) to spec `b`; empty when they are equal. */
export function specDiff(a: AppSpec | null, b: AppSpec | null): string[] {
  const lines: string[] = [];
  walk(a ?? {}, b ?? {}, '', lines);
  return lines;
}
