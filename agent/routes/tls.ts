import type { FastifyPluginAsync } from 'fastify';
import type { TlsCertificateView, TlsRunAnswer, TlsRunRequestBody, TlsRunView, TlsStatus } from '../../contract/tls.js';
import type { TlsService } from '../tls/service.js';
import type { TlsRun } from '../tls/store.js';
import { answers, appParams, noQuery, nullable, type AppParams, type NoQuery, type ObjectSchemaOf } from './schemas.js';

export interface TlsRouteOptions {
  service: TlsService;
  requireApp: (app: string) => void;
  nextRun: () => Date | null;
}

const certificate = {
  type: ['object', 'null'], additionalProperties: false,
  required: ['source', 'fingerprint', 'names', 'notBefore', 'notAfter', 'issuer', 'installedAt'],
  properties: {
    source: { type: 'string' }, fingerprint: { type: 'string' }, names: { type: 'array', items: { type: 'string' } },
    notBefore: { type: 'string' }, notAfter: { type: 'string' }, issuer: { type: 'string' }, installedAt: { type: 'string' },
  },
} as const satisfies ObjectSchemaOf<TlsCertificateView>;

const run = {
  type: 'object', additionalProperties: false,
  required: ['id', 'trigger', 'actor', 'outcome', 'fingerprint', 'notAfter', 'reason', 'durationMs', 'at'],
  properties: {
    id: { type: 'integer' }, trigger: { type: 'string' }, actor: { type: 'string' }, outcome: { type: 'string' },
    fingerprint: nullable('string'), notAfter: nullable('string'), reason: nullable('string'), durationMs: { type: 'integer' }, at: { type: 'string' },
  },
} as const satisfies ObjectSchemaOf<TlsRunView>;

const status = {
  type: 'object', additionalProperties: false,
  required: ['app', 'source', 'httpsPort', 'redirect', 'hstsMaxAgeSeconds', 'certificate', 'runs', 'nextRunAt'],
  properties: {
    app: { type: 'string' }, source: { type: 'string' }, httpsPort: { type: 'integer' }, redirect: { type: 'boolean' },
    hstsMaxAgeSeconds: nullable('integer'), certificate, runs: { type: 'array', items: run }, nextRunAt: nullable('string'),
  },
} as const satisfies ObjectSchemaOf<TlsStatus>;

const runBody = { type: ['object', 'null'], additionalProperties: false, properties: { force: { type: 'boolean' } } } as const;

function runView({ app: _app, ...rest }: TlsRun): TlsRunView {
  return rest;
}

function statusOf(options: TlsRouteOptions, app: string): TlsStatus {
  const policy = options.service.policy(app);
  const installed = options.service.installed(app);
  return {
    app,
    source: policy.source,
    httpsPort: policy.httpsPort,
    redirect: policy.redirect,
    hstsMaxAgeSeconds: policy.hsts?.maxAgeSeconds ?? null,
    certificate: installed ? {
      source: installed.source, fingerprint: installed.fingerprint, names: installed.names, notBefore: installed.notBefore,
      notAfter: installed.notAfter, issuer: installed.issuer, installedAt: installed.installedAt,
    } : null,
    runs: options.service.runs(app).map(runView),
    nextRunAt: options.nextRun()?.toISOString() ?? null,
  };
}

/** GET /apps/:app/tls (the certificate served and the run history), POST /apps/:app/tls/runs (a run now). */
export const tlsRoutes: FastifyPluginAsync<TlsRouteOptions> = async (app, options) => {
  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: TlsStatus }>('/apps/:app/tls', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: status }) },
  }, async (request) => {
    options.requireApp(request.params.app);
    return statusOf(options, request.params.app);
  });

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: TlsRunRequestBody | null; Reply: TlsRunAnswer }>('/apps/:app/tls/runs', {
    schema: { params: appParams, querystring: noQuery, body: runBody, response: answers({ 200: { type: 'object', additionalProperties: false, required: ['run', 'status'], properties: { run, status } } }) },
  }, async (request) => {
    options.requireApp(request.params.app);
    const done = await options.service.run(request.params.app, { trigger: 'api', actor: request.actor, force: request.body?.force ?? false });
    return { run: runView(done), status: statusOf(options, request.params.app) };
  });
};
