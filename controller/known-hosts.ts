import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { SlipwayError } from '../contract/errors.js';

/**
 * OpenSSH known_hosts, read the way `ssh` reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT").
 * Pure: text in, decisions out. ssh.ts does the file reading and the connection.
 */

export type KnownHostsMarker = 'revoked' | 'cert-authority';

export interface HostPattern {
  negated: boolean;
  /** Lower-cased glob, `*` and `?` wildcards, e.g. `[*.example.com]:2222`. */
  glob: string;
}

export type HostMatcher =
  | { kind: 'patterns'; patterns: HostPattern[] }
  | { kind: 'hashed'; salt: Buffer; hash: Buffer };

export interface KnownHostsEntry {
  /** 1-based line number, for messages. */
  line: number;
  marker: KnownHostsMarker | null;
  hosts: HostMatcher;
  keyType: string;
  keyBase64: string;
  keyBlob: Buffer;
}

export interface KnownHostKey {
  keyType: string;
  keyBase64: string;
}

export interface PresentedKey {
  type: string;
  fingerprint: string;
}

export type HostKeyVerdict =
  | { ok: true }
  | {
      ok: false;
      reason: 'unknown' | 'mismatch' | 'revoked';
      presented: PresentedKey;
      expected: PresentedKey[];
    };

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Lines that cannot be parsed are skipped, as OpenSSH does: one bad line must not make every
 * other host unusable, and a skipped line can only ever lead to "unknown", never to acceptance.
 */
export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const entry = parseLine(raw, index + 1);
    if (entry) entries.push(entry);
  });
  return entries;
}

function parseLine(raw: string, line: number): KnownHostsEntry | null {
  const trimmed = raw.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return null;
  const fields = trimmed.split(/\s+/);
  let marker: KnownHostsMarker | null = null;
  if (fields[0]?.startsWith('@')) {
    const name = fields.shift()!;
    if (name === '@revoked') marker = 'revoked';
    else if (name === '@cert-authority') marker = 'cert-authority';
    else return null; // an unknown marker could change the meaning of the line: ignore it entirely
  }
  const [hostField, keyType, keyBase64] = fields;
  if (!hostField || !keyType || !keyBase64 || !BASE64.test(keyBase64)) return null;
  const keyBlob = Buffer.from(keyBase64, 'base64');
  // OpenSSH refuses a line whose declared type disagrees with the type inside the key blob.
  if (safeKeyType(keyBlob) !== keyType) return null;
  const hosts = parseHostField(hostField);
  if (!hosts) return null;
  return { line, marker, hosts, keyType, keyBase64, keyBlob };
}

function parseHostField(field: string): HostMatcher | null {
  if (field.startsWith('|')) {
    // Hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, host)). Only the "1" scheme exists.
    const parts = field.split('|');
    if (parts.length !== 4 || parts[1] !== '1') return null;
    const [, , salt64, hash64] = parts;
    if (!salt64 || !hash64 || !BASE64.test(salt64) || !BASE64.test(hash64)) return null;
    const salt = Buffer.from(salt64, 'base64');
    const hash = Buffer.from(hash64, 'base64');
    if (hash.length !== 20) return null;
    return { kind: 'hashed', salt, hash };
  }
  const patterns: HostPattern[] = [];
  for (const item of field.split(',')) {
    if (item === '' || item === '!') return null;
    const negated = item.startsWith('!');
    patterns.push({ negated, glob: (negated ? item.slice(1) : item).toLowerCase() });
  }
  return { kind: 'patterns', patterns };
}

/** The name OpenSSH looks up and hashes: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 ? lower : `[${lower}]:${port}`;
}

function globMatches(glob: string, name: string): boolean {
  const source = glob
    .split('')
    .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, 's').test(name);
}

/** OpenSSH semantics: any matching negated pattern vetoes the line, whatever else matches. */
function hostMatches(matcher: HostMatcher, name: string): boolean {
  if (matcher.kind === 'hashed') {
    const digest = createHmac('sha1', matcher.salt).update(name).digest();
    return timingSafeEqual(digest, matcher.hash);
  }
  let positive = false;
  for (const pattern of matcher.patterns) {
    if (!globMatches(pattern.glob, name)) continue;
    if (pattern.negated) return false;
    positive = true;
  }
  return positive;
}

function entriesFor(entries: readonly KnownHostsEntry[], host: string, port: number): KnownHostsEntry[] {
  const name = knownHostsName(host, port);
  return entries.filter((entry) => hostMatches(entry.hosts, name));
}

/** Plain (unmarked) keys recorded for host:port, deduplicated, in file order. */
export function findHostKeys(entries: readonly KnownHostsEntry[], host: string, port: number): KnownHostKey[] {
  const seen = new Set<string>();
  const keys: KnownHostKey[] = [];
  for (const entry of entriesFor(entries, host, port)) {
    if (entry.marker !== null || seen.has(entry.keyBase64)) continue;
    seen.add(entry.keyBase64);
    keys.push({ keyType: entry.keyType, keyBase64: entry.keyBase64 });
  }
  return keys;
}

export function verifyHostKey(
  entries: readonly KnownHostsEntry[],
  host: string,
  port: number,
  presentedKeyBlob: Buffer,
): HostKeyVerdict {
  const presented: PresentedKey = { type: keyTypeOfBlob(presentedKeyBlob), fingerprint: fingerprintSha256(presentedKeyBlob) };
  const known = findHostKeys(entries, host, port);
  const expected = known.map((key) => {
    const blob = Buffer.from(key.keyBase64, 'base64');
    return { type: key.keyType, fingerprint: fingerprintSha256(blob) };
  });
  // Stricter than OpenSSH, which only honours @revoked lines whose hosts match: a key someone
  // marked revoked is refused for every host, since accepting it anywhere is the failure we fear.
  const revoked = entries.some((entry) => entry.marker === 'revoked' && entry.keyBlob.equals(presentedKeyBlob));
  if (revoked) return { ok: false, reason: 'revoked', presented, expected };
  if (known.length === 0) return { ok: false, reason: 'unknown', presented, expected };
  if (known.some((key) => Buffer.from(key.keyBase64, 'base64').equals(presentedKeyBlob))) return { ok: true };
  return { ok: false, reason: 'mismatch', presented, expected };
}

/** `SHA256:<base64, no padding>`, exactly what `ssh-keygen -lf` and `ssh` print. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function safeKeyType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > blob.length) return null;
  const type = blob.subarray(4, 4 + length).toString('latin1');
  return /^[\x21-\x7e]+$/.test(type) ? type : null;
}

/** The key type named inside an SSH wire-format public key blob (`string type, ...`). */
export function keyTypeOfBlob(blob: Buffer): string {
  const type = safeKeyType(blob);
  if (type === null) {
    throw new SlipwayError('ssh_key_malformed', `not an SSH public key blob (${blob.length} bytes)`, {
      hint: 'the server sent a host key Slipway cannot read; check the server with `ssh -v`',
    });
  }
  return type;
}

/**
 * Host key algorithms to offer for keys of these types, like OpenSSH's HostKeyAlgorithms
 * ordering: a server holding several host keys then signs with one we can check, instead of
 * e.g. presenting its ECDSA key when known_hosts only holds its Ed25519 one. RSA keys can sign
 * with any of three algorithms. Types ssh2 cannot verify (security keys, certificates) add nothing.
 */
export function hostKeyAlgorithmsFor(keyTypes: readonly string[]): string[] {
  const algorithms: string[] = [];
  const add = (...names: string[]) => {
    for (const name of names) if (!algorithms.includes(name)) algorithms.push(name);
  };
  for (const type of keyTypes) {
    switch (type) {
      case 'ssh-ed25519':
      case 'ecdsa-sha2-nistp256':
      case 'ecdsa-sha2-nistp384':
      case 'ecdsa-sha2-nistp521':
      case 'ssh-dss':
        add(type);
        break;
      case 'ssh-rsa':
        add('rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa');
        break;
      default:
        break;
    }
  }
  return algorithms;
}

/** The short name ssh-keyscan's `-t` and `/etc/ssh/ssh_host_<name>_key.pub` use. */
export function shortKeyTypeName(keyType: string): string {
  if (keyType === 'ssh-ed25519') return 'ed25519';
  if (keyType === 'ssh-rsa') return 'rsa';
  if (keyType.startsWith('ecdsa-sha2-')) return 'ecdsa';
  if (keyType === 'ssh-dss') return 'dsa';
  return keyType;
}
