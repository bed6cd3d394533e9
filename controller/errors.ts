import { SlipwayError } from '../contract/errors.js';

/** Exit codes of `deploy`, documented in the README; scripts branch on them. */
export const EXIT = {
  ok: 0,
  /** Unexpected failure: a bug; the message says where. */
  internal: 1,
  /** Bad flags or a bad/missing deploy.config.json: fix the input and run again. */
  usage: 2,
  /** The rollout failed before traffic moved: the live slot is untouched. */
  failedBeforeSwitch: 3,
  /** Traffic moved, a check failed, and traffic was swapped back to the previous slot. */
  rolledBack: 4,
  /** SSH or the agent could not be reached, or the connection dropped: nothing was switched. */
  unreachable: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Codes of SlipwayErrors that mean "the user's input is wrong". */
const USAGE_CODES = new Set([
  'config_missing', 'config_invalid', 'usage', 'not_a_git_repo', 'git_ref_unknown', 'dirty_tree', 'slot_is_live',
  'include_invalid', 'manifest_conflict', 'backup_job_not_found',
]);
const TRANSPORT_CODES = new Set([
  'host_unknown', 'host_key_mismatch', 'ssh_auth_failed', 'ssh_connection_lost', 'ssh_connect_failed', 'ssh_timeout',
  'agent_unreachable', 'remote_command_failed', 'ssh_forward_failed',
]);

export function exitCodeFor(error: unknown): ExitCode {
  if (!(error instanceof SlipwayError)) return EXIT.internal;
  if (USAGE_CODES.has(error.code)) return EXIT.usage;
  if (TRANSPORT_CODES.has(error.code)) return EXIT.unreachable;
  return EXIT.failedBeforeSwitch;
}
