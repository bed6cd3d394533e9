import { Duplex } from 'node:stream';

/**
 * An in-memory stand-in for an SSH channel to the agent: once `complete(received)` says a whole
 * request has arrived, it calls `onRequest` with what arrived and answers `response` (raw HTTP);
 * the end comes `endAfterMs` later, as over a network (http discards what a reader has not taken).
 */
export function fakeChannel(options: {
  response: string;
  complete?: (received: string) => boolean;
  onRequest?: (received: string) => void;
  endAfterMs?: number;
}): Duplex {
  const complete = options.complete ?? ((received: string) => received.includes('\r\n\r\n'));
  let received = '';
  let answered = false;
  const channel: Duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      received += chunk.toString('latin1');
      done();
      if (answered || !complete(received)) return;
      answered = true;
      options.onRequest?.(received);
      setImmediate(() => { channel.push(options.response); setTimeout(() => channel.push(null), options.endAfterMs ?? 20); });
    },
  });
  return channel;
}

/** Raw HTTP of a JSON answer that closes the connection. */
export function jsonAnswer(status: number, body: unknown, reason = 'X'): string {
  const text = JSON.stringify(body);
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}
