import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got, and what it answered. */
export interface Received { at: number; path: string; body: unknown; answered: number }

/**
 * A webhook receiver on loopback whose behaviour the test sets: answer 200, answer 500, or be
 * down (closed) and come back on the same port. It keeps every request in arrival order.
 */
export interface Receiver {
  port: number;
  url(path?: string): string;
  received: Received[];
  /** The status the next requests get (default 200). */
  answer(status: number): void;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(options: { port?: number; listening?: boolean } = {}): Promise<Receiver> {
  const received: Received[] = [];
  let status = 200;
  let server: http.Server | null = null;
  let port = options.port ?? 0;
  const listen = () => new Promise<void>((resolve, reject) => {
    const s = http.createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => { text += c.toString(); });
      req.on('end', () => {
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* kept as text */ }
        received.push({ at: Date.now(), path: req.url ?? '', body, answered: status });
        res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(status === 200 ? 'ok' : 'no');
      });
    });
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      port = (s.address() as AddressInfo).port;
      server = s;
      resolve();
    });
  });
  const down = () => new Promise<void>((resolve) => {
    const s = server;
    server = null;
    if (!s) return resolve();
    s.close(() => resolve());
    s.closeAllConnections();
  });
  await listen();
  if (options.listening === false) await down();
  return {
    get port() { return port; },
    url: (path = '/hook') => `http://127.0.0.1:${port}${path}`,
    received,
    answer: (s) => { status = s; },
    down,
    up: () => (server ? Promise.resolve() : listen()),
    close: down,
  };
}
