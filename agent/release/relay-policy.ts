/**
 * What a relay session may do, pure: the address it may listen on, whether a GET is served, when
 * the session is over. relay-serve.ts applies these to real sockets.
 */
import net from 'node:net';

export interface InterfaceAddress { address: string; family: string | number; internal: boolean }

/**
 * Why `address` may not carry a relay listener, or null when it may: it must be a literal IP of
 * one of the host's interfaces (`os.networkInterfaces()`), never a wildcard.
 */
export function relayAddressProblem(address: string, interfaces: Readonly<Record<string, readonly InterfaceAddress[] | undefined>>): string | null {
  const family = net.isIP(address);
  if (family === 0) return `${JSON.stringify(address)} is not an IP address`;
  const canonical = canonicalIp(address);
  if (canonical === '0.0.0.0' || canonical === '::') return `${address} is a wildcard address: the relay listens on one private address only`;
  const local = Object.values(interfaces).flatMap((list) => list ?? []).map((entry) => canonicalIp(entry.address.split('%')[0]!));
  if (!local.includes(canonical)) return `${address} is not an address of this host's interfaces`;
  return null;
}

/** One spelling per IPv6 address (`::0:1` and `::1` compare equal); IPv4 as it is. */
function canonicalIp(address: string): string {
  return net.isIPv6(address) ? expandIpv6(address) : address;
}

function expandIpv6(address: string): string {
  let text = address.toLowerCase();
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => '0');
  const groups = [...left, ...fill, ...right].map((group) => Number.parseInt(group, 16).toString(16));
  return groups.every((group) => group === '0') ? '::' : groups.join(':');
}

/** A session's count of GETs: complete ones, and the ones whose bytes are still going out. */
export interface FetchCount { fetches: number; completed: number; inFlight: number }

/**
 * Whether one more GET is served: never past `fetches` counting the ones still sending (one
 * that fails frees its place, so a peer may try again), never after the session's end.
 */
export function mayServe(count: FetchCount, expiresAtMs: number, nowMs: number): { ok: true } | { ok: false; reason: string } {
  if (nowMs >= expiresAtMs) return { ok: false, reason: 'session expired' };
  if (count.completed + count.inFlight >= count.fetches) return { ok: false, reason: 'no fetches left' };
  return { ok: true };
}

/** The session is over: every fetch it was opened for is complete. */
export function isExhausted(count: FetchCount): boolean {
  return count.completed >= count.fetches;
}

/** How long kept uploads stay when no session serves them. */
export const KEEP_MAX_AGE_MS = 15 * 60_000;

/** Of kept files (name, mtime), the ones older than `maxAgeMs` that no open session serves. */
export function keptToSweep(files: readonly { name: string; mtimeMs: number }[], nowMs: number, serving: ReadonlySet<string>, maxAgeMs = KEEP_MAX_AGE_MS): string[] {
  return files.filter((file) => nowMs - file.mtimeMs > maxAgeMs && !serving.has(file.name)).map((file) => file.name);
}
