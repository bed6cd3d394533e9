import { randomBytes } from 'node:crypto';
import { chmod, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { fsyncDir, readOrNull } from '../../lib/durable.js';

/**
 * The secret that makes nginx send the release markers (X-Slipway-Release, -Slot, -Switch,
 * -Generation). They name the exact deployed commit, which ordinary clients must not learn, yet
 * every switch is proven by reading them back through nginx. So the rendered include adds them
 * only to a request carrying `X-Slipway-Probe: <secret>`, which only the agent's own probes send,
 * and strips that header before proxying (the apps never see it).
 *
 * On disk: <home>/nginx-probe.secret, 0600, 64 hex characters and a newline. Made at the agent's
 * first start; kept across restarts and upgrades, so includes rendered earlier keep matching.
 */
export const PROBE_HEADER = 'x-slipway-probe';
export const PROBE_SECRET_FILE = 'nginx-probe.secret';
/** Plain hex only: the value is written verbatim into the include. */
export const PROBE_SECRET_PATTERN = '^[0-9a-f]{32,128}$';

export function probeSecretPath(home: string): string {
  return path.join(home, PROBE_SECRET_FILE);
}

/** The request header of a probe through nginx. */
export function probeHeaders(secret: string): Record<string, string> {
  return { [PROBE_HEADER]: secret };
}

/** Reads the secret, or makes one (atomically, 0600) when there is none or it is malformed. */
export async function ensureProbeSecret(home: string): Promise<string> {
  const file = probeSecretPath(home);
  try {
    const existing = (await readOrNull(file))?.toString('utf8').trim();
    if (existing && new RegExp(PROBE_SECRET_PATTERN).test(existing)) {
      await chmod(file, 0o600);
      return existing;
    }
    const secret = randomBytes(32).toString('hex');
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(`${secret}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    await fsyncDir(home);
    return secret;
  } catch (error) {
    throw new SlipwayError('probe_secret_unavailable', `could not read or create the nginx probe secret ${file}: ${errorMessage(error)}`, {
      cause: error,
      hint: `check that the agent's home ${home} exists and is writable by the agent's user`,
    });
  }
}
