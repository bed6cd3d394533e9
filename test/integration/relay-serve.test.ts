/**
 * Relay sessions and the peer fetch in one process, on real sockets and a real file system
 * (agent/release/relay-serve.ts, relay-fetch.ts, relay-keep.ts): what the two-agent test cannot
 * reach cheaply. Idle and handshake-less connections, GETs racing for the last fetch, the ttl,
 * the shutdown, a link cut in the middle of the bytes, the sweep of old kept files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import type { RelaySessionRequest } from '../../contract/relay.js';
import { fetchFromRelay, type RelayOrigin } from '../../agent/release/relay-fetch.js';
import { RelayKeep } from '../../agent/release/relay-keep.js';
import { KEEP_MAX_AGE_MS } from '../../agent/release/relay-policy.js';
import { RELAY_TLS } from '../../agent/release/relay-protocol.js';
import { RelaySessions } from '../../agent/release/relay-serve.js';
import { receiveUpload } from '../../agent/release/upload.js';
import { freePort } from '../helpers/ports.js';
import { waitFor, withDeadline } from '../helpers/wait.js';

const APP = 'shop';
const LOCAL = '127.0.0.1';

describe('relay sessions on real sockets', () => {
  let home: string;
  let keep: RelayKeep;
  let sessions: RelaySessions;
  let payload: Buffer;
  let sha256: string;

  beforeEach(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-relay-'));
    keep = new RelayKeep(home);
    sessions = new RelaySessions({ apps: { [APP]: {} }, keep, logger: pino({ level: 'silent' }), idleMs: 300 });
    // More than loopback's socket buffers hold, so a cut lands in the middle of the bytes.
    payload = randomBytes(24 * 1024 * 1024 + 17);
    sha256 = createHash('sha256').update(payload).digest('hex');
    const part = path.join(home, 'upload.part');
    await fs.writeFile(part, payload, { mode: 0o600 });
    await keep.keep(part, sha256);
  });

  afterEach(async () => {
    await sessions.closeAll();
    await fs.rm(home, { recursive: true, force: true });
  });

  const request = async (overrides: Partial<RelaySessionRequest> = {}): Promise<RelaySessionRequest> => ({
    sha256, bytes: payload.length, address: LOCAL, port: await freePort(), identity: `id-${randomBytes(4).toString('hex')}`,
    key: randomBytes(32).toString('hex'), fetches: 1, ttlMs: 60_000, ...overrides,
  });
  const originOf = (open: RelaySessionRequest): RelayOrigin => ({
    address: open.address, port: open.port, identity: open.identity, key: open.key, sha256: open.sha256, bytes: open.bytes,
  });
  /** The bytes of a fetch, hashed. */
  const hashOf = async (source: Readable): Promise<{ bytes: number; sha256: string }> => {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of source) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { bytes, sha256: hash.digest('hex') };
  };
  const refusalOf = async (promise: Promise<unknown>): Promise<SlipwayError> => {
    const error = await promise.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    return error as SlipwayError;
  };
  const isKept = () => fs.lstat(keep.path(sha256)).then(() => true, () => false);
  const refusesConnections = (port: number) => new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: LOCAL, port });
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(true));
  });

  it('serves the exact bytes; two GETs racing for the last fetch: one is served, the other told NO', async () => {
    const open = await request();
    await sessions.open(APP, open);
    const results = await Promise.allSettled([fetchFromRelay(originOf(open), hashOf), fetchFromRelay(originOf(open), hashOf)]);
    const served = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(served).toHaveLength(1);
    expect((served[0] as PromiseFulfilledResult<{ bytes: number; sha256: string }>).value).toEqual({ bytes: payload.length, sha256 });
    expect(refused).toHaveLength(1);
    // Told NO, or (if it came after the session ended) found no listener.
    expect(['relay_refused', 'relay_unreachable']).toContain((refused[0]!.reason as SlipwayError).code);
    await waitFor(async () => !await isKept() && await refusesConnections(open.port), { description: 'the session to end after its one fetch' });
  });

  it('a connection that sends no line, or never shakes hands, is closed at the idle timeout; it does not count', async () => {
    const open = await request();
    await sessions.open(APP, open);
    const silent = tls.connect({ ...RELAY_TLS, host: LOCAL, port: open.port, pskCallback: () => ({ identity: open.identity, psk: Buffer.from(open.key, 'hex') }), checkServerIdentity: () => undefined });
    silent.on('error', () => undefined);
    const raw = net.connect({ host: LOCAL, port: open.port });
    raw.on('error', () => undefined);
    await withDeadline(Promise.all([silent, raw].map((socket) => new Promise((resolve) => socket.once('close', resolve)))), 10_000, 'the server to close both idle connections');
    expect(await fetchFromRelay(originOf(open), hashOf)).toEqual({ bytes: payload.length, sha256 });
  });

  it('a line that is not the protocol is answered NO; a line too long too', async () => {
    const open = await request({ fetches: 3 });
    await sessions.open(APP, open);
    const answerTo = (line: string) => new Promise<string>((resolve) => {
      const socket = tls.connect({ ...RELAY_TLS, host: LOCAL, port: open.port, pskCallback: () => ({ identity: open.identity, psk: Buffer.from(open.key, 'hex') }), checkServerIdentity: () => undefined });
      let text = '';
      socket.on('secureConnect', () => socket.write(line));
      socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(text));
    });
    expect(await answerTo('HELLO\n')).toBe('NO bad request\n');
    expect(await answerTo(`GET ${'x'.repeat(300)}`)).toBe('NO bad request\n');
    expect(await answerTo(`GET ${'b'.repeat(64)}\n`)).toBe('NO not served in this session\n');
    expect(await isKept()).toBe(true);
  });

  it('ends at its ttl: listener closed, kept file removed', async () => {
    const open = await request({ ttlMs: 1_000 });
    await sessions.open(APP, open);
    await waitFor(async () => !await isKept() && await refusesConnections(open.port), { description: 'the session to end at its ttl' });
    expect((await refusalOf(fetchFromRelay(originOf(open), hashOf))).code).toBe('relay_unreachable');
  });

  it('closeAll (agent shutdown) cuts a fetch in the middle: the peer sees relay_unreachable, the file is gone', async () => {
    const open = await request();
    await sessions.open(APP, open);
    const incoming = path.join(home, 'incoming');
    const fetched = fetchFromRelay(originOf(open), async (source) => {
      // Reading slowly enough that the shutdown lands in the middle.
      source.pause();
      await sessions.closeAll();
      return receiveUpload(source, { incomingDir: incoming, expectedSha256: sha256, maxBytes: 1 << 30, expectedBytes: payload.length });
    });
    const error = await refusalOf(fetched);
    expect(error.code).toBe('relay_unreachable');
    expect(error.message).toMatch(/dropped/);
    expect(await isKept()).toBe(false);
    expect(await refusesConnections(open.port)).toBe(true);
    expect(await fs.readdir(incoming)).toEqual([]);
  });

  it('an answer of another length than declared is refused before a byte is stored', async () => {
    const open = await request();
    await sessions.open(APP, open);
    const error = await refusalOf(fetchFromRelay({ ...originOf(open), bytes: payload.length - 1 }, hashOf));
    expect(error.code).toBe('relay_refused');
    expect(error.message).toMatch(/offers \d+ bytes/);
  });

  it('sweeps kept files older than the keep age, but not one a session serves, nor a young one', async () => {
    // Kept files are hard links of their upload: one upload each, so each has its own mtime.
    const keepNew = async (): Promise<string> => {
      const name = randomBytes(32).toString('hex');
      const part = path.join(home, `${name}.part`);
      await fs.writeFile(part, name, { mode: 0o600 });
      await keep.keep(part, name);
      return name;
    };
    const old = await keepNew();
    const young = await keepNew();
    const past = new Date(Date.now() - KEEP_MAX_AGE_MS - 60_000);
    for (const name of [old, sha256]) await fs.utimes(keep.path(name), past, past);
    await sessions.open(APP, await request());
    await sessions.sweep();
    expect((await fs.readdir(keep.dir)).sort()).toEqual([sha256, young].sort());
  });

  it('a kept upload no session ever serves is swept once past the keep age, with no session ending and no restart', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      sessions.sweepAfterKeepAge();
      sessions.sweepAfterKeepAge(); // one timer, however many keeps
      await vi.advanceTimersByTimeAsync(KEEP_MAX_AGE_MS - 1_000);
      expect(await isKept()).toBe(true);
      await vi.advanceTimersByTimeAsync(10_000);
    } finally {
      vi.useRealTimers();
    }
    await waitFor(async () => !(await isKept()), { timeoutMs: 10_000, description: 'the kept upload to be swept' });
  });
});
