import type { DeploymentResult } from '../../agent/shared/api.js';
import { SlipwayError } from '../../agent/shared/errors.js';
import type { AgentClient } from '../agent-client.js';
import type { Output } from '../output.js';

/** Starts a rollout on the agent and renders its NDJSON progress until the result line. */
export async function followDeployment(agent: AgentClient, path: string, body: unknown, out: Output): Promise<DeploymentResult> {
  let result: DeploymentResult | undefined;
  await agent.stream('POST', path, body, (line) => {
    if (line.type === 'event') out.event(line);
    else result = line;
  });
  if (!result) {
    throw new SlipwayError('agent_stream_cut', 'the agent closed the progress stream without a result', {
      hint: 'the rollout may still be running on the host; check it with: deploy status',
    });
  }
  return result;
}
