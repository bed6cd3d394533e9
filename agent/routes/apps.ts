import type { FastifyPluginAsync } from 'fastify';
import type { TlsSummary } from '../../contract/tls.js';
import type { AppStatus, Pm2DaemonStatus, ReleaseInfo, SlotProcessStatus, SlotStatus } from '../../contract/api.js';
import { manifestSchema } from '../../contract/manifest.js';
import type { AppSummary, StatusService } from '../status.js';
import { answers, appParams, noQuery, nullable, slotSchema, type AppParams, type NoQuery, type ObjectSchemaOf } from './schemas.js';

type SlotProcess = NonNullable<SlotStatus['process']>;
type SlotHealth = NonNullable<SlotStatus['health']>;

const slotProcess = {
  type: ['object', 'null'], additionalProperties: false, required: ['status', 'pid', 'restarts', 'cwd'],
  properties: { status: { type: 'string' }, pid: nullable('integer'), restarts: { type: 'integer' }, cwd: nullable('string') },
} as const satisfies ObjectSchemaOf<SlotProcess>;

const slotHealth = {
  type: ['object', 'null'], additionalProperties: false, required: ['ok', 'ms'],
  properties: { ok: { type: 'boolean' }, status: { type: 'integer' }, error: { type: 'string' }, ms: { type: 'number' } },
} as const satisfies ObjectSchemaOf<SlotHealth>;

const processStatus = {
  type: 'object', additionalProperties: false, required: ['name', 'pm2Name', 'port', 'instances', 'online', 'restarts', 'status', 'health'],
  properties: {
    name: { type: 'string' }, pm2Name: { type: 'string' }, port: nullable('integer'), instances: { type: 'integer' }, online: { type: 'integer' },
    restarts: { type: 'integer' }, status: nullable('string'), health: slotHealth,
  },
} as const satisfies ObjectSchemaOf<SlotProcessStatus>;

const slotStatus = {
  type: 'object', additionalProperties: false, required: ['slot', 'port', 'releaseId', 'state', 'live', 'process', 'health'],
  properties: {
    slot: slotSchema, port: nullable('integer'), releaseId: nullable('string'), state: { type: 'string' }, live: { type: 'boolean' },
    process: slotProcess, health: slotHealth, processes: { type: 'array', items: processStatus },
  },
} as const satisfies ObjectSchemaOf<SlotStatus>;

export const releaseInfo = {
  type: 'object', additionalProperties: false, required: ['releaseId', 'state', 'bytes', 'createdAt', 'manifest', 'slots'],
  properties: {
    releaseId: { type: 'string' }, state: { type: 'string' }, bytes: { type: 'integer' }, createdAt: { type: 'string' },
    manifest: manifestSchema, slots: { type: 'array', items: slotSchema },
  },
} as const satisfies ObjectSchemaOf<ReleaseInfo>;

const pm2Daemon = {
  type: 'object', additionalProperties: false, required: ['state', 'pid', 'since', 'message'],
  properties: { state: { type: 'string', enum: ['up', 'down', 'recovering'] }, pid: nullable('integer'), since: { type: 'string' }, message: nullable('string') },
} as const satisfies ObjectSchemaOf<Pm2DaemonStatus>;

const tlsSummary = {
  type: 'object', additionalProperties: false, required: ['httpsPort', 'fingerprint', 'notAfter', 'names', 'lastRun'],
  properties: {
    httpsPort: { type: 'integer' }, fingerprint: nullable('string'), notAfter: nullable('string'), names: { type: 'array', items: { type: 'string' } },
    lastRun: {
      type: ['object', 'null'], additionalProperties: false, required: ['outcome', 'at', 'reason'],
      properties: { outcome: { type: 'string' }, at: { type: 'string' }, reason: nullable('string') },
    },
  },
} as const satisfies ObjectSchemaOf<TlsSummary>;

const appStatus = {
  type: 'object', additionalProperties: false,
  required: ['app', 'liveSlot', 'liveReleaseId', 'generation', 'publicUrl', 'slots', 'releases'],
  properties: {
    app: { type: 'string' }, liveSlot: nullable('string'), liveReleaseId: nullable('string'), generation: { type: 'integer' },
    publicUrl: { type: 'string' }, env: nullable('string'), tag: nullable('string'), specOverrides: { type: ['object', 'null'], additionalProperties: true }, pm2: pm2Daemon, tls: tlsSummary, slots: { type: 'array', items: slotStatus }, releases: { type: 'array', items: releaseInfo },
  },
} as const satisfies ObjectSchemaOf<AppStatus>;

const appSummary = {
  type: 'object', additionalProperties: false, required: ['app', 'liveSlot', 'generation'],
  properties: { app: { type: 'string' }, liveSlot: nullable('string'), generation: { type: 'integer' } },
} as const satisfies ObjectSchemaOf<AppSummary>;

const appList = {
  type: 'object', additionalProperties: false, required: ['apps'],
  properties: { apps: { type: 'array', items: appSummary } },
} as const satisfies ObjectSchemaOf<{ apps: AppSummary[] }>;

/** GET /apps, GET /apps/:app: what runs where, with live process and health facts. */
export const appRoutes: FastifyPluginAsync<{ status: StatusService }> = async (app, { status }) => {
  app.get<{ Querystring: NoQuery; Reply: { apps: AppSummary[] } }>('/apps', {
    schema: { querystring: noQuery, response: answers({ 200: appList }) },
  }, async () => ({ apps: status.apps() }));

  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: AppStatus }>('/apps/:app', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: appStatus }) },
  }, async (request) => status.app(request.params.app));
};
