/**
 * A peer's side of the relay (DESIGN-S10): connect to the uploader's session listener (TLS 1.2
 * PSK, the session's identity and key), ask for the sha256 with one line, and hand the bytes that
 * follow `OK <bytes>` to the same ingest an upload of that kind goes through, which verifies the
 * length and the sha256 as it does for an upload. What fails on the way is relay_unreachable
 * (nothing answered, or the link dropped) or relay_refused (the handshake failed: expired or a
 * wrong key; or the uploader said NO); the controller then uploads to this host directly.
 */
import type { Readable } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { ReleaseService, StoredDelta, StoredRelease, UploadInput } from './service.js';
import { RELAY_CONNECT_TIMEOUT_MS, RELAY_IDLE_MS, RELAY_TLS, formatRequest, parseAnswer, splitLine } from './relay-protocol.js';

export interface RelayOrigin {
  address: string;
  port: number;
  identity: string;
  /** 64 hex digits. Secret: never in a message. */
  key: string;
  sha256: string;
  bytes: number;
}

export interface RelayFetchOptions { connectTimeoutMs?: number; idleMs?: number }

/**
 * Fetches `origin.sha256` from the relay and gives the stream of its bytes to `ingest`; the
 * connection is closed when ingest is done, however it ends.
 */
export async function fetchFromRelay<T>(origin: RelayOrigin, ingest: (source: Readable) => Promise<T>, options: RelayFetchOptions = {}): Promise<T> {
  const socket = await openRelay(origin, options);
  try {
    return await ingest(socket);
  } catch (error) {
    throw asCutOff(error, origin);
  } finally {
    socket.destroy();
  }
}

/** Connects, sends the request, reads the answer line: the socket, positioned at the first byte of the file. */
async function openRelay(origin: RelayOrigin, options: RelayFetchOptions): Promise<TLSSocket> {
  const where = `${origin.address}:${origin.port}`;
  const socket = tls.connect({
    ...RELAY_TLS, host: origin.address, port: origin.port,
    pskCallback: () => ({ identity: origin.identity, psk: Buffer.from(origin.key, 'hex') }),
    // PSK authenticates the server; there is no certificate to check.
    checkServerIdentity: () => undefined,
  });
  // Errors after the hand-over surface through the ingest's read; none may go unhandled.
  socket.on('error', () => undefined);
  let stage: 'connect' | 'handshake' | 'answer' = 'connect';
  try {
    const line = await new Promise<{ line: string; rest: Buffer }>((resolve, reject) => {
      const connectTimer = setTimeout(() => socket.destroy(Object.assign(new Error(`no connection within ${options.connectTimeoutMs ?? RELAY_CONNECT_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })),
        options.connectTimeoutMs ?? RELAY_CONNECT_TIMEOUT_MS);
      socket.setTimeout(options.idleMs ?? RELAY_IDLE_MS, () => socket.destroy(Object.assign(new Error(`no data for ${options.idleMs ?? RELAY_IDLE_MS} ms`), { code: 'ETIMEDOUT' })));
      socket.once('connect', () => {
        clearTimeout(connectTimer);
        stage = 'handshake';
      });
      socket.once('secureConnect', () => {
        stage = 'answer';
        socket.write(formatRequest(origin.sha256));
      });
      let received = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        received = Buffer.concat([received, chunk]);
        const split = splitLine(received);
        if (split === 'pending') return;
        done();
        if (split === 'too_long') reject(refused(origin, 'the relay answered something that is not the protocol'));
        else resolve(split);
      };
      const onError = (error: Error): void => { done(); reject(error); };
      const onClose = (): void => { done(); reject(Object.assign(new Error('the connection closed before an answer'), { code: 'ECONNRESET' })); };
      const done = (): void => {
        clearTimeout(connectTimer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        socket.pause();
      };
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('close', onClose);
    });
    const answer = parseAnswer(line.line);
    if (!answer) throw refused(origin, 'the relay answered something that is not the protocol');
    if (!answer.ok) throw refused(origin, `the relay refused: ${answer.reason}`);
    if (answer.bytes !== origin.bytes) throw refused(origin, `the relay offers ${answer.bytes} bytes, not the ${origin.bytes} declared`);
    if (line.rest.length > 0) socket.unshift(line.rest);
    return socket;
  } catch (error) {
    socket.destroy();
    if (error instanceof SlipwayError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    // Once the TCP connection is up, a TLS failure is the session saying no: expired (its
    // listener gone would be a refused connection instead) or the identity or key is not its own.
    if (stage !== 'connect' && code.startsWith('ERR_SSL')) throw refused(origin, `the TLS handshake with ${where} failed (${code})`, error);
    throw new SlipwayError('relay_unreachable', `could not fetch ${shortSha(origin.sha256)} from the relay at ${where}: ${firstLine(error)}`, {
      status: 502, cause: error,
      hint: 'the uploader\'s relay address and port must be reachable from this host: check firewalls, the hosts\' "relay" addresses and rollout.relay.port',
    });
  }
}

function refused(origin: RelayOrigin, why: string, cause?: unknown): SlipwayError {
  return new SlipwayError('relay_refused', `the relay at ${origin.address}:${origin.port} did not serve ${shortSha(origin.sha256)}: ${why}`, {
    status: 502, ...(cause === undefined ? {} : { cause }),
    hint: 'the session expired or its key is not this one; push again',
  });
}

/** The link dropped after the answer: the ingest saw an incomplete upload; for the controller it is the relay that failed. */
function asCutOff(error: unknown, origin: RelayOrigin): unknown {
  if (!(error instanceof SlipwayError) || error.code !== 'upload_incomplete') return error;
  return new SlipwayError('relay_unreachable', `the relay link from ${origin.address}:${origin.port} dropped: ${error.message}`, {
    status: 502, cause: error, hint: 'the uploader\'s relay address and port must be reachable from this host: check firewalls and rollout.relay',
  });
}

function firstLine(error: unknown): string {
  return errorMessage(error).split('\n')[0]!;
}

/** What a peer fetch stores: an upload of `kind` whose bytes come from the relay. */
export interface RelayFetchInput { kind: 'full' | 'delta'; origin: RelayOrigin; upload: Omit<UploadInput, 'source' | 'sha256' | 'expectedBytes'> }

/** The same ingest as an upload of that kind (service.ts receive / receiveDelta), fed from the relay. */
export async function fetchRelease(
  input: RelayFetchInput, releases: Pick<ReleaseService, 'receive' | 'receiveDelta' | 'requireReceivable'>, options: RelayFetchOptions = {},
): Promise<StoredRelease | StoredDelta> {
  const { kind, origin, upload } = input;
  // A release the host has is refused before the relay is asked: no fetch of the session is used.
  releases.requireReceivable(upload.app, upload.releaseId);
  return fetchFromRelay(origin, (source) => {
    const request: UploadInput = { ...upload, source, sha256: origin.sha256, expectedBytes: origin.bytes };
    return kind === 'full' ? releases.receive(request) : releases.receiveDelta(request);
  }, options);
}
