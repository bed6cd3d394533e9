import type { Target } from '../environments.js';
import type { ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';
import { followDeployment } from './follow.js';
import { report, targetFields } from './push.js';

/** `deploy rollback [--to RELEASE] [--force] [--reason TEXT] [--no-wait]`: back one release, or to the one named. */
export async function rollback(config: Target, options: { to?: string; force: boolean; reason?: string; detach: boolean }, out: Output): Promise<ExitCode> {
  const startedAt = Date.now();
  const session = await openAgentSession(config);
  try {
    const body = { ...targetFields(config, null), force: options.force, ...(options.to ? { to: options.to } : {}), ...(options.reason ? { reason: options.reason } : {}) };
    const followed = await followDeployment(session.agent, `/apps/${config.app}/rollback`, body, out, { detachAfterSwitch: options.detach });
    return report(followed, out, { uploadMs: null, uploadedBytes: 0, totalMs: Date.now() - startedAt });
  } finally {
    await session.close();
  }
}
