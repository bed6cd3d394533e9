import type { Logger } from 'pino';
import { errorMessage } from '../../contract/errors.js';

// Failure notifications to a Slack-compatible incoming webhook: a POST of {"text": "..."}.
// A notification that cannot be delivered is logged and never fails the backup it reports;
// the webhook URL carries a secret token, so it is never logged.

export interface Notice {
  job: string;
  app: string;
  /** failed | disk_full | unverified | skipped | corrupt | offsite_failed | retention_failed | restore_failed */
  event: string;
  backupId: number | null;
  message: string;
}

export type Notifier = (notice: Notice) => Promise<void>;

/** Pure: the Slack message body. */
export function slackPayload(notice: Notice, host: string): { text: string } {
  const id = notice.backupId === null ? '' : ` #${notice.backupId}`;
  return { text: `:rotating_light: Slipway backup ${notice.job}${id} (app ${notice.app}) on ${host}: ${notice.event.replace(/_/g, ' ')}. ${notice.message}` };
}

export function webhookNotifier(options: { url: string | undefined; timeoutMs: number; host: string; logger: Logger }): Notifier {
  return async (notice) => {
    options.logger.warn({ job: notice.job, backupId: notice.backupId, event: notice.event, message: notice.message }, 'backup problem');
    if (!options.url) return;
    try {
      const response = await fetch(options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(slackPayload(notice, options.host)),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      if (!response.ok) options.logger.error({ job: notice.job, status: response.status }, 'the backup notification webhook refused the message');
      await response.body?.cancel();
    } catch (error) {
      // The error text of fetch can quote the URL; only its class and cause code are logged.
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      options.logger.error({ job: notice.job, cause, kind: errorMessage(error).includes('abort') ? 'timeout' : 'network' }, 'the backup notification webhook could not be reached');
    }
  };
}
