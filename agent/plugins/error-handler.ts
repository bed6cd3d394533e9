// The API's one error boundary. Every answer that is not a success has Slipway's shape
// {error, message, hint[, details]}: a SlipwayError keeps its own; the framework's refusals
// (validation, body size, bad URL, unknown route, malformed HTTP) are translated here; anything
// else is a bug, logged in full and answered without details.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SlipwayError, type ErrorBody } from '../../contract/errors.js';
import { formatAjvErrors } from '../../lib/validate.js';
import { isDiskFull } from '../../lib/durable.js';
import { appWide } from './app-wide.js';

export interface ErrorReply {
  status: number;
  body: ErrorBody;
  /** A failure of the agent itself: logged with its stack. */
  internal: boolean;
}

export interface ErrorContext {
  /** SLIPWAY_HOME, named when a write fails on a full disk. */
  home: string;
  bodyLimitBytes: number;
  maxParamLength: number;
}

const refusal = (status: number, error: string, message: string, hint: string): ErrorReply => ({ status, body: { error, message, hint }, internal: false });

/** Framework error codes and what they mean to a caller. */
function frameworkRefusal(error: FastifyError, context: ErrorContext): ErrorReply | null {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return refusal(413, 'body_too_large', `request body is larger than the ${context.bodyLimitBytes / 1024} KiB allowed`, 'send a smaller body');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return refusal(415, 'unsupported_media_type', 'the request\'s Content-Type is not one this route takes', 'send the body as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return refusal(400, 'invalid_json', 'body is not valid JSON', 'send a JSON object');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return refusal(400, 'invalid_length', 'the body\'s length does not match its Content-Length', 'send the body with a correct Content-Length');
    case 'FST_ERR_BAD_URL':
      return refusal(400, 'bad_url', 'the URL has a malformed percent-escape (% not followed by two hex digits, or bytes that are not UTF-8)', 'percent-encode the path: app names and release ids need no escaping');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return refusal(414, 'path_too_long', `a path segment of the URL is longer than the ${context.maxParamLength} characters any name or id can have`, 'check the app name, release id or job name in the URL');
    default:
      return null;
  }
}

/** A state write (SQLite) or a file write that failed on a full disk. */
function isStateDiskFull(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'SQLITE_FULL' || isDiskFull(error);
}

/** What the API answers for an error thrown while handling a request. Pure. */
export function errorReply(error: unknown, context: ErrorContext): ErrorReply {
  if (error instanceof SlipwayError) return { status: error.status, body: error.toBody(), internal: error.status >= 500 };
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const details = formatAjvErrors(fastifyError.validation as never, fastifyError.validationContext);
    return { status: 400, body: { error: 'invalid_request', message: `invalid request: ${details.join('; ')}`, details, hint: 'fix the fields named above' }, internal: false };
  }
  const known = frameworkRefusal(fastifyError, context);
  if (known) return known;
  if (isStateDiskFull(error)) {
    // A state write failed (a failed SQLite statement rolls back), so the request was not carried out.
    return {
      status: 507, internal: true,
      body: {
        error: 'disk_full', message: `the disk holding the agent's home ${context.home} is full (${fastifyError.message}); the request was not carried out`,
        hint: 'free space on that filesystem (old releases: deploy releases cleanup; logs; backups), then run the command again',
      },
    };
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return refusal(fastifyError.statusCode, 'bad_request', `the request was refused: ${fastifyError.message}`, 'check the request against the agent API (deploy --help)');
  }
  return { status: 500, internal: true, body: { error: 'internal_error', message: 'the agent hit an internal error', hint: 'see the agent log for details' } };
}

function send(reply: FastifyReply, request: FastifyRequest, error: unknown, answer: ErrorReply): FastifyReply {
  if (answer.internal) request.log.error({ err: error }, answer.body.message);
  return reply.code(answer.status).send(answer.body);
}

/** The `frameworkErrors` option: refusals fastify makes before a route is chosen (bad URL, long segment). */
export function frameworkErrors(context: ErrorContext) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    send(reply, request, error, errorReply(error, context));
  };
}

/** What a connection gets when its bytes are not an HTTP request Node can parse. */
export function clientErrorReply(error: NodeJS.ErrnoException): ErrorReply {
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    return refusal(431, 'headers_too_large', 'the request line and headers are larger than the 16 KiB allowed', 'send a shorter URL and fewer or smaller headers');
  }
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return refusal(408, 'request_timeout', 'the request did not arrive in time', 'send the whole request without pauses');
  }
  return refusal(400, 'bad_http', 'the request is not well-formed HTTP/1.1', 'send a well-formed HTTP/1.1 request');
}

/** The `clientErrorHandler` option: Node's parser refused the bytes; answer in Slipway's shape and hang up. */
export function clientErrorHandler(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const answer = clientErrorReply(error);
  // Not the error itself: Node attaches the raw bytes received (rawPacket), headers and token included.
  this.log.debug({ code: error.code }, 'malformed HTTP request refused');
  if (socket.writable) {
    const body = JSON.stringify(answer.body);
    socket.write(`HTTP/1.1 ${answer.status} ${http.STATUS_CODES[answer.status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

/** The error handler and the unknown-route answer, for every route. */
export const errorHandler = appWide('slipway-error-handler', async (app, context: ErrorContext) => {
  app.setErrorHandler((error, request, reply) => send(reply, request, error, errorReply(error, context)));
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    return reply.code(404).send({
      error: 'not_found', message: `no route ${request.method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`, hint: 'check the agent API version',
    } satisfies ErrorBody);
  });
});
