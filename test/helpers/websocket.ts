import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

// The least of RFC 6455 that proves a WebSocket through nginx: the opening handshake, and text
// frames (masked from the client, unmasked from the server, payloads under 64 KiB), close frames.
// The `ws` package is only a transitive dependency here (of pm2) and has no types; this is enough
// for tests and has no dependency.

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TEXT = 0x1;
const CLOSE = 0x8;

function acceptKey(key: string): string {
  return createHash('sha1').update(`${key}${HANDSHAKE_GUID}`).digest('base64');
}

function frame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  if (payload.length >= 0x10000) throw new Error('test frames stay under 64 KiB');
  const header = payload.length < 126 ? Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | payload.length])
    : Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | 126, payload.length >> 8, payload.length & 0xff]);
  if (!mask) return Buffer.concat([header, payload]);
  const key = randomBytes(4);
  return Buffer.concat([header, key, payload.map((byte, i) => byte ^ key[i % 4]!)]);
}

/** Reads frames off a byte stream; calls `onFrame` for each complete one. */
function frameReader(onFrame: (opcode: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) return;
      const opcode = buffered[0]! & 0x0f;
      const masked = (buffered[1]! & 0x80) !== 0;
      let length = buffered[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        throw new Error('test frames stay under 64 KiB');
      }
      const maskKey = masked ? buffered.subarray(offset, offset + 4) : null;
      if (masked) offset += 4;
      if (buffered.length < offset + length) return;
      const payload = Buffer.from(buffered.subarray(offset, offset + length));
      if (maskKey) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ maskKey[i % 4]!;
      buffered = buffered.subarray(offset + length);
      onFrame(opcode, payload);
    }
  };
}

/**
 * Server side, for an http.Server's 'upgrade' event: completes the handshake and answers every
 * text message with `reply(text)` on the same connection.
 */
export function acceptWebSocket(request: IncomingMessage, socket: Duplex, reply: (text: string) => string): void {
  const key = request.headers['sec-websocket-key'];
  if (typeof key !== 'string' || request.headers.upgrade?.toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
  socket.on('error', () => socket.destroy());
  socket.on('data', frameReader((opcode, payload) => {
    if (opcode === TEXT) socket.write(frame(TEXT, Buffer.from(reply(payload.toString('utf8'))), false));
    else if (opcode === CLOSE) socket.end(frame(CLOSE, Buffer.alloc(0), false));
  }));
}

export interface WebSocketClient {
  /** Headers of the 101 answer. */
  headers: http.IncomingHttpHeaders;
  /** Sends one text message and resolves with the next text message received. */
  ask(text: string, timeoutMs?: number): Promise<string>;
  close(): void;
}

/** Opens a WebSocket to http://127.0.0.1:<port><path> with the given Host. */
export function openWebSocket(options: { port: number; host: string; path?: string; timeoutMs?: number }): Promise<WebSocketClient> {
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1', port: options.port, path: options.path ?? '/', agent: false, timeout: options.timeoutMs ?? 5_000,
      headers: { host: options.host, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
    });
    request.on('timeout', () => request.destroy(new Error('WebSocket handshake timed out')));
    request.on('error', reject);
    request.on('response', (response) => {
      response.resume();
      reject(new Error(`WebSocket handshake answered ${response.statusCode} instead of 101`));
    });
    request.on('upgrade', (response, socket, head) => {
      if (response.headers['sec-websocket-accept'] !== acceptKey(key)) {
        socket.destroy();
        reject(new Error(`wrong Sec-WebSocket-Accept: ${String(response.headers['sec-websocket-accept'])}`));
        return;
      }
      // The test servers only ever answer a message, so answers arrive in the order asked.
      const waiting: Array<(text: string) => void> = [];
      const read = frameReader((opcode, payload) => {
        if (opcode === TEXT) waiting.shift()?.(payload.toString('utf8'));
      });
      socket.on('data', read);
      socket.on('error', () => undefined);
      if (head.length > 0) read(head);
      resolve({
        headers: response.headers,
        ask: (text, timeoutMs = 5_000) => new Promise((answer, fail) => {
          if (socket.destroyed) {
            fail(new Error('WebSocket is closed'));
            return;
          }
          const timer = setTimeout(() => fail(new Error(`no WebSocket answer to ${JSON.stringify(text)} within ${timeoutMs} ms`)), timeoutMs);
          waiting.push((reply) => { clearTimeout(timer); answer(reply); });
          socket.write(frame(TEXT, Buffer.from(text), true));
        }),
        close: () => {
          if (!socket.destroyed) socket.end(frame(CLOSE, Buffer.alloc(0), true));
          socket.destroy();
        },
      });
    });
    request.end();
  });
}
