/**
 * GET /apps/:app/logs/follow with a client that stops reading (a Ctrl-Z'd `deploy logs -f` on a
 * chatty app): the agent must not buffer without limit. Past MAX_UNREAD_BYTES unread it stops
 * the follow and ends the answer with a last `fell_behind` line, which the client reads when it
 * resumes. The route runs for real on a Fastify server; the client is a real HTTP client that
 * pauses; only the log reader is a stand-in that writes as fast as it is let.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogFollowLine } from '../../contract/api.js';
import { logRoutes, type LogReader } from '../../agent/routes/logs.js';
import { MAX_UNREAD_BYTES } from '../../agent/routes/ndjson.js';
import type { StateStore } from '../../agent/state/store.js';
import { waitFor } from '../helpers/wait.js';

const TEXT = 'x'.repeat(200);

describe('logs follow: a client that stops reading', () => {
  let server: FastifyInstance | undefined;
  let client: http.IncomingMessage | undefined;
  afterEach(async () => {
    // Leaving ends the follow on the agent, so the server can close.
    client?.destroy();
    await server?.close();
    server = undefined;
  });

  it('is ended with a fell_behind line once too much is unread; the follow stops', async () => {
    let followSignal: AbortSignal | undefined;
    let emitted = 0;
    const logs: LogReader = {
      tail: async () => [],
      async follow(_app, _options, emit, signal) {
        followSignal = signal;
        while (!signal.aborted) {
          for (let i = 0; i < 50; i++) {
            emitted += 1;
            emit({ type: 'line', slot: 'blue', process: 'web', time: null, stream: 'out', text: `${emitted} ${TEXT}` });
          }
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      },
    };
    server = Fastify();
    await server.register(logRoutes, { state: {} as StateStore, requireApp: (app) => app, logs });
    await server.listen({ port: 0, host: '127.0.0.1' });
    const { port } = server.server.address() as AddressInfo;

    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`http://127.0.0.1:${port}/apps/shop/logs/follow?slot=blue`, resolve).once('error', reject);
    });
    client = response;
    expect(response.statusCode).toBe(200);
    // Reads the first chunk, then stops reading (the connection stays open).
    await new Promise((resolve) => response.once('data', resolve));
    response.pause();

    await waitFor(() => followSignal?.aborted === true, { timeoutMs: 10_000, description: 'the agent to stop the follow of a client that stopped reading' });
    // Never more than the bound plus one batch waited in the agent for this client.
    expect(emitted * (TEXT.length + 100)).toBeLessThan(MAX_UNREAD_BYTES * 4);

    let rest = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => { rest += chunk; });
    response.resume();
    await new Promise((resolve) => response.once('end', resolve));
    const last = JSON.parse(rest.trimEnd().split('\n').at(-1)!) as LogFollowLine;
    expect(last).toMatchObject({ type: 'fell_behind' });
    expect((last as { unreadBytes: number }).unreadBytes).toBeGreaterThan(MAX_UNREAD_BYTES);
  }, 30_000);
});
