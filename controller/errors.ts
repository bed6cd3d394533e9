import type { DeploymentResult } from '../contract/api.js';
import { SlipwayError, type ErrorKind } from '../contract/errors.js';

/** Exit codes of `deploy`, documented in the README's exit-code table; scripts branch on them. */
export const EXIT = {
  ok: 0,
  /** Unexpected failure: a bug; the message says where. */
  internal: 1,
  /** Bad flags or a bad/missing deploy.config.json: fix the input and run again. */
  usage: 2,
  /** Failed or refused before traffic moved: the live slot is untouched. */
  failedBeforeSwitch: 3,
  /** Traffic moved, a check failed, and traffic was swapped back to the previous slot. */
  rolledBack: 4,
  /** SSH or the agent could not be reached, or the link dropped or stalled outside a rollout: nothing was switched. */
  unreachable: 5,
  /** The link was lost while a rollout ran: it goes on on the host; its outcome is unknown here. */
  inDoubt: 6,
  /** Traffic moved, the new release failed, and traffic could not go back: it is live and failing. */
  failedAfterSwitch: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Each kind of error has its own exit code, so a script learns from the code alone what state the host is in. */
export const EXIT_CODE_OF_KIND: Record<ErrorKind, ExitCode> = {
  internal: EXIT.internal,
  usage: EXIT.usage,
  refused: EXIT.failedBeforeSwitch,
  rolled_back: EXIT.rolledBack,
  unreachable: EXIT.unreachable,
  in_doubt: EXIT.inDoubt,
  failed_after_switch: EXIT.failedAfterSwitch,
};

export function exitCodeFor(error: unknown): ExitCode {
  return error instanceof SlipwayError ? EXIT_CODE_OF_KIND[error.kind] : EXIT.internal;
}

/** The exit code of a rollout that reported its result: the agent's phase says where it stopped. */
export function exitCodeOfResult(result: DeploymentResult): ExitCode {
  if (result.outcome === 'succeeded') return EXIT.ok;
  if (result.outcome === 'rolled_back') return EXIT.rolledBack;
  return result.phase === 'after_switch' ? EXIT.failedAfterSwitch : EXIT.failedBeforeSwitch;
}
