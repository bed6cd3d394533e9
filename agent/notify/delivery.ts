import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { SlipwayError } from '../../contract/errors.js';
import type { NotificationsConfig, WebhookConfig } from './config.js';
import type { Outbox, OutboxRow } from './outbox.js';

// Delivers the outbox: the oldest pending event of each webhook, one POST at a time per webhook,
// retried with backoff (outbox.ts) on a refusal, a timeout or a dead receiver. Never blocks or
// fails what produced the event. Errors are recorded by class (HTTP status, timeout, refused):
// never with the URL, which carries the receiver's secret.

/** Reads a webhook's URL; a urlFile must be a regular file only its owner can read (0600 or stricter). */
export function webhookUrl(name: string, hook: WebhookConfig): string {
  if (hook.url) return hook.url;
  const file = hook.urlFile!;
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (error) {
    throw new SlipwayError('config_invalid', `notifications/webhooks/${name}/urlFile: cannot read ${file} (${(error as NodeJS.ErrnoException).code})`, {
      hint: `create it with the webhook URL on one line: install -m 600 /dev/null ${file}, then write the URL into it`,
    });
  }
  if ((mode & 0o077) !== 0) {
    throw new SlipwayError('config_invalid', `notifications/webhooks/${name}/urlFile: ${file} is readable by others (mode ${(mode & 0o777).toString(8)})`, {
      hint: `chmod 600 ${file}`,
    });
  }
  const url = readFileSync(file, 'utf8').trim();
  if (!/^https?:\/\/\S+$/.test(url)) {
    throw new SlipwayError('config_invalid', `notifications/webhooks/${name}/urlFile: ${file} does not hold an http(s) URL`, { hint: 'write only the URL into the file' });
  }
  return url;
}

/** An error of fetch as a short class, never its text (which can quote the URL). */
export function failureClass(error: unknown): string {
  const name = (error as Error).name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  const code = (error as { cause?: { code?: string } }).cause?.code;
  return code ? `network error ${code}` : `network error ${name}`;
}

export class NotificationDelivery {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly deps: { outbox: Outbox; config: NotificationsConfig; logger: Logger }) {}

  /** Checks every webhook's URL source at start, so a bad urlFile is found before the first event. */
  static checkConfig(config: NotificationsConfig): void {
    for (const [name, hook] of Object.entries(config.webhooks)) webhookUrl(name, hook);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Delivers what is due now (after an enqueue, so events go out without waiting for the poll). */
  kick(): void {
    if (!this.stopped) this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass over the due events; exposed for tests. */
  async deliverDue(): Promise<void> {
    const due = this.deps.outbox.due();
    await Promise.all(due.map((row) => this.deliver(row)));
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), delayMs);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    this.timer = null;
    if (this.running) {
      await this.running;
      if (this.stopped) return;
    }
    this.running = this.deliverDue().catch((error: unknown) => {
      this.deps.logger.error({ err: error }, 'notification delivery pass failed');
    });
    await this.running;
    this.running = null;
    if (this.stopped) return;
    const next = this.deps.outbox.nextDueAt();
    const wait = next === null ? this.deps.config.pollMs : Math.max(0, Math.min(this.deps.config.pollMs, Date.parse(next) - Date.now()));
    this.schedule(wait);
  }

  private async deliver(row: OutboxRow): Promise<void> {
    const hook = this.deps.config.webhooks[row.webhook]!;
    let error: string | null = null;
    try {
      const response = await fetch(webhookUrl(row.webhook, hook), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'slipway-agent' },
        body: row.body,
        signal: AbortSignal.timeout(this.deps.config.timeoutMs),
      });
      await response.body?.cancel();
      if (!response.ok) error = `HTTP ${response.status}`;
    } catch (caught) {
      error = caught instanceof SlipwayError ? caught.message : failureClass(caught);
    }
    if (error === null) {
      this.deps.outbox.delivered(row.id);
      return;
    }
    const next = this.deps.outbox.attemptFailed(row, error);
    const log = { webhook: row.webhook, event: row.event, outboxId: row.id, attempts: row.attempts + 1, error };
    if (next === 'failed') this.deps.logger.error(log, 'notification given up after its last attempt');
    else this.deps.logger.warn(log, 'notification not delivered; will retry');
  }
}
