import type { FastifyPluginAsync } from 'fastify';
import {
  ENV_KEY_PATTERN, ENV_MAX_BODY_BYTES, ENV_MAX_KEYS, ENV_MAX_VALUE_CHARS, type AppEnvChange, type AppEnvPatch, type AppEnvView,
} from '../../contract/env-file.js';
import type { AppEnvFiles } from '../env-files.js';
import { answers, appParams, noQuery, stringList, type AppParams, type NoQuery, type ObjectSchemaOf } from './schemas.js';

const key = { type: 'string', maxLength: 255, pattern: ENV_KEY_PATTERN } as const;

const envView = {
  type: 'object', additionalProperties: false, required: ['file', 'keys', 'mode', 'updatedAt', 'missing'],
  properties: {
    file: { type: 'string' }, keys: stringList, mode: { type: 'string' },
    updatedAt: { type: ['string', 'null'] }, missing: { type: ['array', 'null'], items: { type: 'string' } },
  },
} as const satisfies ObjectSchemaOf<AppEnvView>;

const envPatch = {
  type: 'object', additionalProperties: false, minProperties: 1,
  properties: {
    set: { type: 'object', maxProperties: ENV_MAX_KEYS, propertyNames: key, additionalProperties: { type: 'string', maxLength: ENV_MAX_VALUE_CHARS } },
    unset: { type: 'array', maxItems: ENV_MAX_KEYS, uniqueItems: true, items: key },
  },
} as const;

const envChange = {
  type: 'object', additionalProperties: false, required: ['keys', 'added', 'changed', 'removed', 'unchanged'],
  properties: { keys: stringList, added: stringList, changed: stringList, removed: stringList, unchanged: stringList },
} as const satisfies ObjectSchemaOf<AppEnvChange>;

/** What the audit keeps of a PATCH: the key names, never a value. */
export function auditedEnvPatch(body: unknown): unknown {
  const patch = body as AppEnvPatch;
  return { set: Object.keys(patch.set ?? {}), unset: patch.unset ?? [] };
}

export interface EnvRouteOptions {
  files: AppEnvFiles;
  requireApp: (app: string) => string;
}

/**
 * GET /apps/:app/env: the env file's keys (never a value), when it was written, and the keys the
 * live release requires that it lacks. PATCH /apps/:app/env: set and unset keys (deploy env).
 */
export const envRoutes: FastifyPluginAsync<EnvRouteOptions> = async (app, { files, requireApp }) => {
  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: AppEnvView }>('/apps/:app/env', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: envView }) },
  }, async (request) => files.view(requireApp(request.params.app)));

  app.patch<{ Params: AppParams; Querystring: NoQuery; Body: AppEnvPatch; Reply: AppEnvChange }>('/apps/:app/env', {
    bodyLimit: ENV_MAX_BODY_BYTES,
    config: { auditBody: auditedEnvPatch },
    schema: { params: appParams, querystring: noQuery, body: envPatch, response: answers({ 200: envChange }) },
  }, async (request) => files.edit(requireApp(request.params.app), { set: request.body.set ?? {}, unset: request.body.unset ?? [] }));
};
