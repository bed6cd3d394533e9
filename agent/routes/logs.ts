import type { FastifyPluginAsync } from 'fastify';
import type { AppLogs } from '../../contract/api.js';
import { PROCESS_NAME_PATTERN } from '../../contract/spec.js';
import { SlipwayError } from '../../contract/errors.js';
import { SLOTS, type Slot } from '../../contract/names.js';
import type { StateStore } from '../state/store.js';
import { answers, appParams, nullable, slotSchema, stringList, type AppParams, type ObjectSchemaOf } from './schemas.js';

type ProcessLogs = AppLogs['processes'][number];

const processLogs = {
  type: 'object', additionalProperties: false, required: ['name', 'pm2Name', 'out', 'err'],
  properties: { name: { type: 'string' }, pm2Name: { type: 'string' }, out: stringList, err: stringList },
} as const satisfies ObjectSchemaOf<ProcessLogs>;

const appLogs = {
  type: 'object', additionalProperties: false, required: ['app', 'slot', 'releaseId', 'processes'],
  properties: { app: { type: 'string' }, slot: slotSchema, releaseId: nullable('string'), processes: { type: 'array', items: processLogs } },
} as const satisfies ObjectSchemaOf<AppLogs>;

const logsQuery = {
  type: 'object', additionalProperties: false,
  properties: {
    slot: { type: 'string', enum: [...SLOTS] },
    process: { type: 'string', pattern: PROCESS_NAME_PATTERN },
    // Query values are strings (no coercion): 1 to 1000.
    lines: { type: 'string', pattern: '^([1-9][0-9]{0,2}|1000)$' },
  },
} as const;

interface LogsQuery { slot?: Slot; process?: string; lines?: string }

export interface LogRouteOptions {
  state: StateStore;
  requireApp: (app: string) => string;
  logs: (app: string, slot: Slot, options: { process?: string; lines: number }) => Promise<ProcessLogs[]>;
}

/** GET /apps/:app/logs: the last lines of the live slot's processes (or another slot's, or one process). */
export const logRoutes: FastifyPluginAsync<LogRouteOptions> = async (app, options) => {
  app.get<{ Params: AppParams; Querystring: LogsQuery; Reply: AppLogs }>('/apps/:app/logs', {
    schema: { params: appParams, querystring: logsQuery, response: answers({ 200: appLogs }) },
  }, async (request) => {
    const name = options.requireApp(request.params.app);
    const slot = request.query.slot ?? options.state.app(name)?.liveSlot;
    if (!slot) {
      throw new SlipwayError('invalid_request', `${name} has no live slot yet`, { hint: 'name one: deploy logs --slot blue', status: 404 });
    }
    const processes = await options.logs(name, slot, { lines: Number(request.query.lines ?? 100), ...(request.query.process ? { process: request.query.process } : {}) });
    return { app: name, slot, releaseId: options.state.slot(name, slot).releaseId, processes };
  });
};
