import type { FastifyPluginAsync } from 'fastify';
import { API_VERSION } from '../../contract/api.js';
import { answers, noQuery, type NoQuery, type ObjectSchemaOf } from './schemas.js';

export interface Health { ok: true; apiVersion: number; version: string }

const health = {
  type: 'object', additionalProperties: false, required: ['ok', 'apiVersion', 'version'],
  properties: { ok: { const: true }, apiVersion: { type: 'integer' }, version: { type: 'string' } },
} as const satisfies ObjectSchemaOf<Health>;

/** GET /health: the one route that answers without a token (the Host rules still apply). */
export const healthRoutes: FastifyPluginAsync<{ version: string }> = async (app, options) => {
  app.get<{ Querystring: NoQuery; Reply: Health }>('/health', {
    config: { public: true },
    schema: { querystring: noQuery, response: answers({ 200: health }) },
  }, async () => ({ ok: true, apiVersion: API_VERSION, version: options.version }));
};
