import http from 'node:http';
import { createReadStream } from 'node:fs';
import type { Duplex } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ACTOR_HEADER, AGENT_HOST, SHA256_HEADER, type DeploymentStreamLine } from '../contract/api.js';
import { SlipwayError, isErrorBody } from '../contract/errors.js';

/** Opens a fresh byte stream to the agent's HTTP port (an SSH forwardOut channel in practice). */
export type ChannelFactory = () => Promise<Duplex>;

export interface UploadProgress { sent: number; total: number }

/**
 * HTTP client for the agent API. Each request rides a new channel of the one SSH connection,
 * so nothing is exposed on the network and no second TCP connection is made.
 */
export class AgentClient {
  constructor(
    private readonly openChannel: ChannelFactory,
    private readonly token: string,
    private readonly actor: string,
    /**
     * Resolves to the SSH connection's loss if it is lost around now (else null). A cut link can
     * reach the HTTP request as a bare "socket hang up" before the SSH layer reports the loss;
     * the user must then hear about the link, not be told to check the agent.
     */
    private readonly linkLost: () => Promise<SlipwayError | null> = async () => null,
  ) {}

  async get<T>(path: string): Promise<T> {
    return this.json<T>('GET', path);
  }

  /** GET that maps 404 to null. */
  async find<T>(path: string): Promise<T | null> {
    try {
      return await this.json<T>('GET', path);
    } catch (error) {
      if (error instanceof SlipwayError && error.status === 404) return null;
      throw error;
    }
  }

  async delete<T>(path: string): Promise<T> {
    return this.json<T>('DELETE', path);
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const response = await this.send(method, path, {
      ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
    }, async (req) => { req.end(payload); });
    return parseJsonResponse<T>(response, `${method} ${path}`);
  }

  async upload(path: string, file: string, size: number, sha256: string, onProgress: (p: UploadProgress) => void): Promise<unknown> {
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        onProgress({ sent, total: size });
        done(null, chunk);
      },
    });
    const response = await this.send('PUT', path, {
      'content-type': 'application/gzip',
      'content-length': String(size),
      [SHA256_HEADER]: sha256,
    }, (req) => pipeline(createReadStream(file, { highWaterMark: 256 * 1024 }), counter, req));
    return parseJsonResponse(response, `upload to ${path}`);
  }

  /**
   * Sends a request whose answer is NDJSON, calling onLine for each line until the stream ends,
   * or until onLine returns 'stop' (the agent carries on; only this client stops listening).
   */
  async stream(method: string, path: string, body: unknown, onLine: (line: DeploymentStreamLine) => void | 'stop'): Promise<void> {
    const payload = Buffer.from(JSON.stringify(body));
    const response = await this.send(method, path, { 'content-type': 'application/json', 'content-length': String(payload.length) }, async (req) => { req.end(payload); });
    if ((response.statusCode ?? 0) >= 300) {
      await parseJsonResponse(response, `${method} ${path}`);
      return;
    }
    let buffered = '';
    response.setEncoding('utf8');
    for await (const chunk of response as AsyncIterable<string>) {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line && onLine(JSON.parse(line) as DeploymentStreamLine) === 'stop') {
          response.destroy();
          return;
        }
      }
    }
    if (!response.complete) {
      throw new SlipwayError('agent_stream_cut', `the progress stream of ${path} ended early`, {
        hint: 'the rollout goes on on the agent; check it with: deploy status',
      });
    }
  }

  private async send(
    method: string, path: string, headers: Record<string, string>, writeBody: (req: http.ClientRequest) => Promise<unknown>,
  ): Promise<http.IncomingMessage> {
    const channel = await this.openChannel();
    adaptChannel(channel);
    return new Promise((resolve, reject) => {
      const req = http.request({
        method,
        path,
        headers: { ...headers, host: AGENT_HOST, authorization: `Bearer ${this.token}`, [ACTOR_HEADER]: this.actor, connection: 'close' },
        createConnection: () => channel as never,
      });
      req.once('response', resolve);
      req.once('error', (error) => {
        if (error instanceof SlipwayError) return reject(error);
        void this.linkLost().then((lost) => reject(lost ?? new SlipwayError('agent_unreachable',
          `request ${method} ${path} to the agent failed: ${error.message}`,
          { hint: 'check that slipway-agent runs on the host (systemctl status / pm2 ls) and listens on the configured agent.port', cause: error })));
      });
      writeBody(req).catch((error: unknown) => { req.destroy(error as Error); });
    });
  }
}

/** http expects a net.Socket; an SSH channel is a plain Duplex, so give it the socket knobs as no-ops. */
function adaptChannel(channel: Duplex): void {
  const socketLike = channel as Duplex & Record<string, unknown>;
  for (const method of ['setTimeout', 'setNoDelay', 'setKeepAlive', 'ref', 'unref']) {
    if (typeof socketLike[method] !== 'function') socketLike[method] = () => socketLike;
  }
}

async function parseJsonResponse<T>(response: http.IncomingMessage, what: string): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    throw new SlipwayError('agent_bad_response', `${what}: the agent answered HTTP ${response.statusCode} with non-JSON`, {
      hint: 'is agent.port in deploy.config.json the agent\'s API port?',
    });
  }
  const status = response.statusCode ?? 0;
  if (status >= 400) {
    if (isErrorBody(body)) {
      throw new SlipwayError(body.error, body.message, {
        status, ...(body.hint ? { hint: body.hint } : {}), ...(body.details ? { details: body.details } : {}),
      });
    }
    throw new SlipwayError('agent_error', `${what}: the agent answered HTTP ${status}`, { status });
  }
  return body as T;
}
