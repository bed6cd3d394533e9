import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import { tokenMatches } from './auth.js';
import type { StateStore } from './state/store.js';
import { deploymentSummary, releaseList } from './state/views.js';
import { publicUrlOf, type RolloutService, type ProcessManager } from './rollout/rollout.js';
import type { DeploymentFeed } from './rollout/feed.js';
import { ACTOR_HEADER, ACTOR_PATTERN, API_VERSION, RELEASE_REF_PATTERN, SHA256_HEADER, type AppStatus, type DeploymentSummary } from '../contract/api.js';
import { SlipwayError, type ErrorBody } from '../contract/errors.js';
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, SHA256_PATTERN, SLOTS, shortSha, pm2ProcessName, type Slot } from '../contract/names.js';
import { formatAjvErrors } from '../lib/validate.js';
import type { ReleaseManifest } from '../contract/manifest.js';
import type { CleanupResult } from './release/cleanup.js';
import { SlotProbeCache } from './slot-probe.js';
import { statfs } from 'node:fs/promises';
import { auditArgs } from './audit.js';

export interface ReleaseRepository {
  has(app: string, releaseId: string): boolean;
  ingest(input: { app: string; releaseId: string; sha256: string; source: Readable; expectedBytes?: number }): Promise<{ dir: string; manifest: ReleaseManifest; bytes: number }>;
  readManifest(app: string, releaseId: string): Promise<ReleaseManifest>;
}

export interface ServerDeps {
  config: AgentConfig;
  token: string;
  state: StateStore;
  releases: ReleaseRepository;
  rollouts: RolloutService;
  processes: ProcessManager;
  health: { checkOnce(url: string, options: { timeoutMs: number; expectStatus: number }): Promise<{ ok: boolean; status?: number; error?: string; ms: number }> };
  cleanup: (app: string, actor: string) => Promise<CleanupResult>;
  logger: Logger;
  version: string;
}

const appParams = {
  type: 'object', additionalProperties: false, required: ['app'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN } },
} as const;
const releaseParams = {
  type: 'object', additionalProperties: false, required: ['app', 'releaseId'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN } },
} as const;
const slotSchema = { type: 'string', enum: [...SLOTS] } as const;
const lockIdSchema = { type: 'string', pattern: '^[0-9a-f-]{36}$' } as const;
/** Room needed on disk for an upload: the tarball, its unpacked tree, and a margin. */
const DISK_MARGIN_FACTOR = 4;
const DISK_RESERVE_BYTES = 64 * 1024 * 1024;

/** Builds the agent's HTTP API. Routes are thin: a schema and one service call each. */
export function buildServer(deps: ServerDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: 64 * 1024,
    // Bad input is rejected, never "fixed": no coercion, no silent removal of unknown fields.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true, useDefaults: false } },
    disableRequestLogging: false,
  });

  const probes = new SlotProbeCache(deps.processes, deps.health);

  // Release uploads are streamed straight to disk; the store enforces its own size cap.
  app.addContentTypeParser(['application/octet-stream', 'application/gzip'], (_request, payload, done) => done(null, payload));

  // For the audit row: who proved who they are, and whose body is arbitrary (it failed its schema).
  const authenticated = new WeakSet<FastifyRequest>();
  const unvalidated = new WeakSet<FastifyRequest>();

  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/health') return;
    if (!tokenMatches(deps.token, request.headers.authorization)) {
      return reply.code(401).send({
        error: 'unauthorized', message: 'missing or wrong bearer token',
        hint: 'the controller reads the token over SSH from the agent\'s api.tokenFile',
      } satisfies ErrorBody);
    }
    authenticated.add(request);
  });

  app.addHook('onResponse', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD' || request.url === '/health') return;
    deps.state.audit({
      // The actor header is the caller's claim: only worth recording once the token was right.
      caller: authenticated.has(request) ? actorOf(request) : 'unauthenticated',
      action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      args: auditArgs({
        params: request.params, query: request.query,
        body: isPlainBody(request.body) ? request.body : undefined,
        validated: Boolean(request.routeOptions.schema?.body) && !unvalidated.has(request),
      }),
      result: String(reply.statusCode),
    });
  });

  app.setErrorHandler((error: FastifyError | SlipwayError, request, reply) => {
    if (error instanceof SlipwayError) {
      if (error.status >= 500) request.log.error({ err: error }, error.message);
      return reply.code(error.status).send(error.toBody());
    }
    if (error.validation) {
      unvalidated.add(request);
      const details = formatAjvErrors(error.validation as never, error.validationContext);
      return reply.code(400).send({
        error: 'invalid_request', message: `invalid request: ${details.join('; ')}`, details,
        hint: 'fix the fields named above',
      } satisfies ErrorBody);
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: 'body_too_large', message: 'request body is larger than the 64 KiB allowed', hint: 'send a smaller body' });
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send({ error: 'unsupported_media_type', message: error.message, hint: 'send application/json' });
    }
    if (error.statusCode === 400 && (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || error instanceof SyntaxError || /JSON/.test(error.message))) {
      return reply.code(400).send({ error: 'invalid_json', message: `body is not valid JSON: ${error.message}`, hint: 'send a JSON object' });
    }
    if (error.statusCode && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: 'bad_request', message: error.message });
    }
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') {
      // A state write failed (a failed SQLite statement rolls back), so the request was not carried out.
      request.log.error({ err: error }, 'disk full');
      return reply.code(507).send({
        error: 'disk_full', message: `the disk holding the agent's home ${deps.config.home} is full (${error.message}); the request was not carried out`,
        hint: 'free space on that filesystem (old releases: deploy releases cleanup; logs; backups), then run the command again',
      } satisfies ErrorBody);
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.code(500).send({ error: 'internal_error', message: 'the agent hit an internal error', hint: 'see the agent log for details' });
  });

  app.setNotFoundHandler((request, reply) => reply.code(404).send({
    error: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}`, hint: 'check the agent API version',
  }));

  app.get('/health', async () => ({ ok: true, apiVersion: API_VERSION, version: deps.version }));

  app.get('/apps', async () => ({
    apps: Object.keys(deps.config.apps).map((name) => {
      const row = deps.state.app(name)!;
      return { app: name, liveSlot: row.liveSlot, generation: row.generation };
    }),
  }));

  app.get('/apps/:app', { schema: { params: appParams } }, async (request) => {
    const { app: name } = request.params as { app: string };
    return appStatus(deps, probes, requireApp(deps, name));
  });

  app.get('/apps/:app/releases/:releaseId', { schema: { params: releaseParams } }, async (request) => {
    const { app: name, releaseId } = request.params as { app: string; releaseId: string };
    requireApp(deps, name);
    const row = deps.state.release(name, releaseId);
    if (!row || !deps.releases.has(name, releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${name} is not on this host`, { status: 404, hint: 'upload it' });
    }
    return { releaseId, state: row.state, bytes: row.bytes, sha256: row.sha256, createdAt: row.createdAt, manifest: row.manifest };
  });

  app.put('/apps/:app/releases/:releaseId', {
    schema: {
      params: releaseParams,
      headers: {
        type: 'object',
        required: [SHA256_HEADER, 'content-length'],
        properties: { [SHA256_HEADER]: { type: 'string', pattern: SHA256_PATTERN }, 'content-length': { type: 'string', pattern: '^[0-9]{1,15}$' } },
      },
    },
  }, async (request, reply) => {
    const { app: name, releaseId } = request.params as { app: string; releaseId: string };
    requireApp(deps, name);
    const sha256 = request.headers[SHA256_HEADER] as string;
    if (deps.state.release(name, releaseId) && deps.releases.has(name, releaseId)) {
      throw new SlipwayError('release_exists', `release ${shortSha(releaseId)} of ${name} is already on this host`, { status: 409, hint: 'nothing to upload' });
    }
    const declared = Number(request.headers['content-length']);
    const fsStats = await statfs(deps.config.home);
    const free = fsStats.bavail * fsStats.bsize;
    const needed = declared * DISK_MARGIN_FACTOR + DISK_RESERVE_BYTES;
    if (free < needed) {
      reply.header('connection', 'close');
      throw new SlipwayError('disk_space_low', `not enough free disk for release ${shortSha(releaseId)} of ${name}: ${Math.round(free / 1e6)} MB free under ${deps.config.home}, ${Math.round(needed / 1e6)} MB needed (${DISK_MARGIN_FACTOR}× the ${Math.round(declared / 1e6)} MB tarball + reserve)`, {
        status: 507, hint: 'free space (old releases: deploy releases cleanup) or enlarge the disk',
      });
    }
    const source = request.body as Readable | undefined;
    if (!source || typeof (source as Readable).pipe !== 'function') {
      throw new SlipwayError('upload_missing', 'upload body must be sent as application/gzip', { status: 415, hint: 'send the tarball bytes' });
    }
    let ingested;
    try {
      ingested = await deps.releases.ingest({ app: name, releaseId, sha256, source, expectedBytes: Number(request.headers['content-length']) });
    } catch (error) {
      // The store stopped reading; without this Node would quietly drain the rest of a refused upload.
      reply.header('connection', 'close');
      throw error;
    }
    deps.state.recordRelease({ app: name, releaseId, sha256, bytes: ingested.bytes, manifest: ingested.manifest });
    request.log.info({ app: name, releaseId, bytes: ingested.bytes }, 'release stored');
    return reply.code(201).send({ releaseId, bytes: ingested.bytes, dir: ingested.dir });
  });

  app.post('/apps/:app/deployments', {
    schema: {
      params: appParams,
      body: {
        type: 'object', additionalProperties: false, required: ['releaseId'],
        properties: { releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN }, slot: slotSchema, lockId: lockIdSchema },
      },
    },
  }, async (request, reply) => {
    const { app: name } = request.params as { app: string };
    const body = request.body as { releaseId: string; slot?: Slot; lockId?: string };
    const feed = deps.rollouts.startDeploy({
      app: name, releaseId: body.releaseId, actor: actorOf(request),
      ...(body.slot ? { slot: body.slot } : {}), ...(body.lockId ? { lockId: body.lockId } : {}),
    });
    return streamFeed(reply, feed);
  });

  app.post('/apps/:app/switch', {
    schema: {
      params: appParams,
      body: { type: 'object', additionalProperties: false, required: ['slot'], properties: { slot: slotSchema } },
    },
  }, async (request, reply) => {
    const { app: name } = request.params as { app: string };
    const { slot } = request.body as { slot: Slot };
    const feed = deps.rollouts.startSwitch({ app: name, slot, actor: actorOf(request) });
    return streamFeed(reply, feed);
  });

  app.get('/apps/:app/deployments', {
    schema: {
      params: appParams,
      querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^[0-9]{1,4}$' } } },
    },
  }, async (request) => {
    const { app: name } = request.params as { app: string };
    requireApp(deps, name);
    const limit = Number((request.query as { limit?: string }).limit ?? 50);
    return {
      deployments: deps.state.deployments(name, limit).map((d) => ({
        ...deploymentSummary(d),
        stepDurationsMs: Object.fromEntries(deps.state.events(d.id)
          .filter((e) => e.elapsedMs !== null && (e.status === 'ok' || e.status === 'failed'))
          .map((e) => [e.step, e.elapsedMs])),
      })),
    };
  });

  app.get('/apps/:app/deployments/:id', {
    schema: {
      params: {
        type: 'object', additionalProperties: false, required: ['app', 'id'],
        properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, id: { type: 'string', pattern: '^[0-9]{1,12}$' } },
      },
    },
  }, async (request) => {
    const { app: name, id } = request.params as { app: string; id: string };
    requireApp(deps, name);
    const row = deps.state.deployment(Number(id));
    if (!row || row.app !== name) throw new SlipwayError('deployment_not_found', `no deployment ${id} of ${name}`, { status: 404 });
    return {
      ...deploymentSummary(row),
      events: deps.state.events(row.id).map(({ deploymentId, id: _id, ...rest }) => ({ deploymentId, ...rest })),
    } satisfies DeploymentSummary;
  });

  app.get('/apps/:app/releases', { schema: { params: appParams } }, async (request) => {
    const { app: name } = request.params as { app: string };
    requireApp(deps, name);
    return { releases: releaseList(deps.state, name) };
  });

  app.post('/apps/:app/releases/cleanup', { schema: { params: appParams } }, async (request) => {
    const { app: name } = request.params as { app: string };
    requireApp(deps, name);
    return deps.cleanup(name, actorOf(request));
  });

  app.post('/apps/:app/rollback', {
    schema: {
      params: appParams,
      body: {
        type: 'object', additionalProperties: false,
        properties: {
          to: { type: 'string', pattern: RELEASE_REF_PATTERN },
          force: { type: 'boolean' },
          reason: { type: 'string', maxLength: 500, pattern: '^[^\\u0000-\\u001f]*$' },
        },
      },
    },
  }, async (request, reply) => {
    const { app: name } = request.params as { app: string };
    const body = (request.body ?? {}) as { to?: string; force?: boolean; reason?: string };
    const feed = deps.rollouts.startRollback({
      app: name, force: body.force ?? false, actor: actorOf(request),
      ...(body.to ? { to: body.to } : {}), ...(body.reason ? { reason: body.reason } : {}),
    });
    return streamFeed(reply, feed);
  });

  app.get('/apps/:app/lock', { schema: { params: appParams } }, async (request) => {
    const { app: name } = request.params as { app: string };
    return { lock: deps.rollouts.lockStatus(name) };
  });

  app.post('/apps/:app/lock', {
    schema: {
      params: appParams,
      body: { type: 'object', additionalProperties: false, required: ['releaseId'], properties: { releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN } } },
    },
  }, async (request, reply) => {
    const { app: name } = request.params as { app: string };
    const { releaseId } = request.body as { releaseId: string };
    return reply.code(201).send({ lock: deps.rollouts.reserveLock({ app: name, releaseId, actor: actorOf(request) }) });
  });

  app.delete('/apps/:app/lock', {
    schema: {
      params: appParams,
      querystring: {
        type: 'object', additionalProperties: false,
        properties: { lockId: lockIdSchema, force: { type: 'string', enum: ['true', 'false'] } },
      },
    },
  }, async (request) => {
    const { app: name } = request.params as { app: string };
    const query = request.query as { lockId?: string; force?: string };
    return deps.rollouts.releaseLock({ app: name, force: query.force === 'true', actor: actorOf(request), ...(query.lockId ? { lockId: query.lockId } : {}) });
  });

  return app;
}

function requireApp(deps: ServerDeps, name: string): string {
  if (!deps.config.apps[name]) {
    throw new SlipwayError('app_not_found', `app ${name} is not configured on this host`, {
      status: 404, hint: `configured apps: ${Object.keys(deps.config.apps).join(', ') || 'none'}`,
    });
  }
  // No ensureApp here: startAgent creates every configured app's rows before the server exists, and
  // the config cannot change under a running agent. (It was a write transaction on every GET.)
  return name;
}

function actorOf(request: FastifyRequest): string {
  const raw = request.headers[ACTOR_HEADER];
  return typeof raw === 'string' && new RegExp(ACTOR_PATTERN).test(raw) ? raw : 'unknown@api';
}

function isPlainBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe !== 'function';
}

/** Streams a deployment's progress as NDJSON; the rollout itself never depends on the client staying. */
function streamFeed(reply: FastifyReply, feed: DeploymentFeed): FastifyReply {
  const out = new PassThrough();
  const unsubscribe = feed.subscribe((line) => {
    out.write(`${JSON.stringify(line)}\n`);
    if (line.type === 'result') out.end();
  });
  reply.raw.on('close', unsubscribe);
  reply.header('x-slipway-deployment', String(feed.deploymentId));
  return reply.code(200).type('application/x-ndjson').send(out);
}

async function appStatus(deps: ServerDeps, probes: SlotProbeCache, name: string): Promise<AppStatus> {
  const { state, config } = deps;
  const appConfig = config.apps[name]!;
  const row = state.app(name)!;
  const slotRows = state.slots(name);
  const slots = await Promise.all(slotRows.map(async (s) => {
    const port = appConfig.slots[s.slot].port;
    const { process, health } = await probes.probe({
      processName: pm2ProcessName(name, s.slot), port, healthPath: appConfig.health.path,
      expectStatus: appConfig.health.expectStatus, releaseId: s.releaseId,
    });
    return { slot: s.slot, port, releaseId: s.releaseId, state: s.state, live: row.liveSlot === s.slot, process, health };
  }));
  const liveReleaseId = row.liveSlot ? slotRows.find((s) => s.slot === row.liveSlot)?.releaseId ?? null : null;
  return {
    app: name,
    liveSlot: row.liveSlot,
    liveReleaseId,
    generation: row.generation,
    publicUrl: publicUrlOf(config, name),
    slots,
    releases: state.releases(name).map((r) => ({
      releaseId: r.releaseId, state: r.state, bytes: r.bytes, createdAt: r.createdAt, manifest: r.manifest,
      slots: slotRows.filter((s) => s.releaseId === r.releaseId).map((s) => s.slot),
    })),
  };
}
