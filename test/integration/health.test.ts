import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { checkOnce, waitHealthy, type CheckResult } from '../../agent/health.js';
import { freePort } from '../helpers/ports.js';

interface TestServer {
  url: string;
  /** Requests received, and TCP connections accepted. */
  requests: number;
  connections: number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

async function serve(handler: (request: IncomingMessage, response: ServerResponse, n: number) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const state = { requests: 0, connections: 0 };
  const server: Server = createServer((request, response) => {
    state.requests += 1;
    handler(request, response, state.requests);
  });
  server.on('connection', (socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const handle: TestServer = {
    url: `http://127.0.0.1:${address.port}/health`,
    get requests() { return state.requests; },
    get connections() { return state.connections; },
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
  servers.push(handle);
  return handle;
}

const reply = (status: number, body: string) => (_request: IncomingMessage, response: ServerResponse) => {
  response.writeHead(status, { 'content-type': 'text/plain' });
  response.end(body);
};

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

describe('checkOnce', () => {
  it('passes on the expected status', async () => {
    const server = await serve(reply(200, 'ok'));
    const result = await checkOnce(server.url, { timeoutMs: 1_000, expectStatus: 200 });
    expect(result).toMatchObject({ ok: true, status: 200 });
    expect(result.error).toBeUndefined();
    expect(result.ms).toBeGreaterThanOrEqual(0);
    expect(server.requests).toBe(1);
  });

  it('fails on another status, saying which', async () => {
    const server = await serve(reply(503, 'starting'));
    expect(await checkOnce(server.url, { timeoutMs: 1_000, expectStatus: 200 }))
      .toMatchObject({ ok: false, status: 503, error: 'expected status 200, got 503' });
    // Any expected status works, not only 200.
    expect(await checkOnce(server.url, { timeoutMs: 1_000, expectStatus: 503 })).toMatchObject({ ok: true, status: 503 });
  });

  it('checks the body when asked', async () => {
    const server = await serve(reply(200, '{"status":"degraded"}'));
    expect(await checkOnce(server.url, { timeoutMs: 1_000, expectStatus: 200, bodyContains: '"status":"ok"' }))
      .toMatchObject({ ok: false, status: 200, error: 'body does not contain "\\"status\\":\\"ok\\""' });
    expect(await checkOnce(server.url, { timeoutMs: 1_000, expectStatus: 200, bodyContains: 'degraded' }))
      .toMatchObject({ ok: true });
  });

  it('times out on a server that never answers, within the deadline', async () => {
    const server = await serve(() => { /* hold the request open */ });
    const started = performance.now();
    const result = await checkOnce(server.url, { timeoutMs: 300, expectStatus: 200 });
    const elapsed = performance.now() - started;
    expect(result.ok).toBe(false);
    expect(result.status).toBeUndefined();
    expect(result.error).toBe('timed out after 300 ms');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3_000);
  });

  it('times out on a body that never ends', async () => {
    const server = await serve((_request, response) => {
      response.writeHead(200);
      response.write('partial');
    });
    const result = await checkOnce(server.url, { timeoutMs: 300, expectStatus: 200, bodyContains: 'ok' });
    expect(result).toMatchObject({ ok: false, error: 'timed out after 300 ms' });
  });

  it('reports a refused connection without throwing', async () => {
    const port = await freePort();
    const result = await checkOnce(`http://127.0.0.1:${port}/health`, { timeoutMs: 1_000, expectStatus: 200 });
    expect(result.ok).toBe(false);
    expect(result.error).toContain('ECONNREFUSED');
  });

  it('reports unusable URLs as results too', async () => {
    expect(await checkOnce('not a url', { timeoutMs: 100, expectStatus: 200 })).toMatchObject({ ok: false, error: 'invalid URL "not a url"' });
    expect((await checkOnce('ftp://127.0.0.1/', { timeoutMs: 100, expectStatus: 200 })).error).toContain('only http:// and https://');
  });
});

describe('waitHealthy', () => {
  it('succeeds on the attempt where the server becomes healthy, on a new connection each time', async () => {
    const server = await serve((request, response, n) => reply(n <= 3 ? 503 : 200, n <= 3 ? 'booting' : 'ok')(request, response));
    const attempts: Array<[number, CheckResult]> = [];
    const result = await waitHealthy(server.url, {
      timeoutMs: 1_000, intervalMs: 10, retries: 10, expectStatus: 200, bodyContains: 'ok',
      onAttempt: (attempt, check) => attempts.push([attempt, check]),
    });
    expect(result).toMatchObject({ ok: true, attempts: 4, last: { ok: true, status: 200 } });
    expect(attempts.map(([n, check]) => [n, check.ok, check.status])).toEqual([
      [1, false, 503], [2, false, 503], [3, false, 503], [4, true, 200],
    ]);
    expect(server.requests).toBe(4);
    // No keep-alive: a pooled socket could outlive the process it was talking to.
    expect(server.connections).toBe(4);
  });

  it('gives up after the given number of attempts with the last failure', async () => {
    const server = await serve(reply(500, 'broken'));
    const result = await waitHealthy(server.url, { timeoutMs: 1_000, intervalMs: 5, retries: 3, expectStatus: 200 });
    expect(result).toMatchObject({ ok: false, attempts: 3, last: { ok: false, status: 500, error: 'expected status 200, got 500' } });
    expect(server.requests).toBe(3);
  });

  it('bounds the total time when every attempt times out', async () => {
    const server = await serve(() => { /* never answers */ });
    const started = performance.now();
    const result = await waitHealthy(server.url, { timeoutMs: 100, intervalMs: 10, retries: 3, expectStatus: 200 });
    const elapsed = performance.now() - started;
    expect(result).toMatchObject({ ok: false, attempts: 3, last: { error: 'timed out after 100 ms' } });
    expect(elapsed).toBeGreaterThanOrEqual(300);
    expect(elapsed).toBeLessThan(3_000);
  });

  it('stops early when aborted, without throwing', async () => {
    const server = await serve(reply(503, 'never ready'));
    const controller = new AbortController();
    const started = performance.now();
    const result = await waitHealthy(server.url, {
      timeoutMs: 1_000, intervalMs: 50, retries: 1_000, expectStatus: 200, signal: controller.signal,
      onAttempt: (attempt) => { if (attempt === 2) controller.abort(); },
    });
    expect(result.ok).toBe(false);
    expect(result.attempts).toBe(2);
    expect(result.last.error).toContain('aborted');
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
