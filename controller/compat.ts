import { SlipwayError } from '../contract/errors.js';

// The version check on connect: the controller refuses an agent that speaks another API version,
// before asking it anything, instead of failing later on a request the agent does not understand.

export interface Side { version: string; apiVersion: number }

/** Pure: null when the pair works together, else the error naming both versions and the fix. */
export function incompatibility(controller: Side, agent: Side, host: string): SlipwayError | null {
  if (controller.apiVersion === agent.apiVersion) return null;
  const older = agent.apiVersion < controller.apiVersion ? 'agent' : 'controller';
  return new SlipwayError('agent_incompatible',
    `this controller (slipway ${controller.version}, API ${controller.apiVersion}) and the agent on ${host} (slipway ${agent.version}, API ${agent.apiVersion}) speak different API versions: nothing was asked of the agent`, {
      hint: older === 'agent'
        ? `upgrade the agent on ${host} to slipway ${controller.version}: pack it here (bash scripts/pack-cli, or npm pack), install it there and restart the agent (README "Using it on a server"); or run a controller of version ${agent.version}`
        : `upgrade this controller to slipway ${agent.version} (npm install -g the package of that version), or run the agent of version ${controller.version}`,
      details: [`controller: ${controller.version} (API ${controller.apiVersion})`, `agent: ${agent.version} (API ${agent.apiVersion})`],
    });
}
