import type { DeploymentEvent, DeploymentResult } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import type { AgentClient } from '../agent-client.js';
import type { Output } from '../output.js';

export type FollowOutcome = { kind: 'result'; result: DeploymentResult } | { kind: 'detached'; deploymentId: number; at: DeploymentEvent };

/**
 * Starts a rollout on the agent and renders its NDJSON progress until the result line, or, with
 * `detachAfterSwitch`, until traffic has moved (the agent keeps watching on its own).
 */
export async function followDeployment(
  agent: AgentClient, path: string, body: unknown, out: Output,
  options: { detachAfterSwitch?: boolean; onAccepted?: () => void } = {},
): Promise<FollowOutcome> {
  let outcome: FollowOutcome | undefined;
  let accepted = false;
  await agent.stream('POST', path, body, (line) => {
    // A refusal answers with an error instead of a stream: the first line means the rollout runs.
    if (!accepted) {
      accepted = true;
      options.onAccepted?.();
    }
    if (line.type === 'result') {
      outcome = { kind: 'result', result: line };
      return undefined;
    }
    out.event(line);
    if (options.detachAfterSwitch && line.step === 'switching' && line.status === 'ok') {
      outcome = { kind: 'detached', deploymentId: line.deploymentId, at: line };
      return 'stop';
    }
    return undefined;
  });
  if (!outcome) {
    // A stream the agent ended cleanly with no result: it could not record how the rollout ended.
    throw new SlipwayError('agent_stream_cut', 'the agent ended the progress stream without a result: it could not record how the rollout ended, so the outcome is unknown here', {
      hint: 'the agent\'s log says why (e.g. a full disk on the host); see deploy status (where traffic goes now is what it shows) and deploy history; the agent settles the deployment when it next starts',
    });
  }
  return outcome;
}
