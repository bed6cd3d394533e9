import pino, { type Logger } from 'pino';

/** Paths whose values are secrets; pino replaces them before anything is written. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'token', '*.token',
  'password', '*.password',
  'uri', '*.uri',
  'env', '*.env',
];

export function createLogger(options: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    { level: options.level ?? process.env.SLIPWAY_LOG_LEVEL ?? 'info', redact: { paths: REDACT_PATHS, censor: '[REDACTED]' }, base: { service: 'slipway-agent' } },
    options.destination ?? pino.destination(1),
  );
}
