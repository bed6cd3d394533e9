import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { DeploymentEvent, DeploymentResult, DeploymentStreamLine } from '../../contract/api.js';
import type { DeploymentFeed } from '../rollout/feed.js';
import { errorBody, nullable, slotSchema, type ObjectSchemaOf } from './schemas.js';

export const NDJSON_TYPE = 'application/x-ndjson';
/**
 * Bytes of an endless NDJSON answer a client may leave unread (a Ctrl-Z'd `deploy logs -f`)
 * before the agent ends it: past this it would buffer without limit for a client that is not reading.
 */
export const MAX_UNREAD_BYTES = 8 * 1024 * 1024;
export const DEPLOYMENT_HEADER = 'x-slipway-deployment';

const eventLine = {
  type: 'object', additionalProperties: false, required: ['type', 'deploymentId', 'step', 'status', 'message', 'at', 'elapsedMs'],
  properties: {
    type: { const: 'event' }, deploymentId: { type: 'integer' }, step: { type: 'string' }, status: { type: 'string' },
    message: nullable('string'), at: { type: 'string' }, elapsedMs: nullable('number'),
  },
} as const satisfies ObjectSchemaOf<DeploymentEvent>;

const resultLine = {
  type: 'object', additionalProperties: false,
  required: ['type', 'deploymentId', 'app', 'kind', 'outcome', 'phase', 'slot', 'releaseId', 'liveSlot', 'liveReleaseId', 'publicUrl', 'reason', 'error', 'stepDurationsMs'],
  properties: {
    type: { const: 'result' }, deploymentId: { type: 'integer' }, app: { type: 'string' }, kind: { type: 'string' },
    outcome: { type: 'string' }, phase: nullable('string'), slot: slotSchema, releaseId: nullable('string'), liveSlot: nullable('string'),
    liveReleaseId: nullable('string'), publicUrl: { type: 'string' }, reason: nullable('string'),
    error: { ...errorBody, type: ['object', 'null'] }, stepDurationsMs: { type: 'object', additionalProperties: { type: 'number' } },
  },
} as const satisfies ObjectSchemaOf<DeploymentResult>;

/** The answer of a route that starts a rollout: its progress, one JSON line per event, then the result. */
export const deploymentStream = {
  200: {
    description: 'NDJSON: DeploymentEvent lines, then one DeploymentResult line',
    content: { [NDJSON_TYPE]: { schema: { type: 'object', if: { type: 'object', properties: { type: { const: 'result' } } }, then: resultLine, else: eventLine } } },
  },
} as const;

/**
 * Streams a deployment's progress as NDJSON, each line serialized by the route's own response
 * schema; the rollout itself never depends on the client staying. A feed abandoned (the end could
 * not be recorded) ends the stream without a result line: the client reports the outcome unknown.
 */
export function streamFeed(reply: FastifyReply, feed: DeploymentFeed): FastifyReply {
  const serialize = reply.getSerializationFunction('200', NDJSON_TYPE) as ((line: DeploymentStreamLine) => string) | undefined;
  const out = new PassThrough();
  const unsubscribe = feed.subscribe((line) => {
    out.write(`${serialize ? serialize(line) : JSON.stringify(line)}\n`);
    if (line.type === 'result') out.end();
  }, () => out.end());
  reply.raw.on('close', unsubscribe);
  reply.header(DEPLOYMENT_HEADER, String(feed.deploymentId));
  return reply.code(200).type(NDJSON_TYPE).send(out);
}
