// The local server of `deploy ui`: the static page (controller/ui/static: HTML, JS and CSS as
// written, no build step) and a narrow API in front of the agent. The browser never talks to the
// agent and never sees its token: each /api route makes the same agent request a CLI command
// makes, through the controller's one SSH session, and passes the answer on.
import { readFileSync, existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { RELEASE_REF_PATTERN, type DeploymentSummary } from '../../contract/api.js';
import { SlipwayError, type ErrorBody } from '../../contract/errors.js';
import { APP_NAME_PATTERN, SLOTS, type Slot } from '../../contract/names.js';
import { formatAjvErrors } from '../../lib/validate.js';
import { CSRF_HEADER, KEY_PARAM, checkRequest, secretMatches, sessionCookie, type PageSecrets } from './guard.js';
import { errorBodyOf, loadOverview, type ActionLine, type UiAgent } from './overview.js';

/** The page's files, served as they are. */
const ASSETS = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
} as const;

/**
 * Where the page's files are: beside this module in the CLI package (scripts/cli-package.ts
 * copies them), or in the source tree when this module runs from the repository's dist/.
 */
export function staticDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'static'), path.resolve(here, '..', '..', '..', 'controller', 'ui', 'static')];
  const found = candidates.find((dir) => existsSync(path.join(dir, 'index.html')));
  if (!found) throw new Error(`the page's files are missing (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * No external asset, no inline script or style, no framing: the page's own files only. With
 * `connect-src 'self'` even injected markup could not send data elsewhere.
 */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
} as const;

const reasonSchema = { type: 'string', minLength: 1, maxLength: 500, pattern: '^[^\\u0000-\\u001f]*[^\\s\\u0000-\\u001f][^\\u0000-\\u001f]*$' } as const;
const appParams = { type: 'object', additionalProperties: false, required: ['app'], properties: { app: { type: 'string', pattern: APP_NAME_PATTERN } } } as const;
const deploymentParams = {
  type: 'object', additionalProperties: false, required: ['app', 'id'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, id: { type: 'string', pattern: '^[1-9][0-9]{0,11}$' } },
} as const;
const overviewQuery = {
  type: 'object', additionalProperties: false,
  properties: {
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    since: { type: 'string', pattern: '^[0-9]{1,4}[hdw]$', default: '30d' },
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 },
  },
} as const;
const switchBody = { type: 'object', additionalProperties: false, required: ['slot', 'reason'], properties: { slot: { type: 'string', enum: [...SLOTS] }, reason: reasonSchema } } as const;
const rollbackBody = {
  type: 'object', additionalProperties: false, required: ['reason'],
  properties: { reason: reasonSchema, to: { type: 'string', pattern: RELEASE_REF_PATTERN }, force: { type: 'boolean', default: false } },
} as const;

export interface UiServerOptions {
  agent: UiAgent;
  /** The app deploy ui was started for (the box app of the target). */
  app: string;
  env: string | null;
  /** user@host:port of the SSH link, shown on the page. */
  hostLabel: string;
  secrets: PageSecrets;
  /** Defaults to staticDir(). */
  assetsDir?: string;
}

/** The page's refusals and failures in Slipway's error shape; a bug answers without details. */
function errorReply(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof SlipwayError) {
    // The agent's own refusals keep their status; a link or agent failure is a bad gateway here.
    const status = error.status >= 400 && error.status < 500 ? error.status : error.kind === 'unreachable' || error.kind === 'in_doubt' ? 502 : error.status;
    return { status, body: error.toBody() };
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const details = formatAjvErrors(fastifyError.validation as never, fastifyError.validationContext);
    return { status: 400, body: { error: 'invalid_request', message: `invalid request: ${details.join('; ')}`, details, hint: 'fix the fields named above' } };
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return { status: fastifyError.statusCode, body: { error: 'bad_request', message: `the request was refused: ${fastifyError.message}` } };
  }
  return { status: 500, body: errorBodyOf(error) };
}

/**
 * Starts a rollout through the agent and relays its NDJSON lines as they come. A refusal (the
 * agent answers an error before any line) becomes this request's error answer; a stream that
 * breaks after it began ends with an error line, the rollout going on on the host.
 */
async function relayRollout(reply: FastifyReply, start: (onLine: (line: ActionLine) => void) => Promise<void>): Promise<FastifyReply> {
  const out = new PassThrough();
  // A page closed mid-rollout destroys the stream; the rollout goes on and its lines go nowhere.
  out.on('error', () => undefined);
  const send = (text: string, end = false) => {
    if (out.destroyed || out.writableEnded) return;
    if (end) out.end(text);
    else out.write(text);
  };
  let begun!: () => void;
  const firstLine = new Promise<void>((resolve) => { begun = resolve; });
  const done = start((line) => {
    send(`${JSON.stringify(line)}\n`);
    begun();
  });
  const first = await Promise.race([firstLine.then(() => 'line' as const), done.then(() => 'ended' as const)]);
  void done.then(() => send('', true), (error: unknown) => send(`${JSON.stringify({ type: 'error', error: errorBodyOf(error) } satisfies ActionLine)}\n`, true));
  if (first === 'ended') await done;
  return reply.type('application/x-ndjson; charset=utf-8').send(out);
}

export function buildUiServer(options: UiServerOptions): FastifyInstance {
  const { agent, secrets } = options;
  const dir = options.assetsDir ?? staticDir();
  const assets = new Map(Object.entries(ASSETS).map(([url, asset]) => [url, { type: asset.type, body: readFileSync(path.join(dir, asset.file)) }]));
  // forceCloseConnections: Ctrl-C ends the page at once; a rollout it started goes on on the host.
  const app = Fastify({ logger: false, bodyLimit: 16 * 1024, forceCloseConnections: true });

  app.addHook('onRequest', async (request, reply) => {
    void reply.headers(SECURITY_HEADERS);
    const csrf = request.headers[CSRF_HEADER];
    checkRequest({
      method: request.method, path: request.url.split('?')[0]!, host: request.headers.host, origin: request.headers.origin,
      cookie: request.headers.cookie, csrf: typeof csrf === 'string' ? csrf : undefined, port: request.socket.localPort ?? 0,
    }, secrets);
  });
  app.setErrorHandler((error, _request, reply) => {
    const answer = errorReply(error);
    return reply.code(answer.status).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'not_found', message: `no page ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}` } satisfies ErrorBody));

  const requireTarget = (requested: string) => {
    if (requested !== options.app) {
      throw new SlipwayError('ui_app_not_targeted', `this page moves traffic of ${options.app} only; ${requested} is shown, not changed, here`, {
        status: 403, hint: `run deploy ui from ${requested}'s repository (or with its --env) to act on it`,
      });
    }
  };

  // The printed URL opens the session: its key becomes an HttpOnly cookie and leaves the address bar.
  app.get<{ Querystring: Record<string, string | string[]> }>('/', async (request, reply) => {
    const key = request.query[KEY_PARAM];
    if (key !== undefined) {
      if (typeof key !== 'string' || !secretMatches(secrets.sessionKey, key)) {
        throw new SlipwayError('ui_session_required', 'this key does not open this page: it belongs to another run of deploy ui', {
          status: 403, hint: 'open the URL the running deploy ui printed',
        });
      }
      return reply.header('set-cookie', sessionCookie(request.socket.localPort ?? 0, secrets.sessionKey)).redirect('/', 303);
    }
    const page = assets.get('/')!;
    return reply.type(page.type).send(page.body);
  });
  for (const url of ['/app.js', '/app.css']) {
    const asset = assets.get(url)!;
    app.get(url, async (_request, reply) => reply.type(asset.type).send(asset.body));
  }

  app.get('/api/session', async () => ({
    app: options.app, env: options.env, host: options.hostLabel, csrfToken: secrets.csrfToken, csrfHeader: CSRF_HEADER,
  }));

  app.get<{ Querystring: { app?: string; since: string; limit: number } }>('/api/overview', { schema: { querystring: overviewQuery } }, async (request) =>
    loadOverview(agent, { app: request.query.app ?? options.app, target: options.app, env: options.env, since: request.query.since, limit: request.query.limit }));

  app.get<{ Params: { app: string; id: string } }>('/api/apps/:app/deployments/:id', { schema: { params: deploymentParams } }, async (request) =>
    agent.get<DeploymentSummary>(`/apps/${request.params.app}/deployments/${request.params.id}`));

  app.post<{ Params: { app: string }; Body: { slot: Slot; reason: string } }>('/api/apps/:app/switch', { schema: { params: appParams, body: switchBody } }, async (request, reply) => {
    requireTarget(request.params.app);
    const { slot, reason } = request.body;
    return relayRollout(reply, (onLine) => agent.stream('POST', `/apps/${options.app}/switch`, { slot, reason, ...(options.env ? { env: options.env } : {}) }, onLine));
  });

  app.post<{ Params: { app: string }; Body: { reason: string; to?: string; force: boolean } }>('/api/apps/:app/rollback', { schema: { params: appParams, body: rollbackBody } }, async (request, reply) => {
    requireTarget(request.params.app);
    const { reason, to, force } = request.body;
    return relayRollout(reply, (onLine) => agent.stream('POST', `/apps/${options.app}/rollback`, { reason, force, ...(to ? { to } : {}), ...(options.env ? { env: options.env } : {}) }, onLine));
  });

  return app;
}
