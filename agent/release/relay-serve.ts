/**
 * Relay sessions (DESIGN-S10): for one session the agent listens on one address of its own (the
 * controller names it) with TLS 1.2 PSK only, and serves one kept upload (relay-keep.ts) to the
 * peers that present the session's identity and key, by the one-line protocol of
 * relay-protocol.ts. A session ends after its `fetches` complete GETs, at its ttl, on DELETE, or
 * when the agent stops: its listener is closed and its kept file removed. Nothing listens when no
 * session is open. The key stays in this process's memory; it is never logged or answered.
 */
import { open as openFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import tls, { type TLSSocket } from 'node:tls';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { RelaySession, RelaySessionRequest } from '../../contract/relay.js';
import { requireApp } from '../apps.js';
import type { RelayKeep } from './relay-keep.js';
import { RelayArrivals, type Arrival } from './relay-arrivals.js';
import { KEEP_MAX_AGE_MS, isExhausted, mayServe, relayAddressProblem, type FetchCount, type InterfaceAddress } from './relay-policy.js';
import { RELAY_IDLE_MS, RELAY_TLS, formatNo, formatOk, parseRequest, splitLine } from './relay-protocol.js';

export interface RelaySessionsDeps {
  apps: Readonly<Record<string, unknown>>;
  keep: RelayKeep;
  /** Uploads still arriving (default: a registry of its own). */
  arrivals?: RelayArrivals;
  logger: Logger;
  /** The host's interface addresses (default os.networkInterfaces()). */
  interfaces?: () => Readonly<Record<string, readonly InterfaceAddress[] | undefined>>;
  now?: () => number;
  idleMs?: number;
}

interface Session {
  app: string;
  identity: string;
  sha256: string;
  bytes: number;
  address: string;
  port: number;
  expiresAtMs: number;
  count: FetchCount;
  server: tls.Server;
  sockets: Set<TLSSocket>;
  timer: NodeJS.Timeout | undefined;
}

/** Past the keep age before the sweep after a keep runs (a file's mtime is its last written byte). */
const SWEEP_MARGIN_MS = 5_000;

export class RelaySessions {
  private readonly sessions = new Map<string, Session>();
  private sweepTimer: NodeJS.Timeout | undefined;
  /** Uploads with ?relay=1 still arriving: a session may serve one as it grows. */
  readonly arrivals: RelayArrivals;

  constructor(private readonly deps: RelaySessionsDeps) {
    this.arrivals = deps.arrivals ?? new RelayArrivals();
  }

  /**
   * Starts serving the kept upload of `request.sha256` on address:port, or the upload of it still
   * arriving (waiting up to `waitMs` for one to start); refused before anything listens.
   */
  async open(app: string, request: RelaySessionRequest): Promise<RelaySession> {
    requireApp(this.deps.apps, app);
    const { identity, sha256, bytes, address, port } = request;
    this.requireNew(identity);
    const problem = relayAddressProblem(address, (this.deps.interfaces ?? os.networkInterfaces)());
    if (problem) throw addressInvalid(problem);
    const kept = await this.deps.keep.size(sha256);
    if (kept !== bytes) {
      const arrival = await this.arrivals.waitFor(sha256, request.waitMs ?? 0);
      if (!arrival || arrival.failed || arrival.bytes !== bytes) {
        const have = kept ?? (arrival && !arrival.failed ? arrival.bytes : null);
        throw new SlipwayError('relay_artifact_missing', have === null
          ? `no upload of ${shortSha(sha256)} is kept or arriving for the relay on this host`
          : `the upload of ${shortSha(sha256)} kept for the relay has ${have} bytes, not ${bytes}`, {
          status: 404, hint: 'upload the release to this host with ?relay=1 first, or open the session with waitMs while it uploads (a release it already had is not kept)',
        });
      }
      this.requireNew(identity);
    }
    const key = Buffer.from(request.key, 'hex');
    const session: Session = {
      app, identity, sha256, bytes, address, port, expiresAtMs: this.now() + request.ttlMs,
      count: { fetches: request.fetches, completed: 0, inFlight: 0 },
      server: tls.createServer({
        ...RELAY_TLS,
        handshakeTimeout: this.idleMs(),
        // Any other identity, or another key, fails the handshake.
        pskCallback: (_socket, presented) => (presented === identity ? key : null),
      }),
      sockets: new Set(), timer: undefined,
    };
    // Claimed before the listen, so a second open of the identity meanwhile is refused.
    this.sessions.set(identity, session);
    session.server.on('secureConnection', (socket: TLSSocket) => this.serve(session, socket));
    // With a listener here Node leaves the failed socket open (a handshake timeout, say): it is closed.
    session.server.on('tlsClientError', (error, socket) => {
      socket.destroy();
      this.deps.logger.info({ app, identity, reason: errorMessage(error).split('\n')[0] }, 'relay handshake refused');
    });
    try {
      await listen(session.server, address, port);
    } catch (error) {
      this.sessions.delete(identity);
      session.server.close();
      throw listenError(error, address, port);
    }
    // A listener error after the listen (rare: the socket failing under it) ends the session, never the agent.
    session.server.on('error', (error) => {
      this.deps.logger.warn({ app, identity, err: error }, 'relay listener failed');
      void this.end(session, 'listener failed');
    });
    session.timer = setTimeout(() => { void this.end(session, 'expired'); }, request.ttlMs);
    session.timer.unref();
    const expiresAt = new Date(session.expiresAtMs).toISOString();
    this.deps.logger.info({ app, identity, sha256, address, port, fetches: request.fetches, expiresAt }, 'relay session opened');
    return { identity, address, port, expiresAt };
  }

  private requireNew(identity: string): void {
    if (this.sessions.has(identity)) {
      throw new SlipwayError('relay_session_exists', `relay session ${identity} is already open on this host`, {
        status: 409, hint: 'open each session with a fresh identity, or DELETE the old one first',
      });
    }
  }

  /** Ends the session (idempotent: nothing to do when it is gone, or another app's). */
  async close(app: string, identity: string): Promise<void> {
    requireApp(this.deps.apps, app);
    const session = this.sessions.get(identity);
    if (session?.app === app) await this.end(session, 'closed');
  }

  /** Ends every session (agent shutdown). */
  async closeAll(): Promise<void> {
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.all([...this.sessions.values()].map((session) => this.end(session, 'agent stopping')));
  }

  /**
   * After an upload was kept: a sweep once that file is past the keep age, so a kept upload no
   * session ever serves (the session could not open, the controller died before opening it) is
   * removed then, not only at the next agent start or session end. One timer at a time; a sweep
   * that leaves kept files behind (younger ones) arms it again.
   */
  sweepAfterKeepAge(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      void this.sweep()
        .then(async () => { if ((await this.deps.keep.count()) > 0) this.sweepAfterKeepAge(); })
        .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'could not sweep old relay uploads'));
    }, KEEP_MAX_AGE_MS + SWEEP_MARGIN_MS);
    this.sweepTimer.unref();
  }

  /** Removes kept uploads older than the keep age that no session serves. */
  async sweep(): Promise<void> {
    const serving = new Set([...this.sessions.values()].map((session) => session.sha256));
    const swept = await this.deps.keep.sweep(Date.now(), serving);
    if (swept.length > 0) this.deps.logger.info({ files: swept }, 'old relay uploads removed');
  }

  /** One connection: one request line, one answer. */
  private serve(session: Session, socket: TLSSocket): void {
    session.sockets.add(socket);
    socket.on('close', () => session.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setTimeout(this.idleMs(), () => socket.destroy());
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const split = splitLine(received);
      if (split === 'pending') return;
      socket.off('data', onData);
      // Anything the peer sends after its one line is read and dropped, so its end is seen.
      socket.resume();
      if (split === 'too_long') {
        socket.end(formatNo('bad request'));
        return;
      }
      void this.answer(session, socket, split.line);
    };
    socket.on('data', onData);
  }

  private async answer(session: Session, socket: TLSSocket, line: string): Promise<void> {
    const request = parseRequest(line);
    if ('problem' in request) return void socket.end(formatNo(request.problem));
    if (request.sha256 !== session.sha256) return void socket.end(formatNo('not served in this session'));
    const admitted = mayServe(session.count, session.expiresAtMs, this.now());
    if (!admitted.ok || !this.sessions.has(session.identity)) return void socket.end(formatNo(admitted.ok ? 'session closed' : admitted.reason));
    session.count.inFlight += 1;
    let complete = false;
    let source: { handle: FileHandle; arrival: Arrival | undefined } | undefined;
    try {
      // Opened before the header goes out: a session ending now cannot leave a peer with an OK and no bytes.
      source = await this.openSource(session);
      socket.write(formatOk(session.bytes));
      await sendFile(source.handle, socket, session.bytes, source.arrival);
      complete = true;
    } catch (error) {
      if (!socket.destroyed) socket.destroy();
      this.deps.logger.info({ app: session.app, identity: session.identity, reason: errorMessage(error) }, 'relay fetch cut off');
    } finally {
      session.count.inFlight -= 1;
      await source?.handle.close().catch(() => undefined);
    }
    if (!complete) return;
    session.count.completed += 1;
    this.deps.logger.info({ app: session.app, identity: session.identity, completed: session.count.completed, fetches: session.count.fetches }, 'relay fetch served');
    if (isExhausted(session.count)) await this.end(session, 'all fetches served', { cut: false });
  }

  /**
   * Closes the listener and removes the kept file (unless another session serves it). Open
   * connections are cut, except when the session ended because every fetch was served: those
   * are finishing their last bytes, and close on their own (or at the idle timeout).
   */
  private async end(session: Session, why: string, options: { cut: boolean } = { cut: true }): Promise<void> {
    if (this.sessions.get(session.identity) !== session) return;
    this.sessions.delete(session.identity);
    clearTimeout(session.timer);
    const closed = new Promise<void>((resolve) => session.server.close(() => resolve()));
    if (options.cut) for (const socket of session.sockets) socket.destroy();
    const served = (): boolean => [...this.sessions.values()].some((other) => other.sha256 === session.sha256);
    const remove = (): Promise<void> => this.deps.keep.remove(session.sha256).catch((error: unknown) => this.deps.logger.warn({ err: error }, 'could not remove a relay upload'));
    if (!served()) {
      await remove();
      // An upload still arriving keeps its bytes when its ingest ends: removed then, unless a new session serves them.
      this.arrivals.whenSettled(session.sha256, () => { if (!served()) void remove(); });
    }
    if (options.cut) await closed;
    this.deps.logger.info({ app: session.app, identity: session.identity, why, served: session.count.completed }, 'relay session closed');
    await this.sweep().catch((error: unknown) => this.deps.logger.warn({ err: error }, 'could not sweep old relay uploads'));
  }

  /**
   * The file a GET sends: the upload's .part while it is arriving (its descriptor stays valid when
   * the .part is moved or removed after), else the kept file.
   */
  private async openSource(session: Session): Promise<{ handle: FileHandle; arrival: Arrival | undefined }> {
    const arrival = this.arrivals.get(session.sha256);
    if (arrival && arrival.bytes === session.bytes) {
      // ENOENT: the ingest moved its .part just now; its bytes are kept by then.
      const handle = await openFile(arrival.partFile, 'r').catch(() => undefined);
      if (handle) return { handle, arrival };
    }
    return { handle: await openFile(this.deps.keep.path(session.sha256), 'r'), arrival: undefined };
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private idleMs(): number {
    return this.deps.idleMs ?? RELAY_IDLE_MS;
  }
}

/** Bytes read per step of a GET. */
const SEND_CHUNK = 1024 * 1024;

/**
 * Sends `bytes` bytes of `handle` to `socket` and ends it. Following an arrival, it sends what is
 * written so far and waits for more; the last byte goes out only once the whole upload is verified,
 * and a failed upload throws (the caller cuts the connection off).
 */
async function sendFile(handle: FileHandle, socket: TLSSocket, bytes: number, arrival: Arrival | undefined): Promise<void> {
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let offset = 0;
  while (offset < bytes) {
    if (socket.destroyed) throw new Error('the peer hung up');
    if (arrival?.failed) throw new Error('the upload it relays failed');
    const ready = !arrival || arrival.received ? bytes : Math.min(arrival.written, bytes - 1);
    if (offset >= ready) {
      await Promise.race([arrival!.changed(), closed]);
      continue;
    }
    const length = Math.min(ready - offset, SEND_CHUNK);
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    if (bytesRead === 0) throw new Error(`the file ended after ${offset} of ${bytes} bytes`);
    offset += bytesRead;
    if (!socket.write(bytesRead === length ? buffer : buffer.subarray(0, bytesRead))) {
      await Promise.race([new Promise<void>((resolve) => socket.once('drain', () => resolve())), closed]);
    }
  }
  socket.end();
  await finished(socket, { readable: false });
}

function listen(server: tls.Server, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function addressInvalid(problem: string, cause?: unknown): SlipwayError {
  return new SlipwayError('relay_address_invalid', `cannot serve the relay there: ${problem}`, {
    status: 400, ...(cause === undefined ? {} : { cause }),
    hint: 'set the host\'s "relay" in deploy.config.json to a private address of one of its own interfaces',
  });
}

function listenError(error: unknown, address: string, port: number): SlipwayError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE' || code === 'EACCES') {
    return new SlipwayError('relay_port_busy', `cannot listen for the relay on ${address}:${port}: ${code === 'EADDRINUSE' ? 'the port is in use' : 'the port is not allowed to the agent'}`, {
      status: 409, cause: error, hint: 'choose another port with rollout.relay.port in deploy.config.json',
    });
  }
  if (code === 'EADDRNOTAVAIL') return addressInvalid(`${address} is not an address of this host`, error);
  return new SlipwayError('relay_port_busy', `cannot listen for the relay on ${address}:${port}: ${errorMessage(error)}`, {
    status: 409, cause: error, hint: 'choose another port with rollout.relay.port in deploy.config.json',
  });
}
