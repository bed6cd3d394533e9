import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { BackupJobView, BackupRunView, BackupsOverview, RestoreView, Verification, VerifyCheck } from '../../contract/backups.js';
import { runView } from '../backups/views.js';
import { redactUri } from '../backups/commands.js';
import { JOB_NAME_PATTERN } from '../backups/config.js';
import type { BackupService } from '../backups/service.js';
import { answers, nullable, noQuery, type NoQuery, type ObjectSchemaOf } from './schemas.js';

export interface BackupRouteOptions {
  service: BackupService;
  /** When the scheduler next fires each job (for GET /backups). */
  nextRun?: (job: string) => Date | null;
  logger: Logger;
}

const jobParams = {
  type: 'object', additionalProperties: false, required: ['job'],
  properties: { job: { type: 'string', pattern: JOB_NAME_PATTERN } },
} as const;
interface JobParams { job: string }

const idParams = {
  type: 'object', additionalProperties: false, required: ['id'],
  properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,11}$' } },
} as const;
interface IdParams { id: string }

const overviewQuery = {
  type: 'object', additionalProperties: false,
  properties: { job: { type: 'string', pattern: JOB_NAME_PATTERN }, limit: { type: 'string', pattern: '^[0-9]{1,4}$' } },
} as const;
interface OverviewQuery { job?: string; limit?: string }

// Waits for the run by default (the CLI shows its outcome); {"wait": false} answers 202 with its id.
const runBody = { type: 'object', additionalProperties: false, properties: { wait: { type: 'boolean' } } } as const;
interface RunBody { wait?: boolean }

const restoreBody = {
  type: 'object', additionalProperties: false, required: ['confirm'],
  properties: { confirm: { const: true }, force: { type: 'boolean' }, to: { type: 'string', minLength: 1, maxLength: 4096 } },
} as const;
interface RestoreBody { confirm: true; force?: boolean; to?: string }

const verifyCheck = {
  type: 'object', additionalProperties: false, required: ['name', 'ok', 'detail'],
  properties: { name: { type: 'string' }, ok: { type: 'boolean' }, skipped: { type: 'boolean' }, detail: { type: 'string' } },
} as const satisfies ObjectSchemaOf<VerifyCheck>;

const verification = {
  type: ['object', 'null'], additionalProperties: false, required: ['level', 'checks', 'counts'],
  properties: {
    level: { type: 'string' }, checks: { type: 'array', items: verifyCheck },
    counts: { type: ['object', 'null'], additionalProperties: { type: 'number' } },
  },
} as const satisfies ObjectSchemaOf<Verification>;

const runOffsite = {
  type: ['object', 'null'], additionalProperties: false, required: ['status', 'name', 'at', 'error'],
  properties: { status: { type: 'string' }, name: nullable('string'), at: nullable('string'), error: nullable('string') },
} as const satisfies ObjectSchemaOf<NonNullable<BackupRunView['offsite']>>;

const backupRun = {
  type: 'object', additionalProperties: false,
  required: [
    'id', 'job', 'app', 'kind', 'trigger', 'requestedBy', 'deploymentId', 'status', 'reason', 'file', 'bytes', 'sha256', 'startedAt',
    'endedAt', 'durationMs', 'exitCode', 'signal', 'timedOut', 'stderrTail', 'verifiedAt', 'verifyLevel', 'verification', 'prunedAt',
    'pruneReason', 'offsite',
  ],
  properties: {
    id: { type: 'integer' }, job: { type: 'string' }, app: { type: 'string' }, kind: { type: 'string' }, trigger: { type: 'string' },
    requestedBy: { type: 'string' }, deploymentId: nullable('integer'), status: { type: 'string' }, reason: nullable('string'),
    file: nullable('string'), bytes: nullable('integer'), sha256: nullable('string'), startedAt: { type: 'string' },
    endedAt: nullable('string'), durationMs: nullable('number'), exitCode: nullable('integer'), signal: nullable('string'),
    timedOut: { type: 'boolean' }, stderrTail: nullable('string'), verifiedAt: nullable('string'), verifyLevel: nullable('string'),
    verification, prunedAt: nullable('string'), pruneReason: nullable('string'), offsite: runOffsite,
  },
} as const satisfies ObjectSchemaOf<BackupRunView>;

const backupJob = {
  type: 'object', additionalProperties: false,
  required: ['job', 'app', 'kind', 'schedule', 'nextRunAt', 'running', 'retention', 'offsite', 'lastRun', 'lastSuccessAt', 'lastVerified', 'kept'],
  properties: {
    job: { type: 'string' }, app: { type: 'string' }, kind: { type: 'string' }, schedule: { type: 'string' }, nextRunAt: nullable('string'),
    running: {
      type: ['object', 'null'], additionalProperties: false, required: ['id', 'startedAt'],
      properties: { id: { type: 'integer' }, startedAt: { type: 'string' } },
    },
    retention: {
      type: 'object', additionalProperties: false, required: ['daily', 'weekly', 'monthly'],
      properties: { daily: { type: 'integer' }, weekly: { type: 'integer' }, monthly: { type: 'integer' } },
    },
    offsite: {
      type: 'object', additionalProperties: false, required: ['mode', 'note', 'lastStatus', 'lastAt', 'lastError'],
      properties: { mode: { type: 'string' }, note: { type: 'string' }, lastStatus: nullable('string'), lastAt: nullable('string'), lastError: nullable('string') },
    },
    lastRun: { ...backupRun, type: ['object', 'null'] },
    lastSuccessAt: nullable('string'),
    lastVerified: {
      type: ['object', 'null'], additionalProperties: false, required: ['id', 'at', 'ageMs', 'bytes', 'level'],
      properties: { id: { type: 'integer' }, at: { type: 'string' }, ageMs: { type: 'number' }, bytes: nullable('integer'), level: nullable('string') },
    },
    kept: {
      type: 'object', additionalProperties: false, required: ['count', 'bytes', 'verified'],
      properties: { count: { type: 'integer' }, bytes: { type: 'integer' }, verified: { type: 'integer' } },
    },
  },
} as const satisfies ObjectSchemaOf<BackupJobView>;

const overview = {
  type: 'object', additionalProperties: false, required: ['jobs', 'runs', 'notifications'],
  properties: { jobs: { type: 'array', items: backupJob }, runs: { type: 'array', items: backupRun }, notifications: { type: 'boolean' } },
} as const satisfies ObjectSchemaOf<BackupsOverview>;

interface RunStarted { id: number; job: string; status: 'running' }
const runAnswer = {
  type: 'object', additionalProperties: false, required: ['backup'], properties: { backup: backupRun },
} as const satisfies ObjectSchemaOf<{ backup: BackupRunView }>;
const runStartedAnswer = {
  type: 'object', additionalProperties: false, required: ['backup'],
  properties: {
    backup: {
      type: 'object', additionalProperties: false, required: ['id', 'job', 'status'],
      properties: { id: { type: 'integer' }, job: { type: 'string' }, status: { const: 'running' } },
    } satisfies ObjectSchemaOf<RunStarted>,
  },
} as const satisfies ObjectSchemaOf<{ backup: RunStarted }>;

const restoreAnswer = {
  type: 'object', additionalProperties: false, required: ['restore'],
  properties: {
    restore: {
      type: 'object', additionalProperties: false, required: ['restoreId', 'backupId', 'job', 'target', 'status', 'forced', 'durationMs'],
      properties: {
        restoreId: { type: 'integer' }, backupId: { type: 'integer' }, job: { type: 'string' }, target: { type: 'string' },
        status: { type: 'string' }, forced: { type: 'boolean' }, durationMs: { type: 'number' },
      },
    } satisfies ObjectSchemaOf<RestoreView>,
  },
} as const satisfies ObjectSchemaOf<{ restore: RestoreView }>;

/** GET /backups, POST /backups/:job/run, POST /backups/:id/restore: a schema and one service call each. */
export const backupRoutes: FastifyPluginAsync<BackupRouteOptions> = async (app, deps) => {
  app.get<{ Querystring: OverviewQuery; Reply: BackupsOverview }>('/backups', {
    schema: { querystring: overviewQuery, response: answers({ 200: overview }) },
  }, async (request) => deps.service.overview({
    ...(request.query.job ? { job: request.query.job } : {}),
    ...(request.query.limit ? { limit: Number(request.query.limit) } : {}),
    ...(deps.nextRun ? { nextRun: deps.nextRun } : {}),
  }));

  app.post<{ Params: JobParams; Querystring: NoQuery; Body: RunBody }>('/backups/:job/run', {
    schema: { params: jobParams, querystring: noQuery, body: runBody, response: answers({ 200: runAnswer, 202: runStartedAnswer }) },
  }, async (request, reply) => {
    const { job } = request.params;
    const run = deps.service.begin(job, { trigger: 'manual', actor: request.actor });
    if (request.body.wait === false) {
      run.done.catch((error: unknown) => deps.logger.error({ job, err: error }, 'backup run failed unexpectedly'));
      return reply.code(202).send({ backup: { id: run.id, job, status: 'running' } });
    }
    return { backup: runView(await run.done) };
  });

  app.post<{ Params: IdParams; Querystring: NoQuery; Body: RestoreBody; Reply: { restore: RestoreView } }>('/backups/:id/restore', {
    schema: { params: idParams, querystring: noQuery, body: restoreBody, response: answers({ 200: restoreAnswer }) },
  }, async (request) => {
    const { to, force = false } = request.body;
    // The audit row is written from the request body after the response: it must not hold the password.
    if (to !== undefined) request.body.to = redactUri(to);
    const restore = await deps.service.restore(Number(request.params.id), { ...(to !== undefined ? { to } : {}), force, actor: request.actor });
    return { restore };
  });
};
