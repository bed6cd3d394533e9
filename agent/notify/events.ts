// What a deploy notification says. Pure: the event's fields in, the two wire bodies out (a
// Slack-compatible {"text"} and a generic JSON object). Only fields listed here leave the box:
// no env values, tokens, DB URIs or webhook URLs are ever part of an event.

export const NOTIFY_EVENTS = [
  'rollout_started', 'rollout_succeeded', 'rollout_failed', 'swapped_back', 'rolled_back',
  'failed_after_switch', 'promotion_refused', 'promotion_forced', 'lock_overridden', 'backup_failed',
  'tls_failed', 'tls_installed',
] as const;
export type NotifyEventName = (typeof NOTIFY_EVENTS)[number];

export interface NotifyEvent {
  event: NotifyEventName;
  app: string;
  /** The environment (deploy --env) of the deployment, or the app's last one; null without environments. */
  env: string | null;
  /** The box's host name. */
  host: string;
  at: string;
  deploymentId: number | null;
  /** deploy | switch | rollback | backup | lock | promote | tls */
  kind: string;
  releaseId: string | null;
  sha: string | null;
  tag: string | null;
  branch: string | null;
  /** Who asked (the controller's user@host, or "agent" for scheduled work). */
  actor: string;
  outcome: string | null;
  reason: string | null;
  stepDurationsMs: Record<string, number>;
  /** The app's public URL, where it has one. */
  url: string | null;
}

const ICONS: Record<NotifyEventName, string> = {
  rollout_started: ':rocket:',
  rollout_succeeded: ':white_check_mark:',
  rollout_failed: ':x:',
  swapped_back: ':leftwards_arrow_with_hook:',
  rolled_back: ':rewind:',
  failed_after_switch: ':rotating_light:',
  promotion_refused: ':no_entry:',
  promotion_forced: ':warning:',
  lock_overridden: ':unlock:',
  backup_failed: ':rotating_light:',
  tls_failed: ':closed_lock_with_key:',
  tls_installed: ':lock:',
};

const SUMMARIES: Record<NotifyEventName, string> = {
  rollout_started: 'started',
  rollout_succeeded: 'succeeded',
  rollout_failed: 'failed before the switch (traffic untouched)',
  swapped_back: 'swapped back by the watch window (traffic on the previous release)',
  rolled_back: 'rolled back by hand',
  failed_after_switch: 'failed after the switch and could not go back',
  promotion_refused: 'promotion refused',
  promotion_forced: 'promotion forced past the gate',
  lock_overridden: 'deploy lock overridden',
  backup_failed: 'backup failed',
  tls_failed: 'TLS certificate run failed (the served certificate and config are unchanged)',
  tls_installed: 'TLS certificate installed',
};

function totalMs(durations: Record<string, number>): number {
  return Object.values(durations).reduce((sum, ms) => sum + ms, 0);
}

/** Pure: the one-line Slack text. */
export function slackBody(e: NotifyEvent): { text: string } {
  const release = e.releaseId ? ` ${e.releaseId}${e.tag ? ` (${e.tag})` : ''}` : '';
  const took = Object.keys(e.stepDurationsMs).length ? `, ${(totalMs(e.stepDurationsMs) / 1000).toFixed(1)} s` : '';
  const why = e.reason ? `: ${e.reason}` : '';
  const where = e.url ? ` ${e.url}` : '';
  return { text: `${ICONS[e.event]} ${e.app}${e.env ? ` [${e.env}]` : ''} ${e.kind}${release} on ${e.host} ${SUMMARIES[e.event]} (by ${e.actor}${took})${why}${where}` };
}

/** Pure: the generic JSON body, every field of the event. */
export function jsonBody(e: NotifyEvent): NotifyEvent & { summary: string } {
  return { ...e, summary: SUMMARIES[e.event] };
}

/** The event a finished deployment reports, from its kind and outcome. */
export function endedEventName(kind: string, outcome: string, phase: string | null): NotifyEventName {
  if (outcome === 'rolled_back') return 'swapped_back';
  if (outcome === 'failed') return phase === 'after_switch' ? 'failed_after_switch' : 'rollout_failed';
  return kind === 'rollback' ? 'rolled_back' : 'rollout_succeeded';
}
