import type { Slot } from '../../contract/names.js';
import type { Target } from '../environments.js';
import type { ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';
import { followDeployment } from './follow.js';
import { report } from './push.js';

/** `deploy switch <slot> [--reason TEXT]`: point nginx at an already-running slot, after the agent proves it healthy. */
export async function switchSlot(config: Target, slot: Slot, options: { detach: boolean; reason?: string }, out: Output): Promise<ExitCode> {
  const startedAt = Date.now();
  const session = await openAgentSession(config);
  try {
    const body = { slot, ...(config.env !== null ? { env: config.env } : {}), ...(options.reason ? { reason: options.reason } : {}) };
    const followed = await followDeployment(session.agent, `/apps/${config.app}/switch`, body, out, { detachAfterSwitch: options.detach });
    return report(followed, out, { uploadMs: null, uploadedBytes: 0, totalMs: Date.now() - startedAt });
  } finally {
    await session.close();
  }
}
