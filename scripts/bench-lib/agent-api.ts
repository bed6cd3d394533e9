// The bench talks to the agent's loopback API directly (it runs on the host, as root, and can read
// the token file) where the issue asks for API-level figures: the switch endpoint, rollouts under
// load, GET latency. Whole-CLI figures go through the real `deploy` CLI instead.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import type { DeploymentEvent, DeploymentResult, LockInfo } from '../../contract/api.js';

export interface Rollout {
  status: number;
  events: (DeploymentEvent & { receivedAt: number })[];
  result: DeploymentResult | null;
  body: string;
}

export class AgentApi {
  private constructor(readonly port: number, readonly token: string) {}

  static async connect(port: number, tokenFile: string): Promise<AgentApi> {
    return new AgentApi(port, (await readFile(tokenFile, 'utf8')).trim());
  }

  request(method: string, pathname: string, body?: unknown, options: { timeoutMs?: number; auth?: boolean; onLine?: (line: string) => void } = {}): Promise<{ status: number; body: string }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: this.port, method, path: pathname, agent: false,
        headers: {
          connection: 'close',
          ...(options.auth === false ? {} : { authorization: `Bearer ${this.token}` }),
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
        timeout: options.timeoutMs ?? 60_000,
      }, (res) => {
        let text = '';
        let pending = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          if (!options.onLine) return;
          pending += chunk;
          let newline: number;
          while ((newline = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, newline).trim();
            pending = pending.slice(newline + 1);
            if (line) options.onLine(line);
          }
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${pathname}: no answer within ${options.timeoutMs ?? 60_000} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async json<T>(method: string, pathname: string, body?: unknown): Promise<T> {
    const answer = await this.request(method, pathname, body);
    if (answer.status >= 400) throw new Error(`${method} ${pathname} → HTTP ${answer.status}: ${answer.body.slice(0, 400)}`);
    return JSON.parse(answer.body) as T;
  }

  /** Starts a rollout (deploy, switch, rollback) and follows its NDJSON stream to the result. */
  async rollout(pathname: string, body: unknown, timeoutMs = 120_000): Promise<Rollout> {
    const events: Rollout['events'] = [];
    let result: DeploymentResult | null = null;
    const answer = await this.request('POST', pathname, body, {
      timeoutMs,
      onLine: (line) => {
        const parsed = JSON.parse(line) as DeploymentEvent | DeploymentResult;
        if (parsed.type === 'result') result = parsed;
        else events.push({ ...parsed, receivedAt: Date.now() });
      },
    });
    return { status: answer.status, events, result, body: answer.status >= 300 ? answer.body : '' };
  }

  async waitUnlocked(app: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { lock } = await this.json<{ lock: LockInfo | null }>('GET', `/apps/${app}/lock`);
      if (!lock) return;
      if (Date.now() > deadline) throw new Error(`the deploy lock of ${app} is still held after ${timeoutMs} ms: ${JSON.stringify(lock)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** A rollout that did not succeed is a harness failure, never a figure. */
export function requireSucceeded(rollout: Rollout, what: string): DeploymentResult {
  if (rollout.status >= 300 || !rollout.result || rollout.result.outcome !== 'succeeded') {
    throw new Error(`${what} did not succeed: HTTP ${rollout.status} ${rollout.body.slice(0, 300)} ${rollout.result ? `outcome ${rollout.result.outcome}: ${rollout.result.reason ?? ''}` : 'no result'}`);
  }
  return rollout.result;
}
