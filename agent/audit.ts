// What the audit table and the request log keep of an API request: enough to say who asked
// for what, never a secret. Pure, so the rules are unit-tested without a server.
import { redactUri } from './backups/commands.js';

/** Field names whose values are never kept, whatever they hold. */
const SECRET_FIELD = /pass|secret|token|credential|auth|cookie|uri|url|env|^key$/i;
const MAX_STRING = 200;
const MAX_KEYS = 50;
const MAX_DEPTH = 4;

function clip(text: string): string {
  return text.length <= MAX_STRING ? text : `${text.slice(0, MAX_STRING)}…(${text.length} chars)`;
}

/** Strings lose URI credentials and are clipped; fields named like secrets are replaced. */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return clip(redactUri(value));
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[nested]';
  if (Array.isArray(value)) return value.slice(0, MAX_KEYS).map((item) => redactValue(item, depth + 1));
  return Object.fromEntries(Object.entries(value).slice(0, MAX_KEYS)
    .map(([key, item]) => [clip(key), SECRET_FIELD.test(key) ? '[REDACTED]' : redactValue(item, depth + 1)]));
}

/**
 * The `args` of an audit row. A body that failed validation can hold anything the caller chose
 * to send (a password in an unknown field, say): of such a body only the field names are kept.
 */
export function auditArgs(input: { params: unknown; query: unknown; body: unknown; validated: boolean }): Record<string, unknown> {
  const args: Record<string, unknown> = { params: redactValue(input.params ?? {}) };
  if (input.query && typeof input.query === 'object' && Object.keys(input.query).length > 0) args.query = redactValue(input.query);
  const body = input.body;
  if (body === undefined || body === null) return args;
  if (input.validated) {
    args.body = redactValue(body);
  } else if (typeof body === 'object' && !Array.isArray(body)) {
    args.bodyFields = Object.keys(body).slice(0, MAX_KEYS).map(clip);
  } else {
    args.bodyType = Array.isArray(body) ? 'array' : typeof body;
  }
  return args;
}

/** A request URL for the log: the path as sent, query values left out (`?lockId=…&force=…`). */
export function loggedUrl(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return clip(url);
  const keys = url.slice(at + 1).split('&').filter(Boolean).map((pair) => `${pair.split('=')[0]}=…`);
  return clip(`${url.slice(0, at)}?${keys.join('&')}`);
}
