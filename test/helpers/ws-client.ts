// A minimal WebSocket client (RFC 6455: the upgrade handshake, masked text frames out,
// unfragmented frames in) over a raw TCP socket, so tests can hold one connection open across a
// slot flip and see which process answers each message, with no dependency.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface WsClient {
  /** Sends a text frame and resolves with the next text frame the server sends back. */
  request(text: string, timeoutMs?: number): Promise<string>;
  /** Whether the TCP connection is still open. */
  isOpen(): boolean;
  close(): Promise<void>;
}

function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  let header: Buffer;
  if (len < 126) header = Buffer.from([0x80 | opcode, 0x80 | len]);
  else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([header, mask, body]);
}

/** Opens ws://127.0.0.1:<port><path> with a Host header; rejects unless the server answers 101 with the right accept key. */
export function openWebSocket(port: number, options: { host: string; path?: string; timeoutMs?: number }): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const expectedAccept = createHash('sha1').update(key + GUID).digest('base64');
    const socket = net.connect({ host: '127.0.0.1', port });
    let open = true;
    let handshakeDone = false;
    let buffered = Buffer.alloc(0);
    const texts: string[] = [];
    const waiters: ((text: string) => void)[] = [];
    let closedError: Error | null = null;
    const failWaiters: ((error: Error) => void)[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`WebSocket handshake with ${options.host} on port ${port} timed out`));
    }, options.timeoutMs ?? 5000);
    socket.on('connect', () => {
      socket.write([
        `GET ${options.path ?? '/ws'} HTTP/1.1`,
        `Host: ${options.host}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`,
        'Sec-WebSocket-Version: 13',
        '', '',
      ].join('\r\n'));
    });
    const deliver = (text: string) => {
      const waiter = waiters.shift();
      failWaiters.shift();
      if (waiter) waiter(text);
      else texts.push(text);
    };
    const parseFrames = () => {
      for (;;) {
        if (buffered.length < 2) return;
        const opcode = buffered[0]! & 0x0f;
        let len = buffered[1]! & 0x7f;
        let offset = 2;
        if (len === 126) {
          if (buffered.length < 4) return;
          len = buffered.readUInt16BE(2);
          offset = 4;
        } else if (len === 127) {
          if (buffered.length < 10) return;
          len = Number(buffered.readBigUInt64BE(2));
          offset = 10;
        }
        if (buffered.length < offset + len) return;
        const payload = buffered.subarray(offset, offset + len);
        buffered = buffered.subarray(offset + len);
        if (opcode === 0x1) deliver(payload.toString('utf8'));
        else if (opcode === 0x8) socket.end();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!handshakeDone) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        buffered = buffered.subarray(end + 4);
        clearTimeout(timer);
        const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
        const accept = /^sec-websocket-accept:\s*(\S+)/im.exec(head)?.[1];
        if (status !== '101' || accept !== expectedAccept) {
          socket.destroy();
          reject(new Error(`WebSocket upgrade refused: ${head.split('\r\n').slice(0, 6).join(' | ')}`));
          return;
        }
        handshakeDone = true;
        resolve({
          request(text, timeoutMs = 5000) {
            if (!open) return Promise.reject(closedError ?? new Error('WebSocket is closed'));
            socket.write(maskedFrame(0x1, Buffer.from(text, 'utf8')));
            const queued = texts.shift();
            if (queued !== undefined) return Promise.resolve(queued);
            return new Promise<string>((res, rej) => {
              const t = setTimeout(() => rej(new Error(`no WebSocket answer within ${timeoutMs} ms`)), timeoutMs);
              waiters.push((value) => { clearTimeout(t); res(value); });
              failWaiters.push((error) => { clearTimeout(t); rej(error); });
            });
          },
          isOpen: () => open,
          close() {
            if (!open) return Promise.resolve();
            return new Promise<void>((res) => {
              socket.once('close', () => res());
              socket.write(maskedFrame(0x8, Buffer.from([0x03, 0xe8])));
              setTimeout(() => socket.destroy(), 1000).unref();
            });
          },
        });
      }
      parseFrames();
    });
    socket.on('error', (error) => {
      closedError = error;
      if (!handshakeDone) {
        clearTimeout(timer);
        reject(error);
      }
    });
    socket.on('close', () => {
      open = false;
      const error = closedError ?? new Error('WebSocket connection closed');
      for (const fail of failWaiters.splice(0)) fail(error);
      waiters.splice(0);
    });
  });
}
