import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage } from '../contract/errors.js';

export interface HttpResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The first `maxBodyBytes` of the body, as UTF-8. */
  body: string;
}

export interface HttpGetOptions {
  timeoutMs: number;
  headers?: Record<string, string>;
  maxBodyBytes?: number;
  signal?: AbortSignal;
  /** Default GET (smoke checks send others: agent/rollout/smoke.ts). */
  method?: string;
}

/**
 * One GET on a fresh connection (no keep-alive: a pooled socket could stay pinned to an nginx
 * worker running the previous config, or to a process that is going away). The deadline covers
 * connect, headers and body. Rejects on network errors and timeouts; any HTTP status resolves.
 */
export function httpGet(url: string, { timeoutMs, headers = {}, maxBodyBytes = 64 * 1024, signal, method = 'GET' }: HttpGetOptions): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      reject(new Error(`invalid URL ${JSON.stringify(url)}`));
      return;
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      reject(new Error(`only http:// and https:// URLs can be checked, got ${target.protocol}`));
      return;
    }
    if (signal?.aborted) {
      reject(new Error('aborted'));
      return;
    }
    // Over HTTPS the Host header's name is also the SNI name, so nginx picks the block it names.
    // The agent probes its own nginx over loopback to read routing markers: the certificate is
    // checked where it is installed (agent/tls), not by every probe.
    const sni = headers.host?.replace(/:\d+$/, '');
    const request = target.protocol === 'https:'
      ? https.request(target, {
        method, agent: false, headers: { connection: 'close', ...headers }, rejectUnauthorized: false,
        ...(sni && isIP(sni) === 0 ? { servername: sni } : {}),
      })
      : http.request(target, {
        method,
        agent: false,
        headers: { connection: 'close', ...headers },
      });
    const timer = setTimeout(() => request.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => request.destroy(new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    request.on('error', (error) => {
      finish();
      reject(error);
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      response.on('data', (chunk: Buffer) => {
        if (kept < maxBodyBytes) {
          chunks.push(chunk.subarray(0, maxBodyBytes - kept));
          kept += Math.min(chunk.length, maxBodyBytes - kept);
        }
      });
      response.on('error', (error) => {
        finish();
        reject(error);
      });
      response.on('end', () => {
        finish();
        const flat: Record<string, string> = {};
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
        }
        resolve({ status: response.statusCode ?? 0, headers: flat, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    request.end();
  });
}

export interface CheckOptions {
  timeoutMs: number;
  expectStatus: number;
  /** Checked against the first 64 KiB of the body. */
  bodyContains?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface CheckResult {
  ok: boolean;
  status?: number;
  error?: string;
  /** The start of the body of a failed check's answer (about 200 bytes), to show what the app said. */
  bodyStart?: string;
  ms: number;
}

const BODY_START_BYTES = 200;

function bodyStart(body: string): string {
  const bytes = Buffer.from(body, 'utf8');
  return bytes.length <= BODY_START_BYTES ? body : `${bytes.subarray(0, BODY_START_BYTES).toString('utf8')}…`;
}

/** One health check. Never throws for network or HTTP failures: they are results. */
export async function checkOnce(url: string, options: CheckOptions): Promise<CheckResult> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  let response: HttpResponse;
  try {
    response = await httpGet(url, { timeoutMs: options.timeoutMs, headers: options.headers, signal: options.signal });
  } catch (error) {
    return { ok: false, error: errorMessage(error), ms: ms() };
  }
  if (response.status !== options.expectStatus) {
    return { ok: false, status: response.status, error: `expected status ${options.expectStatus}, got ${response.status}`, bodyStart: bodyStart(response.body), ms: ms() };
  }
  if (options.bodyContains !== undefined && !response.body.includes(options.bodyContains)) {
    return { ok: false, status: response.status, error: `body does not contain ${JSON.stringify(options.bodyContains)}`, bodyStart: bodyStart(response.body), ms: ms() };
  }
  return { ok: true, status: response.status, ms: ms() };
}

export interface WaitHealthyOptions extends CheckOptions {
  /** Pause between the end of one attempt and the start of the next. */
  intervalMs: number;
  /** Maximum number of attempts (at least 1). */
  retries: number;
  onAttempt?: (attempt: number, result: CheckResult) => void;
}

export interface WaitHealthyResult {
  ok: boolean;
  attempts: number;
  last: CheckResult;
}

/**
 * Checks until one attempt passes, `retries` attempts have failed, or `signal` aborts. Bounded by
 * retries × (timeoutMs + intervalMs). Never throws for HTTP failures; an abort ends the wait with
 * ok: false and error "aborted".
 */
export async function waitHealthy(url: string, options: WaitHealthyOptions): Promise<WaitHealthyResult> {
  const retries = Math.max(1, Math.floor(options.retries));
  let last: CheckResult = { ok: false, error: 'not checked', ms: 0 };
  let attempts = 0;
  while (attempts < retries) {
    if (options.signal?.aborted) return { ok: false, attempts, last: { ok: false, error: 'aborted', ms: 0 } };
    attempts += 1;
    last = await checkOnce(url, options);
    options.onAttempt?.(attempts, last);
    if (last.ok) return { ok: true, attempts, last };
    if (attempts < retries) {
      try {
        await delay(options.intervalMs, undefined, { signal: options.signal });
      } catch {
        return { ok: false, attempts, last: { ...last, error: `aborted; last attempt: ${last.error}` } };
      }
    }
  }
  return { ok: false, attempts, last };
}
