/**
 * Least privilege at start: the agent, and through its PM2 daemon every app, should run as the
 * dedicated user `deploy setup` creates, never as root (nginx test and reload go through a sudoers
 * rule limited to those two commands). Running as root still works, loudly.
 */
export const ROOT_WARNING = 'slipway-agent is running as ROOT: every app it starts runs as root too. '
  + 'Run it as the dedicated user (deploy setup makes one: slipway, with sudo for exactly `nginx -t` and `nginx -s reload`).';

/** Pure: the warning for this uid, or null. */
export function rootWarning(uid: number | undefined): string | null {
  return uid === 0 ? ROOT_WARNING : null;
}
