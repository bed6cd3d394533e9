import type { FastifyPluginAsync } from 'fastify';
import { FLEET_HOST_PATTERN, ROLLOUT_ID_PATTERN, ENV_NAME_PATTERN, type FleetRecord } from '../../contract/api.js';
import { RELEASE_ID_PATTERN } from '../../contract/names.js';
import type { StateStore } from '../state/store.js';
import { answers, appParams, noQuery, type AppParams, type NoQuery, type ObjectSchemaOf } from './schemas.js';

const hostList = { type: 'array', maxItems: 64, items: { type: 'string', pattern: FLEET_HOST_PATTERN } } as const;
const text = { type: ['string', 'null'], maxLength: 500, pattern: '^[^\\u0000-\\u001f]*$' } as const;

const fleetRecord = {
  type: 'object', additionalProperties: false,
  required: ['rolloutId', 'kind', 'releaseId', 'attemptedReleaseId', 'outcome', 'hosts', 'skipped', 'env', 'actor', 'reason', 'at'],
  properties: {
    rolloutId: { type: 'string', pattern: ROLLOUT_ID_PATTERN },
    kind: { type: 'string', enum: ['push', 'rollback', 'switch', 'reconcile', 'promote'] },
    releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN },
    attemptedReleaseId: { type: ['string', 'null'], pattern: RELEASE_ID_PATTERN },
    outcome: { type: 'string', enum: ['succeeded', 'rolled_back', 'failed'] },
    hosts: hostList,
    skipped: hostList,
    env: { type: ['string', 'null'], pattern: ENV_NAME_PATTERN },
    actor: { type: 'string', maxLength: 330, pattern: '^[^\\u0000-\\u001f]*$' },
    reason: text,
    at: { type: 'string', format: 'date-time' },
  },
} as const satisfies ObjectSchemaOf<FleetRecord>;

const fleetAnswer = {
  type: 'object', additionalProperties: false, required: ['fleet'],
  properties: { fleet: { ...fleetRecord, type: ['object', 'null'] } },
} as const satisfies ObjectSchemaOf<{ fleet: FleetRecord | null }>;

export interface FleetRouteOptions {
  state: Pick<StateStore, 'fleetRecord' | 'setFleetRecord'>;
  requireApp: (name: string) => unknown;
}

/** The app's fleet record: which release its whole fleet is meant to serve (written by the fleet controller). */
export const fleetRoutes: FastifyPluginAsync<FleetRouteOptions> = async (app, { state, requireApp }) => {
  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: { fleet: FleetRecord | null } }>('/apps/:app/fleet', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: fleetAnswer }) },
  }, async (request) => {
    requireApp(request.params.app);
    return { fleet: state.fleetRecord(request.params.app) };
  });

  app.put<{ Params: AppParams; Querystring: NoQuery; Body: FleetRecord; Reply: { fleet: FleetRecord | null } }>('/apps/:app/fleet', {
    schema: { params: appParams, querystring: noQuery, body: fleetRecord, response: answers({ 200: fleetAnswer }) },
  }, async (request) => {
    requireApp(request.params.app);
    state.setFleetRecord(request.params.app, request.body);
    return { fleet: request.body };
  });
};
