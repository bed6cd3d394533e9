import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import { SlipwayError } from '../../contract/errors.js';
import type { DoraFigures } from '../../contract/api.js';
import { answers, appParams, nullable, type AppParams, type ObjectSchemaOf } from './schemas.js';

const spread = {
  type: 'object', additionalProperties: false, required: ['count', 'medianMs', 'p90Ms'],
  properties: { count: { type: 'integer' }, medianMs: nullable('number'), p90Ms: nullable('number') },
} as const;

const doraSchema = {
  type: 'object', additionalProperties: false,
  required: ['since', 'until', 'days', 'deployments', 'perDay', 'leadTime', 'changeFailures', 'timeToRestore'],
  properties: {
    since: { type: 'string' }, until: { type: 'string' }, days: { type: 'number' }, deployments: { type: 'integer' }, perDay: { type: 'number' },
    leadTime: spread,
    changeFailures: {
      type: 'object', additionalProperties: false, required: ['failed', 'total', 'rate'],
      properties: { failed: { type: 'integer' }, total: { type: 'integer' }, rate: nullable('number') },
    },
    timeToRestore: { ...spread, required: [...spread.required, 'open'], properties: { ...spread.properties, open: { type: 'integer' } } },
  },
} as const satisfies ObjectSchemaOf<DoraFigures>;

const doraQuery = {
  type: 'object', additionalProperties: false,
  properties: { since: { type: 'string', pattern: '^[0-9]{1,4}[dhw]$', default: '30d' } },
} as const;

const UNIT_MS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "30d", "12h", "2w" → milliseconds. */
export function windowMs(text: string): number {
  return Number(text.slice(0, -1)) * UNIT_MS[text.slice(-1)]!;
}

export interface MetricsRouteOptions {
  registry: Registry;
  apps: readonly string[];
  dora: (app: string, sinceMs: number) => DoraFigures;
}

/**
 * GET /metrics: the Prometheus text format, behind the same token as the rest of the API
 * (Prometheus sends it with authorization.credentials_file). GET /apps/:app/dora: the DORA figures
 * for `deploy metrics`.
 */
export const metricsRoutes: FastifyPluginAsync<MetricsRouteOptions> = async (app, options) => {
  // Text, not JSON: no response schema (a string schema would be JSON-quoted by the serializer).
  app.get('/metrics', async (_request, reply) => {
    const text = await options.registry.metrics();
    return reply.type(options.registry.contentType).send(text);
  });
  app.get<{ Params: AppParams; Querystring: { since: string }; Reply: DoraFigures }>('/apps/:app/dora', {
    schema: { params: appParams, querystring: doraQuery, response: answers({ 200: doraSchema }) },
  }, async (request) => {
    if (!options.apps.includes(request.params.app)) {
      throw new SlipwayError('app_not_found', `no app "${request.params.app}" on this host`, { hint: `known apps: ${options.apps.join(', ')}`, status: 404 });
    }
    return options.dora(request.params.app, windowMs(request.query.since));
  });
};
