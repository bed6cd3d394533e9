// Smoke checks: the spec's list of HTTP requests sent through nginx (the app's public listen
// address, like the watch window's public check) right after the switch and in every watch round.
// A failing check fails its round, and enough failing rounds swap traffic back.
import type { AgentConfig } from '../config.js';
import { errorMessage } from '../../contract/errors.js';
import type { AppSpec, SmokeCheck } from '../../contract/spec.js';
import { evaluatePointer, jsonEquals } from './json-pointer.js';
import { publicUrlOf } from './public-address.js';
import type { WatchCheck } from './watch.js';

/** Bytes of a body a failing check shows. */
const SHOWN_BODY_BYTES = 200;

export interface SmokeResponse { status: number; body: string }

export type SmokeRequest = (url: string, options: { method: string; timeoutMs: number; headers: Record<string, string> }) => Promise<SmokeResponse>;

/** Pure: the Host a server name is probed as ("_" → localhost, "*.shop.test" → smoke.shop.test). */
export function probeName(serverName: string): string {
  if (serverName === '_') return 'localhost';
  return serverName.startsWith('*') ? `smoke${serverName.slice(1)}` : serverName;
}

/** Pure: the Host header of a check: its own, or the first server name of the spec's first route. */
export function smokeHost(spec: Pick<AppSpec, 'routes'>, check: Pick<SmokeCheck, 'host'>): string {
  return check.host ?? probeName(spec.routes[0]?.serverNames[0] ?? '_');
}

/** Pure: where a check is sent: the app's public address, on the first route's listen port when it names one. */
export function smokeUrl(publicUrl: string, spec: Pick<AppSpec, 'routes'>, check: Pick<SmokeCheck, 'path'>): string {
  const url = new URL(publicUrl);
  const port = spec.routes[0]?.listenPort;
  // An https:// base is the route's HTTPS twin, on its own port.
  if (port !== undefined && url.protocol === 'http:') url.port = String(port);
  return `${url.origin}${check.path}`;
}

function shown(body: string): string {
  const bytes = Buffer.from(body, 'utf8');
  const head = bytes.subarray(0, SHOWN_BODY_BYTES).toString('utf8');
  return JSON.stringify(bytes.length > SHOWN_BODY_BYTES ? `${head}…` : head);
}

/** Pure: the verdict on one check from what nginx answered (or the error). */
export function judgeSmoke(check: SmokeCheck, answer: SmokeResponse | { error: string }): WatchCheck {
  const name = `smoke "${check.name}"`;
  const fail = (what: string): WatchCheck => ({ name: 'smoke', ok: false, detail: `${name} (${check.method} ${check.path}): ${what}` });
  if ('error' in answer) return fail(`no answer: ${answer.error}`);
  const seen = `HTTP ${answer.status}, body ${shown(answer.body)}`;
  if (answer.status !== check.expectStatus) return fail(`expected HTTP ${check.expectStatus}, saw ${seen}`);
  if (check.bodyContains !== undefined && !answer.body.includes(check.bodyContains)) {
    return fail(`body does not contain ${JSON.stringify(check.bodyContains)}; saw ${seen}`);
  }
  if (check.json) {
    let document: unknown;
    try {
      document = JSON.parse(answer.body);
    } catch {
      return fail(`body is not JSON; saw ${seen}`);
    }
    const found = evaluatePointer(document, check.json.pointer);
    if (!found.found) return fail(`JSON pointer ${JSON.stringify(check.json.pointer)}: ${found.reason}; saw ${seen}`);
    if (!jsonEquals(found.value, check.json.equals)) {
      return fail(`JSON pointer ${JSON.stringify(check.json.pointer)} is ${JSON.stringify(found.value)}, expected ${JSON.stringify(check.json.equals)}; saw ${seen}`);
    }
  }
  return { name: 'smoke', ok: true, detail: `${name} ok` };
}

/** Runs every check of the spec concurrently through nginx; one WatchCheck each. */
export function runSmokeChecks(deps: { config: AgentConfig; request: SmokeRequest; base?: string }, app: string, spec: Pick<AppSpec, 'routes' | 'smoke'>): Promise<WatchCheck[]> {
  // `base`: the app's HTTPS address when it serves TLS (plain HTTP then only redirects).
  const base = deps.base ?? publicUrlOf(deps.config, app);
  return Promise.all(spec.smoke.map((check) => deps.request(smokeUrl(base, spec, check), {
    method: check.method, timeoutMs: check.timeoutMs, headers: { host: smokeHost(spec, check) },
  }).then((answer) => judgeSmoke(check, answer), (error: unknown) => judgeSmoke(check, { error: errorMessage(error) }))));
}
