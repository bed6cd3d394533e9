/**
 * The relay's pure parts (DESIGN-S10): the one-line protocol, the address a session may listen
 * on, when a GET is served and a session is over, which kept uploads are swept.
 */
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, formatNo, formatOk, formatRequest, parseAnswer, parseRequest, splitLine } from '../../agent/release/relay-protocol.js';
import { KEEP_MAX_AGE_MS, isExhausted, keptToSweep, mayServe, relayAddressProblem } from '../../agent/release/relay-policy.js';

const SHA = 'a'.repeat(64);

describe('relay protocol lines', () => {
  it('a request is GET and a sha256; anything else is a bad request', () => {
    expect(formatRequest(SHA)).toBe(`GET ${SHA}\n`);
    expect(parseRequest(`GET ${SHA}`)).toEqual({ sha256: SHA });
    expect(parseRequest(`GET ${SHA.toUpperCase()}`)).toEqual({ problem: 'bad sha256' });
    expect(parseRequest(`GET ${SHA} extra`)).toEqual({ problem: 'bad request' });
    expect(parseRequest(`PUT ${SHA}`)).toEqual({ problem: 'bad request' });
    expect(parseRequest('')).toEqual({ problem: 'bad request' });
  });

  it('answers: OK with a byte count, NO with a printable reason; anything else is not an answer', () => {
    expect(formatOk(1234)).toBe('OK 1234\n');
    expect(parseAnswer('OK 1234')).toEqual({ ok: true, bytes: 1234 });
    expect(parseAnswer('OK 0')).toEqual({ ok: true, bytes: 0 });
    expect(parseAnswer('OK 01')).toBeNull();
    expect(parseAnswer('OK -1')).toBeNull();
    expect(parseAnswer('OK 12345678901234567')).toBeNull();
    expect(formatNo('session expired')).toBe('NO session expired\n');
    expect(formatNo('a\u0000b\nc')).toBe('NO a?b?c\n');
    expect(formatNo('x'.repeat(1000)).length).toBeLessThanOrEqual(MAX_LINE_BYTES);
    expect(parseAnswer('NO no fetches left')).toEqual({ ok: false, reason: 'no fetches left' });
    expect(parseAnswer('HTTP/1.1 400 Bad Request')).toBeNull();
  });

  it('splits the first line off what arrived; waits for more; refuses a line past the limit', () => {
    expect(splitLine(Buffer.from('OK 5'))).toBe('pending');
    const split = splitLine(Buffer.from('OK 5\nhello'));
    expect(split).not.toBe('pending');
    if (typeof split === 'object') {
      expect(split.line).toBe('OK 5');
      expect(split.rest.toString()).toBe('hello');
    }
    expect(splitLine(Buffer.alloc(MAX_LINE_BYTES, 0x41))).toBe('too_long');
    expect(splitLine(Buffer.concat([Buffer.alloc(MAX_LINE_BYTES, 0x41), Buffer.from('\n')]))).toBe('too_long');
  });
});

describe('relay address', () => {
  const interfaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }, { address: '::1', family: 'IPv6', internal: true }],
    eth1: [{ address: '10.0.0.2', family: 'IPv4', internal: false }, { address: 'fe80::1%eth1', family: 'IPv6', internal: false }],
    'veth-x': [{ address: 'fd00:0:0::5', family: 'IPv6', internal: false }],
  };

  it('an address of one of the host\'s interfaces is accepted, whatever its IPv6 spelling', () => {
    expect(relayAddressProblem('10.0.0.2', interfaces)).toBeNull();
    expect(relayAddressProblem('127.0.0.1', interfaces)).toBeNull();
    expect(relayAddressProblem('0:0::1', interfaces)).toBeNull();
    expect(relayAddressProblem('FD00::5', interfaces)).toBeNull();
  });

  it('wildcards, names, other hosts\' addresses are refused, each saying why', () => {
    expect(relayAddressProblem('0.0.0.0', interfaces)).toMatch(/wildcard/);
    expect(relayAddressProblem('::', interfaces)).toMatch(/wildcard/);
    expect(relayAddressProblem('0:0::0', interfaces)).toMatch(/wildcard/);
    expect(relayAddressProblem('localhost', interfaces)).toMatch(/not an IP address/);
    expect(relayAddressProblem('10.0.0.3', interfaces)).toMatch(/not an address of this host/);
    expect(relayAddressProblem('::ffff:10.0.0.2', interfaces)).toMatch(/not an address of this host/);
  });
});

describe('relay session counting', () => {
  const later = 10_000;

  it('serves while complete and running GETs stay under the count, and not after the session\'s end', () => {
    expect(mayServe({ fetches: 2, completed: 0, inFlight: 0 }, later, 0)).toEqual({ ok: true });
    expect(mayServe({ fetches: 2, completed: 1, inFlight: 0 }, later, 0)).toEqual({ ok: true });
    expect(mayServe({ fetches: 2, completed: 1, inFlight: 1 }, later, 0)).toEqual({ ok: false, reason: 'no fetches left' });
    expect(mayServe({ fetches: 2, completed: 0, inFlight: 0 }, later, later)).toEqual({ ok: false, reason: 'session expired' });
  });

  it('is over once every fetch completed; a running one does not count', () => {
    expect(isExhausted({ fetches: 2, completed: 1, inFlight: 1 })).toBe(false);
    expect(isExhausted({ fetches: 2, completed: 2, inFlight: 0 })).toBe(true);
  });

  it('sweeps kept uploads older than 15 minutes, but never one a session serves', () => {
    const now = 100 * 60_000;
    const files = [
      { name: 'old', mtimeMs: now - KEEP_MAX_AGE_MS - 1 },
      { name: 'served', mtimeMs: now - KEEP_MAX_AGE_MS - 1 },
      { name: 'young', mtimeMs: now - KEEP_MAX_AGE_MS + 1 },
    ];
    expect(keptToSweep(files, now, new Set(['served']))).toEqual(['old']);
  });
});
