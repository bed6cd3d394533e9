import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { runView } from '../backups/views.js';
import { redactUri } from '../backups/commands.js';
import { JOB_NAME_PATTERN } from '../backups/config.js';
import type { BackupService } from '../backups/service.js';
import { ACTOR_HEADER, ACTOR_PATTERN } from '../../contract/api.js';

export interface BackupRouteDeps {
  service: BackupService;
  /** When the scheduler next fires each job (for GET /backups). */
  nextRun?: (job: string) => Date | null;
  logger: Logger;
}

const jobParams = {
  type: 'object', additionalProperties: false, required: ['job'],
  properties: { job: { type: 'string', pattern: JOB_NAME_PATTERN } },
} as const;
const idParams = {
  type: 'object', additionalProperties: false, required: ['id'],
  properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,11}$' } },
} as const;

function actorOf(request: FastifyRequest): string {
  const raw = request.headers[ACTOR_HEADER];
  return typeof raw === 'string' && new RegExp(ACTOR_PATTERN).test(raw) ? raw : 'unknown@api';
}

/** GET /backups, POST /backups/:job/run, POST /backups/:id/restore: a schema and one service call each. */
export function registerBackupRoutes(app: FastifyInstance, deps: BackupRouteDeps): void {
  app.get('/backups', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: { job: { type: 'string', pattern: JOB_NAME_PATTERN }, limit: { type: 'string', pattern: '^[0-9]{1,4}$' } },
      },
    },
  }, async (request) => {
    const query = request.query as { job?: string; limit?: string };
    return deps.service.overview({
      ...(query.job ? { job: query.job } : {}),
      ...(query.limit ? { limit: Number(query.limit) } : {}),
      ...(deps.nextRun ? { nextRun: deps.nextRun } : {}),
    });
  });

  // Waits for the run by default (the CLI shows its outcome); {"wait": false} answers 202 with its id.
  app.post('/backups/:job/run', {
    schema: {
      params: jobParams,
      body: { type: 'object', additionalProperties: false, properties: { wait: { type: 'boolean' } } },
    },
  }, async (request, reply) => {
    const { job } = request.params as { job: string };
    const { wait = true } = (request.body ?? {}) as { wait?: boolean };
    const run = deps.service.begin(job, { trigger: 'manual', actor: actorOf(request) });
    if (!wait) {
      run.done.catch((error: unknown) => deps.logger.error({ job, err: error }, 'backup run failed unexpectedly'));
      return reply.code(202).send({ backup: { id: run.id, job, status: 'running' } });
    }
    return { backup: runView(await run.done) };
  });

  app.post('/backups/:id/restore', {
    schema: {
      params: idParams,
      body: {
        type: 'object', additionalProperties: false, required: ['confirm'],
        properties: { confirm: { const: true }, force: { type: 'boolean' }, to: { type: 'string', minLength: 1, maxLength: 4096 } },
      },
    },
  }, async (request) => {
    const { id } = request.params as { id: string };
    const body = request.body as { confirm: true; force?: boolean; to?: string };
    const to = body.to;
    // The audit row is written from the request body after the response: it must not hold the password.
    if (to !== undefined) body.to = redactUri(to);
    const restore = await deps.service.restore(Number(id), {
      ...(to !== undefined ? { to } : {}), force: body.force ?? false, actor: actorOf(request),
    });
    return { restore };
  });
}
