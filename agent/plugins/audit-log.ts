import type { Readable } from 'node:stream';
import { auditArgs } from '../audit.js';
import { appWide } from './app-wide.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The body passed its route's schema (set once validation is over; false until then). */
    bodyValidated: boolean;
  }
  interface FastifyContextConfig {
    /** What the audit keeps of this route's validated body instead of the body itself (e.g. key names, not secrets). */
    auditBody?: (body: unknown) => unknown;
  }
}

export interface AuditEntry { caller: string; action: string; args: Record<string, unknown>; result: string }

function isPlainBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe !== 'function';
}

/**
 * One audit row per request that may change something (every method but GET and HEAD), written
 * once the answer has gone out: who, what, with which arguments (secrets removed; of a body that
 * failed its schema only the field names), and the status answered.
 */
export const auditLog = appWide('slipway-audit-log', async (app, options: { record(entry: AuditEntry): void }) => {
  app.decorateRequest('bodyValidated', false);
  // Runs only for a request whose params, query and body all passed their schemas.
  app.addHook('preHandler', async (request) => {
    request.bodyValidated = request.routeOptions.schema?.body !== undefined;
  });
  app.addHook('onResponse', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    const body = isPlainBody(request.body) ? request.body : undefined;
    const summarize = request.routeOptions.config.auditBody;
    options.record({
      caller: request.actor,
      action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      args: auditArgs({
        params: request.params, query: request.query,
        body: body !== undefined && summarize && request.bodyValidated ? summarize(body) : body,
        validated: request.bodyValidated,
      }),
      result: String(reply.statusCode),
    });
  });
});
