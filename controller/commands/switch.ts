import type { Slot } from '../../contract/names.js';
import type { Target } from '../environments.js';
import type { ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';
import { followDeployment } from './follow.js';
import { report } from './push.js';

/** `deploy switch <slot>`: point nginx at an already-running slot, after the agent proves it healthy. */
export async function switchSlot(config: Target, slot: Slot, options: { detach: boolean }, out: Output): Promise<ExitCode> {
  const startedAt = Date.now();
  const session = await openAgentSession(config);
  try {
    const followed = await followDeployment(session.agent, `/apps/${config.app}/switch`, { slot, ...(config.env !== null ? { env: config.env } : {}) }, out, { detachAfterSwitch: options.detach });
    return report(followed, out, { uploadMs: null, uploadedBytes: 0, totalMs: Date.now() - startedAt });
  } finally {
    await session.close();
  }
}
