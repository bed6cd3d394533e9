/**
 * JSON Pointer (RFC 6901) evaluation, pure. "" is the whole document; otherwise each "/"-separated
 * token is unescaped (~1 → "/", then ~0 → "~") and names an object member (own properties only) or
 * an array index ("0" or digits without a leading zero; "-", the element after the last, never
 * exists). A pointer that does not start with "/" is invalid.
 */
export type PointerResult = { found: true; value: unknown } | { found: false; reason: string };

export function parsePointer(pointer: string): string[] | null {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) return null;
  return pointer.slice(1).split('/').map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function evaluatePointer(document: unknown, pointer: string): PointerResult {
  const tokens = parsePointer(pointer);
  if (tokens === null) return { found: false, reason: `${JSON.stringify(pointer)} is not a JSON pointer (it must be empty or start with "/")` };
  let current: unknown = document;
  let at = '';
  for (const token of tokens) {
    const here = at || '(root)';
    at += `/${token.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (Array.isArray(current)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return { found: false, reason: `${here} is an array and ${JSON.stringify(token)} is not an index` };
      const index = Number(token);
      if (index >= current.length) return { found: false, reason: `${here} has ${current.length} element(s), no index ${index}` };
      current = current[index];
    } else if (current !== null && typeof current === 'object') {
      if (!Object.hasOwn(current, token)) return { found: false, reason: `${here} has no member ${JSON.stringify(token)}` };
      current = (current as Record<string, unknown>)[token];
    } else {
      return { found: false, reason: `${here} is ${current === null ? 'null' : typeof current}, not an object or array` };
    }
  }
  return { found: true, value: current };
}

/** Deep equality of JSON values (member order does not matter). */
export function jsonEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEquals(x, b[i]));
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && jsonEquals((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}
