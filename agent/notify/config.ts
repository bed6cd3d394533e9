import { NOTIFY_EVENTS, type NotifyEventName } from './events.js';
import { APP_NAME_PATTERN } from '../../contract/names.js';
import { ENV_NAME_PATTERN } from '../../contract/api.js';

// agent.json "notifications": deploy and backup events to webhooks, through the outbox.
// A webhook URL carries a secret: give it in a file (urlFile, mode 0600) or inline (url) in an
// agent.json that is itself 0600; it is never logged, stored in the outbox, or returned by the API.

export interface WebhookConfig {
  url?: string;
  urlFile?: string;
  format: 'slack' | 'json';
  /** Only these apps' events (default: every app). */
  apps?: string[];
  /** Only events of deployments in these environments (deploy.config.json --env names; default: any, and events without one). */
  envs?: string[];
  /** Only these events (default: all). */
  events?: NotifyEventName[];
  /** Overrides the section's maxAttempts for this webhook. */
  maxAttempts?: number;
}

export interface NotificationsConfig {
  webhooks: Record<string, WebhookConfig>;
  timeoutMs: number;
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** How often the delivery loop looks for due events when nothing woke it. */
  pollMs: number;
}

export const NO_NOTIFICATIONS: NotificationsConfig = { webhooks: {}, timeoutMs: 5_000, maxAttempts: 12, baseDelayMs: 2_000, maxDelayMs: 600_000, pollMs: 1_000 };

export const notificationsSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    webhooks: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[a-z][a-z0-9-]{0,39}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          url: { type: 'string', pattern: '^https?://[^\\s]+$' },
          urlFile: { type: 'string', pattern: '^/[^\\u0000]*$' },
          format: { enum: ['slack', 'json'], default: 'json' },
          apps: { type: 'array', minItems: 1, items: { type: 'string', pattern: APP_NAME_PATTERN } },
          envs: { type: 'array', minItems: 1, items: { type: 'string', pattern: ENV_NAME_PATTERN } },
          events: { type: 'array', minItems: 1, items: { enum: NOTIFY_EVENTS } },
          maxAttempts: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
    },
    timeoutMs: { type: 'integer', minimum: 100, maximum: 60_000, default: NO_NOTIFICATIONS.timeoutMs },
    maxAttempts: { type: 'integer', minimum: 1, maximum: 1000, default: NO_NOTIFICATIONS.maxAttempts },
    baseDelayMs: { type: 'integer', minimum: 10, maximum: 3_600_000, default: NO_NOTIFICATIONS.baseDelayMs },
    maxDelayMs: { type: 'integer', minimum: 10, maximum: 86_400_000, default: NO_NOTIFICATIONS.maxDelayMs },
    pollMs: { type: 'integer', minimum: 10, maximum: 60_000, default: NO_NOTIFICATIONS.pollMs },
  },
} as const;

/** Problems the schema cannot see: exactly one of url/urlFile. */
export function notificationProblems(config: NotificationsConfig): string[] {
  const problems: string[] = [];
  for (const [name, hook] of Object.entries(config.webhooks)) {
    if ((hook.url === undefined) === (hook.urlFile === undefined)) problems.push(`notifications/webhooks/${name}: give exactly one of "url" or "urlFile"`);
  }
  return problems;
}
