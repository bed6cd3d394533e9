import type { FastifyPluginAsync } from 'fastify';
import type { NotificationsStatus, WebhookStatus } from '../../contract/api.js';
import type { Outbox } from '../notify/outbox.js';
import { answers, noQuery, nullable, type NoQuery, type ObjectSchemaOf } from './schemas.js';

const retrying = {
  type: ['object', 'null'], additionalProperties: false, required: ['event', 'attempts', 'lastError', 'nextAttemptAt'],
  properties: { event: { type: 'string' }, attempts: { type: 'integer' }, lastError: nullable('string'), nextAttemptAt: { type: 'string' } },
} as const satisfies ObjectSchemaOf<NonNullable<WebhookStatus['retrying']>>;

const lastFailure = {
  type: ['object', 'null'], additionalProperties: false, required: ['event', 'at', 'error'],
  properties: { event: { type: 'string' }, at: { type: 'string' }, error: nullable('string') },
} as const satisfies ObjectSchemaOf<NonNullable<WebhookStatus['lastFailure']>>;

const webhookStatus = {
  type: 'object', additionalProperties: false,
  required: ['webhook', 'pending', 'delivered', 'failed', 'retrying', 'lastDeliveredAt', 'lastFailure'],
  properties: {
    webhook: { type: 'string' }, pending: { type: 'integer' }, delivered: { type: 'integer' }, failed: { type: 'integer' },
    retrying, lastDeliveredAt: nullable('string'), lastFailure,
  },
} as const satisfies ObjectSchemaOf<WebhookStatus>;

const notificationsStatus = {
  type: 'object', additionalProperties: false, required: ['webhooks'],
  properties: { webhooks: { type: 'array', items: webhookStatus } },
} as const satisfies ObjectSchemaOf<NotificationsStatus>;

/** GET /notifications: delivery state per webhook (never its URL). */
export const notificationRoutes: FastifyPluginAsync<{ outbox: Outbox }> = async (app, options) => {
  app.get<{ Querystring: NoQuery; Reply: NotificationsStatus }>('/notifications', {
    schema: { querystring: noQuery, response: answers({ 200: notificationsStatus }) },
  }, async () => ({ webhooks: options.outbox.status() }));
};
