import http from 'node:http';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ACTOR_HEADER, AGENT_HOST, SHA256_HEADER, type DeploymentStreamLine } from '../contract/api.js';
import { SlipwayError, errorMessage, isErrorBody, isErrorCode } from '../contract/errors.js';
import { DEFAULT_UPLOAD_STALL_TIMEOUT_MS } from './config.js';
import { formatBytes } from './output.js';
import { StallWatch } from './stall-watch.js';

/** Opens a fresh byte stream to the agent's HTTP port (an SSH forwardOut channel in practice). */
export type ChannelFactory = () => Promise<Duplex>;

/** One JSON request on a channel opened ahead of it (AgentClient.standby). */
export interface StandbyRequest {
  json<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** Closes the channel if it was not used. */
  close(): void;
}

/** `stalledMs` is how long the agent has accepted no bytes (0 while they flow). */
export interface UploadProgress { sent: number; total: number; stalledMs: number }

export interface AgentClientOptions {
  /** `user@host:port` of the SSH link, for messages. */
  hostLabel?: string;
  /** An upload the agent accepts no bytes of for this long is abandoned (host.uploadStallTimeoutMs). */
  uploadStallTimeoutMs?: number;
}

/** How often a running upload checks for a stall and reports it. */
const STALL_TICK_MS = 1_000;
/**
 * After an upload stalled, how long a later request (the lock release on the way out) waits for an
 * answer: the agent may have stopped for good, and the user has already waited the stall timeout.
 */
const ANSWER_AFTER_STALL_MS = 5_000;

/** The words of a stalled transfer's error, by direction (both share host.uploadStallTimeoutMs). */
const STALL_WORDS = {
  upload: {
    code: 'upload_stalled', transfer: 'upload to', agentDid: 'accepted', moved: 'sent', stopped: 'reading', host: 'the host',
    again: 'push again; a partial upload is never used as a release',
  },
  download: {
    code: 'download_stalled', transfer: 'download from', agentDid: 'sent', moved: 'received', stopped: 'sending', host: 'that host',
    again: 'promote again; a partial download is removed, never used',
  },
} as const;

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
    private readonly options: AgentClientOptions = {},
  ) {}

  /** Set once an upload stalled: the agent was seen not reading, so later requests wait for it only briefly. */
  private stalled = false;

  private get hostLabel(): string {
    return this.options.hostLabel ?? 'the host';
  }

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

  async json<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.jsonOn<T>(null, method, path, body, headers);
  }

  /**
   * A channel opened now for one JSON request sent later (a fleet abort): the request then goes
   * out at once instead of waiting for a channel to open through sshd first. A request that
   * fails on it (the channel closed meanwhile, e.g. the agent restarted) is sent once more on a
   * fresh channel, so it must be safe to repeat. `close` drops the channel unused.
   */
  standby(): StandbyRequest {
    let state: 'waiting' | 'used' | 'closed' = 'waiting';
    let opened: Duplex | null = null;
    const opening = this.openChannel().then((channel) => {
      if (state === 'closed') {
        channel.destroy();
        return null;
      }
      opened = channel;
      return channel;
    }, () => null);
    return {
      json: async <T>(method: string, path: string, body?: unknown): Promise<T> => {
        if (state !== 'waiting') return this.json<T>(method, path, body);
        state = 'used';
        const channel = await opening;
        if (!channel || channel.destroyed || !channel.writable) return this.json<T>(method, path, body);
        try {
          return await this.jsonOn<T>(channel, method, path, body);
        } catch {
          return this.json<T>(method, path, body);
        }
      },
      close: () => {
        if (state !== 'waiting') return;
        state = 'closed';
        opened?.destroy();
      },
    };
  }

  private async jsonOn<T>(channel: Duplex | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const response = await this.send(method, path, {
      ...headers,
      ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
    }, async (req) => { req.end(payload); }, channel);
    return parseJsonResponse<T>(response, `${method} ${path}`);
  }

  /**
   * PUTs a file, reporting progress. A stall watchdog ends the upload when the agent accepts no
   * bytes for uploadStallTimeoutMs: SSH keepalives cannot tell, since sshd answers them while the
   * agent behind it is stopped or stuck on its disk.
   */
  async upload(path: string, file: string, size: number, sha256: string, onProgress: (p: UploadProgress) => void, headers: Record<string, string> = {}): Promise<unknown> {
    const watch = new StallWatch(this.options.uploadStallTimeoutMs ?? DEFAULT_UPLOAD_STALL_TIMEOUT_MS, Date.now());
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        watch.progress(sent, Date.now());
        onProgress({ sent, total: size, stalledMs: 0 });
        done(null, chunk);
      },
    });
    const response = await this.send('PUT', path, {
      'content-type': 'application/gzip',
      'content-length': String(size),
      [SHA256_HEADER]: sha256,
      ...headers,
    }, (req, abort) => {
      const tick = setInterval(() => {
        const now = Date.now();
        const stalledMs = watch.stalledMs(now);
        if (stalledMs >= STALL_TICK_MS) onProgress({ sent, total: size, stalledMs });
        if (watch.expired(now)) {
          stop();
          this.stalled = true;
          abort(this.stallError('upload', watch.limitMs, sent, size));
        }
      }, STALL_TICK_MS);
      // Once the body is handed over (or the agent answered early), the agent is unpacking, not reading.
      const stop = () => clearInterval(tick);
      req.once('finish', stop);
      req.once('response', stop);
      return pipeline(createReadStream(file, { highWaterMark: 256 * 1024 }), counter, req).finally(stop);
    });
    return parseJsonResponse(response, `upload to ${path}`);
  }

  /**
   * GETs a release's kept tarball into `file` (created 0600), hashing it on the way: the bytes
   * must be the length announced and hash to `expectedSha256` (what the source agent recorded
   * when it verified the upload), else the file is removed and artifact_mismatch thrown. A stall
   * watchdog (the upload's limit, uploadStallTimeoutMs) ends a download the agent sends no bytes
   * of for that long: stopped or stuck on its disk, it keeps the link open and sshd answers keepalives.
   */
  async download(path: string, file: string, expectedSha256: string): Promise<{ bytes: number; sha256: string }> {
    const response = await this.send('GET', path, {}, async (req) => { req.end(); });
    if ((response.statusCode ?? 0) >= 300) {
      await parseJsonResponse(response, `GET ${path}`);
      throw new SlipwayError('agent_error', `GET ${path}: the agent answered HTTP ${response.statusCode}`, { status: response.statusCode ?? 500 });
    }
    const declared = Number(response.headers['content-length']);
    const hash = createHash('sha256');
    let bytes = 0;
    const watch = new StallWatch(this.options.uploadStallTimeoutMs ?? DEFAULT_UPLOAD_STALL_TIMEOUT_MS, Date.now());
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        watch.progress(bytes, Date.now());
        done(null, chunk);
      },
    });
    const tick = setInterval(() => {
      if (!watch.expired(Date.now())) return;
      clearInterval(tick);
      this.stalled = true;
      // The pipeline rejects with this error; the catch below removes the partial file.
      response.destroy(this.stallError('download', watch.limitMs, bytes, declared));
    }, STALL_TICK_MS);
    try {
      await pipeline(response, tap, createWriteStream(file, { mode: 0o600 })).finally(() => clearInterval(tick));
      const sha256 = hash.digest('hex');
      if (bytes !== declared || sha256 !== expectedSha256) {
        throw new SlipwayError('artifact_mismatch', `the tarball fetched from ${this.hostLabel} is not the one it verified (${bytes} bytes, sha256 ${sha256.slice(0, 16)}…; expected ${expectedSha256.slice(0, 16)}…)`, {
          hint: 'its kept copy may be damaged (a crash before it reached the disk): push the release again there, then promote',
          details: [`expected sha256: ${expectedSha256}`, `got: ${sha256}`, `bytes: ${bytes} of ${declared}`],
        });
      }
      return { bytes, sha256 };
    } catch (error) {
      await rm(file, { force: true });
      throw error;
    }
  }

  private stallError(way: keyof typeof STALL_WORDS, limitMs: number, moved: number, total: number): SlipwayError {
    const w = STALL_WORDS[way];
    return new SlipwayError(w.code,
      `${w.transfer} ${this.hostLabel} stalled: the agent ${w.agentDid} no bytes for ${limitMs / 1000} s `
        + `(${formatBytes(moved)} of ${formatBytes(total)} ${w.moved}; limit: host.uploadStallTimeoutMs in deploy.config.json)`, {
        hint: `the SSH link answered but the agent stopped ${w.stopped}: check on ${w.host} that slipway-agent runs (pm2 ls, its log) `
          + `and that its disk is not stuck (dmesg, df), then ${w.again}. `
          + 'On a slow host raise host.uploadStallTimeoutMs',
      });
  }

  /**
   * GET of an endless NDJSON answer (deploy logs -f): onLine for each line, until the agent ends
   * the stream, `stop` resolves (the stream is closed, which ends the follow on the agent), or the
   * link drops (agent_unreachable / ssh_connection_lost).
   */
  async follow<T>(path: string, onLine: (line: T) => void, stop: Promise<void>): Promise<void> {
    const response = await this.send('GET', path, {}, async (req) => { req.end(); });
    if ((response.statusCode ?? 0) >= 300) {
      await parseJsonResponse(response, `GET ${path}`);
      return;
    }
    let stopped = false;
    void stop.then(() => { stopped = true; response.destroy(); });
    try {
      await readNdjson(response, (line) => { onLine(line as T); return undefined; });
    } catch (error) {
      if (stopped) return;
      throw (await this.linkLost()) ?? new SlipwayError('agent_unreachable', `the log stream ${path} from ${this.hostLabel} broke: ${errorMessage(error)}`, {
        hint: 'run the command again; check the SSH link and that slipway-agent runs on the host', cause: error,
      });
    }
  }

  /**
   * Sends a request whose answer is NDJSON, calling onLine for each line until the stream ends,
   * or until onLine returns 'stop' (the agent carries on; only this client stops listening).
   */
  async stream(method: string, path: string, body: unknown, onLine: (line: DeploymentStreamLine) => void | 'stop'): Promise<void> {
    const payload = Buffer.from(JSON.stringify(body));
    let requestSent = false;
    let refused = false;
    try {
      const response = await this.send(method, path, { 'content-type': 'application/json', 'content-length': String(payload.length) }, async (req) => {
        requestSent = true;
        req.end(payload);
      });
      if ((response.statusCode ?? 0) >= 300) {
        refused = true;
        await parseJsonResponse(response, `${method} ${path}`);
        return;
      }
      if (await readNdjson(response, (line) => onLine(line as DeploymentStreamLine)) === 'stopped') return;
      if (!response.complete) {
        throw new SlipwayError('agent_stream_cut', `the progress stream of ${path} from ${this.hostLabel} ended early`, {
          hint: 'the rollout goes on on the host: it finishes, or swaps back on its own; see how it ended with: deploy status, deploy history',
        });
      }
    } catch (error) {
      // Once the request may have reached the agent, a lost link says nothing about the rollout:
      // the agent carries on without a listener, so the outcome is unknown here, not "nothing switched".
      if (!requestSent || refused || (error instanceof SlipwayError && error.kind !== 'unreachable')) throw error;
      const cause = error instanceof SlipwayError ? error : (await this.linkLost()) ?? error;
      throw new SlipwayError('rollout_link_lost',
        `lost the link to the agent on ${this.hostLabel} while it ran ${method} ${path}: ${errorMessage(cause)}`, {
          hint: 'the rollout goes on on the host: it finishes, or swaps back on its own; see how it ended with: deploy status, deploy history',
          cause,
        });
    }
  }

  /**
   * One request on a fresh channel. `abort` settles it with the given error at once: an SSH
   * channel's destroy() only ends it (ssh2 drops the error), and sshd does not confirm the close
   * while it still holds bytes for a process that stopped reading, so no event would follow.
   */
  private async send(
    method: string, path: string, headers: Record<string, string>,
    writeBody: (req: http.ClientRequest, abort: (error: SlipwayError) => void) => Promise<unknown>,
    opened: Duplex | null = null,
  ): Promise<http.IncomingMessage> {
    const channel = opened ?? await this.openChannel();
    adaptChannel(channel);
    return new Promise((resolve, reject) => {
      let settled = false;
      let answerTimer: NodeJS.Timeout | undefined;
      const settle = (done: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(answerTimer);
        done();
      };
      const req = http.request({
        method,
        path,
        headers: { ...headers, host: AGENT_HOST, authorization: `Bearer ${this.token}`, [ACTOR_HEADER]: this.actor, connection: 'close' },
        createConnection: () => channel as never,
      });
      const abort = (error: SlipwayError) => {
        settle(() => reject(error));
        req.destroy(error);
      };
      if (this.stalled) {
        answerTimer = setTimeout(() => abort(new SlipwayError('agent_unreachable',
          `request ${method} ${path} to the agent on ${this.hostLabel} got no answer within ${ANSWER_AFTER_STALL_MS / 1000} s, after the agent had stopped reading an upload`, {
            hint: 'check on the host that slipway-agent runs and is not stuck (pm2 ls, its log, dmesg)',
          })), ANSWER_AFTER_STALL_MS);
      }
      req.once('response', (response) => settle(() => resolve(response)));
      req.on('error', (error) => {
        if (settled) return;
        if (error instanceof SlipwayError) return settle(() => reject(error));
        void this.linkLost().then((lost) => settle(() => reject(lost ?? new SlipwayError('agent_unreachable',
          `request ${method} ${path} to the agent failed: ${error.message}`,
          { hint: 'check that slipway-agent runs on the host (systemctl status / pm2 ls) and listens on the configured agent.port', cause: error }))));
      });
      writeBody(req, abort).catch((error: unknown) => { req.destroy(error as Error); });
    });
  }
}

/** Calls onLine with each JSON line of an NDJSON answer until it ends, or onLine says 'stop' (the answer is then destroyed). */
async function readNdjson(response: http.IncomingMessage, onLine: (line: unknown) => void | 'stop'): Promise<'ended' | 'stopped'> {
  let buffered = '';
  response.setEncoding('utf8');
  for await (const chunk of response as AsyncIterable<string>) {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line && onLine(JSON.parse(line)) === 'stop') {
        response.destroy();
        return 'stopped';
      }
    }
  }
  return 'ended';
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
      // A code this controller does not know (an agent of another version) becomes the generic
      // agent_error, its name kept in the message: an error status means the request was not carried out.
      const code = isErrorCode(body.error) ? body.error : null;
      throw new SlipwayError(code ?? 'agent_error', code ? body.message : `${what}: ${body.error}: ${body.message}`, {
        status, ...(body.hint ? { hint: body.hint } : {}), ...(body.details ? { details: body.details } : {}),
      });
    }
    throw new SlipwayError('agent_error', `${what}: the agent answered HTTP ${status}`, { status });
  }
  return body as T;
}
