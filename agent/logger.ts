import pino, { type Logger } from 'pino';
import { loggedUrl } from './audit.js';

/** Paths whose values are secrets; pino replaces them before anything is written. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'token', '*.token',
  'password', '*.password',
  'uri', '*.uri',
  'env', '*.env',
  // The relay's pre-shared key (contract/relay.ts), wherever a request body is logged.
  'key', '*.key', 'req.body.key',
  // The values of PATCH /apps/:app/env (deploy env set), wherever a request body is logged.
  'set', '*.set', 'req.body.set', 'body.set',
];

interface LoggedRequest { method?: string; url?: string; host?: string; ip?: string; socket?: { remotePort?: number } }

/** Fastify's request line, minus query values: a token pasted into a query string stays out of the log. */
function serializeRequest(req: LoggedRequest) {
  return {
    method: req.method, url: typeof req.url === 'string' ? loggedUrl(req.url) : undefined,
    host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort,
  };
}

export function createLogger(options: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.SLIPWAY_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      serializers: { req: serializeRequest },
      base: { service: 'slipway-agent' },
    },
    options.destination ?? pino.destination(1),
  );
}
