import type { FastifyPluginAsync } from 'fastify';
import type { LockInfo } from '../../contract/api.js';
import { RELEASE_ID_PATTERN } from '../../contract/names.js';
import { ROLLOUT_ID_PATTERN } from '../../contract/api.js';
import type { RolloutService } from '../rollout/rollout.js';
import {
  answers, appParams, noBody, noQuery, nullable, type AppParams, type NoBody, type NoQuery, type ObjectSchemaOf,
} from './schemas.js';

/** A lock as the API shows it; `stale` is known when it is read, not when it is taken. */
type LockView = Omit<LockInfo, 'stale'> & { stale?: boolean };

const lockView = {
  type: 'object', additionalProperties: false,
  required: ['app', 'lockId', 'holder', 'action', 'releaseId', 'since', 'expiresAt', 'deploymentId'],
  properties: {
    app: { type: 'string' }, lockId: { type: 'string' }, holder: { type: 'string' }, action: { type: 'string' },
    releaseId: nullable('string'), since: { type: 'string' }, expiresAt: nullable('string'), deploymentId: nullable('integer'),
    stale: { type: 'boolean' },
  },
} as const satisfies ObjectSchemaOf<LockView>;

const lockAnswer = {
  type: 'object', additionalProperties: false, required: ['lock'],
  properties: { lock: { ...lockView, type: ['object', 'null'] } },
} as const satisfies ObjectSchemaOf<{ lock: LockView | null }>;

const releasedAnswer = {
  type: 'object', additionalProperties: false, required: ['released', 'lock'],
  properties: { released: { type: 'boolean' }, lock: { ...lockView, type: ['object', 'null'] } },
} as const satisfies ObjectSchemaOf<{ released: boolean; lock: LockView | null }>;

const reserveBody = {
  type: 'object', additionalProperties: false, required: ['releaseId'],
  properties: { releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN }, rolloutId: { type: 'string', pattern: ROLLOUT_ID_PATTERN } },
} as const;
interface ReserveBody { releaseId: string; rolloutId?: string }

const releaseQuery = {
  type: 'object', additionalProperties: false,
  properties: { lockId: { type: 'string', pattern: '^[0-9a-f-]{36}$' }, force: { type: 'string', enum: ['true', 'false'] } },
} as const;
interface ReleaseQuery { lockId?: string; force?: 'true' | 'false' }

export interface LockRouteOptions { locks: Pick<RolloutService, 'lockStatus' | 'reserveLock' | 'releaseLock'> }

/** The per-app deploy lock: read it, reserve it for a push, release it. */
export const lockRoutes: FastifyPluginAsync<LockRouteOptions> = async (app, { locks }) => {
  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: { lock: LockView | null } }>('/apps/:app/lock', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: lockAnswer }) },
  }, async (request) => ({ lock: locks.lockStatus(request.params.app) }));

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: ReserveBody; Reply: { lock: LockView } }>('/apps/:app/lock', {
    schema: { params: appParams, querystring: noQuery, body: reserveBody, response: answers({ 201: lockAnswer }) },
  }, async (request, reply) => reply.code(201).send({
    lock: locks.reserveLock({
      app: request.params.app, releaseId: request.body.releaseId, actor: request.actor, ...(request.body.rolloutId ? { rolloutId: request.body.rolloutId } : {}),
    }),
  }));

  app.delete<{ Params: AppParams; Querystring: ReleaseQuery; Body: NoBody; Reply: { released: boolean; lock: LockView | null } }>('/apps/:app/lock', {
    schema: { params: appParams, querystring: releaseQuery, body: noBody, response: answers({ 200: releasedAnswer }) },
  }, async (request) => {
    const { lockId, force } = request.query;
    return locks.releaseLock({ app: request.params.app, force: force === 'true', actor: request.actor, ...(lockId ? { lockId } : {}) });
  });
};
