import type { WebhookStatus } from '../../contract/api.js';
import type { Db } from '../state/db.js';
import { jsonBody, slackBody, type NotifyEvent } from './events.js';
import type { NotificationsConfig } from './config.js';

// The outbox: events are rows in SQLite, written in the same transaction as what they report
// (a rollout's outcome), so an agent crash can lose neither; delivery (delivery.ts) reads them
// back in order per webhook. Rows keep the rendered body, never the webhook's URL.

export interface OutboxRow {
  id: number; webhook: string; app: string; event: string; body: string; state: 'pending' | 'delivered' | 'failed';
  attempts: number; nextAttemptAt: string; lastError: string | null; createdAt: string; deliveredAt: string | null;
}


const COLUMNS = `id, webhook, app, event, body, state, attempts, next_attempt_at AS nextAttemptAt, last_error AS lastError,
  created_at AS createdAt, delivered_at AS deliveredAt`;

export class Outbox {
  constructor(private readonly db: Db, private readonly config: NotificationsConfig, private readonly now: () => Date = () => new Date()) {}

  /** Queues `event` for every webhook that wants it; returns how many rows were written. */
  enqueue(event: NotifyEvent): number {
    const at = this.now().toISOString();
    let rows = 0;
    for (const [name, hook] of Object.entries(this.config.webhooks)) {
      if (hook.apps && !hook.apps.includes(event.app)) continue;
      if (hook.envs && (event.env === null || !hook.envs.includes(event.env))) continue;
      if (hook.events && !hook.events.includes(event.event)) continue;
      const body = JSON.stringify(hook.format === 'slack' ? slackBody(event) : jsonBody(event));
      this.db.prepare(`INSERT INTO outbox (webhook, app, event, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(name, event.app, event.event, body, at, at);
      rows++;
    }
    return rows;
  }

  /** The oldest pending row of each webhook whose attempt is due: later events wait their turn. */
  due(): OutboxRow[] {
    const now = this.now().toISOString();
    const heads = this.db.prepare(`SELECT ${COLUMNS} FROM outbox WHERE id IN (SELECT MIN(id) FROM outbox WHERE state = 'pending' GROUP BY webhook)`).all() as OutboxRow[];
    return heads.filter((row) => row.nextAttemptAt <= now && this.config.webhooks[row.webhook] !== undefined);
  }

  /** When the next attempt of any pending row is due, or null when nothing waits. */
  nextDueAt(): string | null {
    const row = this.db.prepare(`SELECT MIN(next_attempt_at) AS at FROM outbox WHERE state = 'pending'`).get() as { at: string | null };
    return row.at;
  }

  delivered(id: number): void {
    this.db.prepare(`UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL WHERE id = ?`)
      .run(this.now().toISOString(), id);
  }

  /** One failed attempt: retried after an exponential backoff, given up after maxAttempts. */
  attemptFailed(row: OutboxRow, error: string): 'retry' | 'failed' {
    const attempts = row.attempts + 1;
    if (attempts >= (this.config.webhooks[row.webhook]?.maxAttempts ?? this.config.maxAttempts)) {
      this.db.prepare(`UPDATE outbox SET state = 'failed', attempts = ?, last_error = ? WHERE id = ?`).run(attempts, error, row.id);
      return 'failed';
    }
    const next = new Date(this.now().getTime() + backoffMs(attempts, this.config.baseDelayMs, this.config.maxDelayMs)).toISOString();
    this.db.prepare(`UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?`).run(attempts, error, next, row.id);
    return 'retry';
  }

  rows(webhook?: string): OutboxRow[] {
    return webhook
      ? this.db.prepare(`SELECT ${COLUMNS} FROM outbox WHERE webhook = ? ORDER BY id`).all(webhook) as OutboxRow[]
      : this.db.prepare(`SELECT ${COLUMNS} FROM outbox ORDER BY id`).all() as OutboxRow[];
  }

  /** Per configured webhook: what is waiting, delivered, given up, and why. */
  status(): WebhookStatus[] {
    return Object.keys(this.config.webhooks).map((webhook) => {
      const counts = this.db.prepare(`SELECT state, COUNT(*) AS n FROM outbox WHERE webhook = ? GROUP BY state`).all(webhook) as { state: string; n: number }[];
      const count = (state: string) => counts.find((c) => c.state === state)?.n ?? 0;
      const head = this.db.prepare(`SELECT ${COLUMNS} FROM outbox WHERE webhook = ? AND state = 'pending' ORDER BY id LIMIT 1`).get(webhook) as OutboxRow | undefined;
      const delivered = this.db.prepare(`SELECT MAX(delivered_at) AS at FROM outbox WHERE webhook = ?`).get(webhook) as { at: string | null };
      const failure = this.db.prepare(`SELECT event, created_at AS at, last_error AS error FROM outbox WHERE webhook = ? AND state = 'failed' ORDER BY id DESC LIMIT 1`)
        .get(webhook) as { event: string; at: string; error: string | null } | undefined;
      return {
        webhook, pending: count('pending'), delivered: count('delivered'), failed: count('failed'),
        retrying: head && head.attempts > 0 ? { event: head.event, attempts: head.attempts, lastError: head.lastError, nextAttemptAt: head.nextAttemptAt } : null,
        lastDeliveredAt: delivered.at,
        lastFailure: failure ?? null,
      };
    });
  }
}

/** Pure: base·2^(attempt−1), at most max. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}
