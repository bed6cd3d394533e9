import type { DeploymentEvent, DeploymentResult } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { outcomeOfResult, type HostOutcome } from './plan.js';
import type { FleetMember } from './session.js';

/** How one host's part of a fleet command ended. */
export interface HostRunEnd {
  name: string;
  deploymentId: number | null;
  outcome: HostOutcome;
  result: DeploymentResult | null;
  /** A refusal, or the link lost while it ran (outcome in_doubt). */
  error: Error | null;
  /** Traffic reached the new slot at some point (the switching step succeeded). */
  switched: boolean;
}

/** One host's rollout as it runs: its end, when it is past its run-once work, and a way to abort it. */
export interface HostRun {
  name: string;
  done: Promise<HostRunEnd>;
  /** Resolves once the host starts its new slot (past the backup and release phase), or ends. */
  prepared: Promise<void>;
  /** Asks the agent to stop this rollout (at once, or as soon as the agent names the deployment). */
  abort(reason: string): void;
}

/** The agent's steps that come after the run-once work (backup, release phase). */
const PAST_RUN_ONCE = new Set(['starting', 'singletons', 'healthy', 'switching', 'watching']);

/**
 * Starts a deployment (or a switch) on one member and follows its NDJSON stream. An abort asked
 * before the agent named the deployment is sent as soon as it does; an abort of a deployment that
 * already ended is a no-op.
 */
export function runOnHost(member: FleetMember, app: string, path: string, body: unknown, onEvent: (name: string, event: DeploymentEvent) => void,
  options: { abortable?: boolean } = {}): HostRun {
  let deploymentId: number | null = null;
  let pendingAbort: string | null = null;
  let switched = false;
  let result: DeploymentResult | null = null;
  let markPrepared: () => void = () => undefined;
  const prepared = new Promise<void>((resolve) => { markPrepared = resolve; });
  // A run that may be aborted keeps a channel open for it: when another host fails, the abort is
  // one request on it, not a channel opened through sshd first (issue 15: fleet revert time).
  const abortChannel = options.abortable ? member.session.agent.standby() : null;
  const sendAbort = (reason: string) => {
    if (deploymentId === null || result !== null) return;
    const abortPath = `/apps/${app}/deployments/${deploymentId}/abort`;
    void (abortChannel ?? member.session.agent).json('POST', abortPath, { reason }).catch(() => undefined);
  };
  const done = (async (): Promise<HostRunEnd> => {
    try {
      await member.session.agent.stream('POST', path, body, (line) => {
        if (deploymentId === null) {
          deploymentId = line.deploymentId;
          if (pendingAbort !== null) sendAbort(pendingAbort);
        }
        if (line.type === 'result') {
          result = line;
          return undefined;
        }
        if (PAST_RUN_ONCE.has(line.step)) markPrepared();
        if (line.step === 'switching' && line.status === 'ok') switched = true;
        onEvent(member.name, line);
        return undefined;
      });
      if (!result) {
        throw new SlipwayError('agent_stream_cut', `the agent on ${member.name} ended the progress stream without a result: it could not record how the rollout ended, so the outcome is unknown here`, {
          hint: 'the agent\'s log says why (e.g. a full disk on that host); see deploy status (where traffic goes now is what it shows) and deploy history; the agent settles the deployment when it next starts',
        });
      }
      const r: DeploymentResult = result;
      return { name: member.name, deploymentId, outcome: outcomeOfResult(r), result: r, error: null, switched };
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      // Refused before it started (nothing changed), or lost while it ran (its agent finishes or swaps back alone).
      const inDoubt = error instanceof SlipwayError && error.kind === 'in_doubt';
      return { name: member.name, deploymentId, outcome: inDoubt ? 'in_doubt' : 'failed', result: null, error: err, switched };
    } finally {
      markPrepared();
      abortChannel?.close();
    }
  })();
  return {
    name: member.name,
    done,
    prepared,
    abort: (reason) => {
      if (pendingAbort !== null) return;
      pendingAbort = reason;
      sendAbort(reason);
    },
  };
}
