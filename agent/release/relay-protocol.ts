/**
 * The relay's wire protocol and TLS settings, pure (DESIGN-S10). After a TLS 1.2 PSK handshake
 * (the PSK identity is the session identity) the client writes one line, `GET <sha256>\n`; the
 * server answers `OK <bytes>\n` followed by exactly that many bytes and ends the stream, or
 * `NO <reason>\n`. Nothing else is ever sent.
 */
import { SHA256_PATTERN } from '../../contract/names.js';

/** Forward secrecy (ECDHE) and the pre-shared key, nothing else: no certificates, no other suites. */
export const RELAY_TLS = { ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
/** A connection that sends or takes nothing for this long is closed. */
export const RELAY_IDLE_MS = 30_000;
/** How long a peer waits for the uploader's listener to accept. */
export const RELAY_CONNECT_TIMEOUT_MS = 5_000;
/** Longer than any line the protocol has (`GET ` + 64 hex digits + `\n`; `NO ` + a short reason). */
export const MAX_LINE_BYTES = 256;

const SHA256 = new RegExp(SHA256_PATTERN);
const REQUEST = /^GET ([^ ]+)$/;
const OK = /^OK (0|[1-9][0-9]{0,15})$/;
const NO = /^NO (.*)$/;
const REASON_TEXT = /[^\x20-\x7e]/g;

export function formatRequest(sha256: string): string {
  return `GET ${sha256}\n`;
}

/** A request line (without its `\n`): the sha256 it asks for, or why it is not one. */
export function parseRequest(line: string): { sha256: string } | { problem: string } {
  const match = REQUEST.exec(line);
  if (!match) return { problem: 'bad request' };
  if (!SHA256.test(match[1]!)) return { problem: 'bad sha256' };
  return { sha256: match[1]! };
}

export function formatOk(bytes: number): string {
  return `OK ${bytes}\n`;
}

/** A refusal: one printable line, clipped. */
export function formatNo(reason: string): string {
  return `NO ${reason.replace(REASON_TEXT, '?').slice(0, MAX_LINE_BYTES - 4)}\n`;
}

export type RelayAnswer = { ok: true; bytes: number } | { ok: false; reason: string };

/** An answer line (without its `\n`); null when it is neither `OK <bytes>` nor `NO <reason>`. */
export function parseAnswer(line: string): RelayAnswer | null {
  const ok = OK.exec(line);
  if (ok) return { ok: true, bytes: Number(ok[1]) };
  const no = NO.exec(line);
  if (no) return { ok: false, reason: no[1]!.replace(REASON_TEXT, '?') };
  return null;
}

/**
 * Splits the first line off what has arrived so far: the line (without `\n`) and the bytes after
 * it; `pending` when no `\n` yet and still short enough; `too_long` past MAX_LINE_BYTES.
 */
export function splitLine(received: Buffer): { line: string; rest: Buffer } | 'pending' | 'too_long' {
  const end = received.indexOf(0x0a);
  if (end < 0) return received.length >= MAX_LINE_BYTES ? 'too_long' : 'pending';
  if (end >= MAX_LINE_BYTES) return 'too_long';
  return { line: received.subarray(0, end).toString('latin1'), rest: received.subarray(end + 1) };
}
