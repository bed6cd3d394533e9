import type { FastifyPluginAsync } from 'fastify';
import { ENV_NAME_PATTERN, RELEASE_REF_PATTERN, ROLLOUT_ID_PATTERN, TAG_PATTERN, type DeploymentEvent, type DeploymentSummary, type PromotionInfo } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { checkSpecOverrides, type SpecOverrides } from '../../contract/spec-overrides.js';
import type { DeploymentTarget, FleetRequest } from '../rollout/rollout.js';
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, type Slot } from '../../contract/names.js';
import type { RolloutService } from '../rollout/rollout.js';
import type { DeploymentDetail, DeploymentListEntry, StatusService } from '../status.js';
import { deploymentStream, streamFeed } from './ndjson.js';
import {
  answers, appParams, noQuery, nullable, slotSchema, type AppParams, type NoQuery, type ObjectSchemaOf,
} from './schemas.js';

const releaseIdSchema = { type: 'string', pattern: RELEASE_ID_PATTERN } as const;
const lockIdSchema = { type: 'string', pattern: '^[0-9a-f-]{36}$' } as const;

/** What a controller with environments adds to a request: the environment, its spec overrides (checked by the rollout), the tag. */
const targetProperties = {
  env: { type: 'string', pattern: ENV_NAME_PATTERN },
  specOverrides: { type: 'object' },
  tag: { type: 'string', pattern: TAG_PATTERN },
  promotion: {
    type: 'object', additionalProperties: false, required: ['from', 'sourceHost', 'forced', 'reason'],
    properties: {
      from: { type: ['string', 'null'], pattern: ENV_NAME_PATTERN }, sourceHost: { type: 'string', maxLength: 300, pattern: '^[^\\u0000-\\u001f]*$' },
      forced: { type: 'boolean' }, reason: { type: ['string', 'null'], maxLength: 500, pattern: '^[^\\u0000-\\u001f]*$' },
    },
  },
} as const;
interface TargetBody { env?: string; specOverrides?: Record<string, unknown>; tag?: string; promotion?: PromotionInfo }

/** What a fleet controller adds (controller/fleet): see FleetRequest. */
const fleetProperties = {
  rolloutId: { type: 'string', pattern: ROLLOUT_ID_PATTERN },
  runOnce: { type: 'boolean' },
  watchMs: { type: 'integer', minimum: 0, maximum: 86_400_000 },
  keepPrevious: { type: 'boolean' },
  keepLock: { type: 'boolean' },
} as const;

const deployBody = {
  type: 'object', additionalProperties: false, required: ['releaseId'],
  properties: { releaseId: releaseIdSchema, slot: slotSchema, lockId: lockIdSchema, ...targetProperties, ...fleetProperties },
} as const;
interface DeployBody extends TargetBody, FleetRequest { releaseId: string; slot?: Slot; lockId?: string }

/** Pure: only the fleet fields a request has. */
export function fleetFieldsOf(body: FleetRequest): FleetRequest {
  const out: FleetRequest = {};
  if (body.rolloutId !== undefined) out.rolloutId = body.rolloutId;
  if (body.runOnce !== undefined) out.runOnce = body.runOnce;
  if (body.watchMs !== undefined) out.watchMs = body.watchMs;
  if (body.keepPrevious !== undefined) out.keepPrevious = body.keepPrevious;
  if (body.keepLock !== undefined) out.keepLock = body.keepLock;
  return out;
}

const reasonSchema = { type: 'string', maxLength: 500, pattern: '^[^\\u0000-\\u001f]*$' } as const;

const switchBody = {
  type: 'object', additionalProperties: false, required: ['slot'],
  properties: { slot: slotSchema, env: targetProperties.env, reason: reasonSchema, lockId: lockIdSchema, ...fleetProperties },
} as const;
interface SwitchBody extends FleetRequest { slot: Slot; env?: string; reason?: string; lockId?: string }

const abortBody = { type: 'object', additionalProperties: false, required: ['reason'], properties: { reason: reasonSchema } } as const;
interface AbortBody { reason: string }
const abortAnswer = {
  type: 'object', additionalProperties: false, required: ['deploymentId', 'aborted'],
  properties: { deploymentId: { type: 'integer' }, aborted: { type: 'boolean' } },
} as const;

/** Pure: the request's target fields as the rollout takes them (overrides checked: invalid_request on a bad one). */
export function targetOf(body: TargetBody): DeploymentTarget {
  let specOverrides: SpecOverrides | undefined;
  if (body.specOverrides !== undefined) {
    const checked = checkSpecOverrides(body.specOverrides);
    if (!checked.ok) {
      throw new SlipwayError('invalid_request', 'specOverrides of the request are not valid', {
        status: 400, details: checked.problems.map((p) => `specOverrides/${p.field}: ${p.message}`), hint: 'fix environments.<env>.spec in deploy.config.json',
      });
    }
    specOverrides = checked.overrides;
  }
  return {
    ...(body.env ? { env: body.env } : {}), ...(specOverrides ? { specOverrides } : {}), ...(body.tag ? { tag: body.tag } : {}),
    ...(body.promotion ? { promotion: body.promotion } : {}),
  };
}

const rollbackBody = {
  type: 'object', additionalProperties: false,
  properties: {
    to: { type: 'string', pattern: RELEASE_REF_PATTERN },
    force: { type: 'boolean' },
    reason: reasonSchema,
    ...targetProperties,
    // A fleet rollback (part fleet-ops): one rollout id on every host; the release left stays warm for a one-flip revert.
    rolloutId: fleetProperties.rolloutId, watchMs: fleetProperties.watchMs, keepPrevious: fleetProperties.keepPrevious,
  },
} as const;
interface RollbackBody extends TargetBody, Pick<FleetRequest, 'rolloutId' | 'watchMs' | 'keepPrevious'> { to?: string; force?: boolean; reason?: string }

const deploymentParams = {
  type: 'object', additionalProperties: false, required: ['app', 'id'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, id: { type: 'string', pattern: '^[0-9]{1,12}$' } },
} as const;
interface DeploymentParams { app: string; id: string }

const historyQuery = { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^[0-9]{1,4}$' } } } as const;
interface HistoryQuery { limit?: string }

const stepDurations = { type: 'object', additionalProperties: { type: 'number' } } as const;

const summaryProperties = {
  id: { type: 'integer' }, app: { type: 'string' }, kind: { type: 'string' }, releaseId: nullable('string'), slot: slotSchema,
  previousSlot: nullable('string'), previousRelease: nullable('string'), state: { type: 'string' }, outcome: nullable('string'),
  reason: nullable('string'), requestedBy: { type: 'string' }, startedAt: { type: 'string' }, endedAt: nullable('string'), note: nullable('string'),
  forced: { type: 'boolean' }, targetState: nullable('string'), rolloutId: nullable('string'), badMark: { type: ['string', 'null'], enum: ['kept', 'cleared', null] },
  marksPrevious: { type: 'boolean' }, env: nullable('string'), tag: nullable('string'),
  promotion: {
    type: ['object', 'null'], additionalProperties: false, required: ['from', 'sourceHost', 'forced', 'reason'],
    properties: { from: nullable('string'), sourceHost: { type: 'string' }, forced: { type: 'boolean' }, reason: nullable('string') },
  },
} as const;
const summaryRequired = [
  'id', 'app', 'kind', 'releaseId', 'slot', 'previousSlot', 'previousRelease', 'state', 'outcome', 'reason', 'requestedBy', 'startedAt', 'endedAt', 'note',
  'forced', 'targetState', 'badMark', 'marksPrevious',
] as const;

const eventEntry = {
  type: 'object', additionalProperties: false, required: ['deploymentId', 'step', 'status', 'message', 'at', 'elapsedMs'],
  properties: {
    deploymentId: { type: 'integer' }, step: { type: 'string' }, status: { type: 'string' }, message: nullable('string'),
    at: { type: 'string' }, elapsedMs: nullable('number'),
  },
} as const satisfies ObjectSchemaOf<Omit<DeploymentEvent, 'type'>>;

const deploymentList = {
  type: 'object', additionalProperties: false, required: ['deployments'],
  properties: {
    deployments: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: [...summaryRequired, 'stepDurationsMs'],
        properties: { ...summaryProperties, stepDurationsMs: stepDurations, events: { type: 'array', items: eventEntry } },
      } satisfies ObjectSchemaOf<DeploymentSummary>,
    },
  },
} as const;

const deploymentDetail = {
  type: 'object', additionalProperties: false, required: [...summaryRequired, 'events'],
  properties: { ...summaryProperties, stepDurationsMs: stepDurations, events: { type: 'array', items: eventEntry } },
} as const satisfies ObjectSchemaOf<DeploymentSummary>;

export interface DeploymentRouteOptions {
  rollouts: Pick<RolloutService, 'startDeploy' | 'startSwitch' | 'startRollback' | 'abort'>;
  status: StatusService;
}

/** Rollouts (deploy, switch, rollback: each streams its progress) and their history. */
export const deploymentRoutes: FastifyPluginAsync<DeploymentRouteOptions> = async (app, { rollouts, status }) => {
  app.post<{ Params: AppParams; Querystring: NoQuery; Body: DeployBody }>('/apps/:app/deployments', {
    schema: { params: appParams, querystring: noQuery, body: deployBody, response: answers(deploymentStream) },
  }, async (request, reply) => {
    const { releaseId, slot, lockId } = request.body;
    const target = targetOf(request.body);
    return streamFeed(reply, rollouts.startDeploy({
      app: request.params.app, releaseId, actor: request.actor, ...(slot ? { slot } : {}), ...(lockId ? { lockId } : {}), ...target,
      ...fleetFieldsOf(request.body),
    }));
  });

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: SwitchBody }>('/apps/:app/switch', {
    schema: { params: appParams, querystring: noQuery, body: switchBody, response: answers(deploymentStream) },
  }, async (request, reply) => {
    const { slot, env, reason, lockId } = request.body;
    return streamFeed(reply, rollouts.startSwitch({
      app: request.params.app, slot, actor: request.actor, ...(env ? { env } : {}), ...(reason ? { reason } : {}), ...(lockId ? { lockId } : {}),
      ...fleetFieldsOf(request.body),
    }));
  });

  // A fleet controller stops a host's running rollout when another host failed (see RolloutService.abort).
  app.post<{ Params: DeploymentParams; Querystring: NoQuery; Body: AbortBody; Reply: { deploymentId: number; aborted: boolean } }>('/apps/:app/deployments/:id/abort', {
    schema: { params: deploymentParams, querystring: noQuery, body: abortBody, response: answers({ 200: abortAnswer }) },
  }, async (request) => rollouts.abort({ app: request.params.app, deploymentId: Number(request.params.id), reason: request.body.reason, actor: request.actor }));

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: RollbackBody }>('/apps/:app/rollback', {
    schema: { params: appParams, querystring: noQuery, body: rollbackBody, response: answers(deploymentStream) },
  }, async (request, reply) => {
    const { to, force = false, reason } = request.body;
    const target = targetOf(request.body);
    return streamFeed(reply, rollouts.startRollback({
      app: request.params.app, force, actor: request.actor, ...(to ? { to } : {}), ...(reason ? { reason } : {}), ...target,
      ...fleetFieldsOf(request.body),
    }));
  });

  app.get<{ Params: AppParams; Querystring: HistoryQuery; Reply: { deployments: DeploymentListEntry[] } }>('/apps/:app/deployments', {
    schema: { params: appParams, querystring: historyQuery, response: answers({ 200: deploymentList }) },
  }, async (request) => ({ deployments: status.deployments(request.params.app, Number(request.query.limit ?? 50)) }));

  app.get<{ Params: DeploymentParams; Querystring: NoQuery; Reply: DeploymentDetail }>('/apps/:app/deployments/:id', {
    schema: { params: deploymentParams, querystring: noQuery, response: answers({ 200: deploymentDetail }) },
  }, async (request) => status.deployment(request.params.app, Number(request.params.id)));
};
