import { PassThrough } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import type { AppLogs, LogFollowLine } from '../../contract/api.js';
import { PROCESS_NAME_PATTERN } from '../../contract/spec.js';
import { SlipwayError } from '../../contract/errors.js';
import { SLOTS, type Slot } from '../../contract/names.js';
import type { StateStore } from '../state/store.js';
import type { FollowOptions, TailOptions } from '../logs/app-logs.js';
import { MAX_UNREAD_BYTES, NDJSON_TYPE } from './ndjson.js';
import { answers, appParams, nullable, slotSchema, stringList, type AppParams, type ObjectSchemaOf } from './schemas.js';

type ProcessLogs = AppLogs['processes'][number];

const logEntry = {
  type: 'object', additionalProperties: false, required: ['time', 'stream', 'text'],
  properties: { time: nullable('string'), stream: { type: 'string', enum: ['out', 'err'] }, text: { type: 'string' } },
} as const;

const processLogs = {
  type: 'object', additionalProperties: false, required: ['name', 'pm2Name', 'out', 'err', 'entries'],
  properties: { name: { type: 'string' }, pm2Name: { type: 'string' }, out: stringList, err: stringList, entries: { type: 'array', items: logEntry } },
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
    // Only lines written in the last `since` seconds (1 s to a year), by the agent's clock.
    since: { type: 'string', pattern: '^[1-9][0-9]{0,7}$' },
  },
} as const;

interface LogsQuery { slot?: Slot; process?: string; lines?: string; since?: string }

/** What the log routes read: agent/logs/app-logs.ts. */
export interface LogReader {
  tail(app: string, slot: Slot, options: TailOptions): Promise<ProcessLogs[]>;
  follow(app: string, options: FollowOptions, emit: (line: LogFollowLine) => void, signal: AbortSignal): Promise<void>;
}

export interface LogRouteOptions {
  state: StateStore;
  requireApp: (app: string) => string;
  logs: LogReader;
}

function tailOptions(query: LogsQuery, defaultLines: number): TailOptions {
  return {
    lines: Number(query.lines ?? defaultLines),
    ...(query.process ? { process: query.process } : {}),
    ...(query.since ? { sinceMs: Number(query.since) * 1000 } : {}),
  };
}

/**
 * GET /apps/:app/logs: the last lines of the live slot's processes (or another slot's, or one
 * process), with their times. GET /apps/:app/logs/follow: the same, then every new line as NDJSON
 * until the client leaves (or the agent stops).
 */
export const logRoutes: FastifyPluginAsync<LogRouteOptions> = async (app, options) => {
  const slotOf = (name: string, query: LogsQuery): Slot => {
    const slot = query.slot ?? options.state.app(name)?.liveSlot;
    if (!slot) throw new SlipwayError('invalid_request', `${name} has no live slot yet`, { hint: 'name one: deploy logs --slot blue', status: 404 });
    return slot;
  };

  app.get<{ Params: AppParams; Querystring: LogsQuery; Reply: AppLogs }>('/apps/:app/logs', {
    schema: { params: appParams, querystring: logsQuery, response: answers({ 200: appLogs }) },
  }, async (request) => {
    const name = options.requireApp(request.params.app);
    const slot = slotOf(name, request.query);
    const processes = await options.logs.tail(name, slot, tailOptions(request.query, 100));
    return { app: name, slot, releaseId: options.state.slot(name, slot).releaseId, processes };
  });

  // Follows end when the agent stops, or they would hold its server open.
  const follows = new Set<AbortController>();
  app.addHook('preClose', async () => { for (const follow of follows) follow.abort(); });

  app.get<{ Params: AppParams; Querystring: LogsQuery }>('/apps/:app/logs/follow', {
    schema: { params: appParams, querystring: logsQuery },
  }, async (request, reply) => {
    const name = options.requireApp(request.params.app);
    const slot = slotOf(name, request.query);
    // The process is checked before the stream starts, so a wrong name is a plain 404.
    await options.logs.tail(name, slot, { ...tailOptions(request.query, 1), lines: 1 });
    const out = new PassThrough();
    const controller = new AbortController();
    follows.add(controller);
    const stop = () => { controller.abort(); follows.delete(controller); };
    reply.raw.on('close', stop);
    const { slot: pinned, ...query } = request.query;
    const emit = (line: LogFollowLine) => {
      if (out.writableEnded) return;
      out.write(`${JSON.stringify(line)}\n`);
      // A client that stopped reading but stays connected: end its follow rather than buffer without limit.
      if (out.writableLength > MAX_UNREAD_BYTES) {
        request.log.warn({ app: name, unreadBytes: out.writableLength }, 'ended a log follow whose client stopped reading');
        out.end(`${JSON.stringify({ type: 'fell_behind', unreadBytes: out.writableLength, at: new Date().toISOString() } satisfies LogFollowLine)}\n`);
        stop();
      }
    };
    void options.logs.follow(name, { ...tailOptions(query, 10), ...(pinned ? { slot: pinned } : {}) }, emit, controller.signal)
      .catch((error: unknown) => { request.log.warn({ err: error, app: name }, 'log follow ended with an error'); })
      .finally(() => { stop(); if (!out.writableEnded) out.end(); });
    return reply.code(200).type(NDJSON_TYPE).send(out);
  });
};
