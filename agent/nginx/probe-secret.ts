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
 * On disk, in the agent's home (0700), both 0600 and owned by the agent's user:
 *   nginx-probe.secret   64 hex characters and a newline: the secret itself, what probes send.
 *   nginx-probe.conf     the same secret as one nginx directive (`set $slipway_probe_secret "…";`),
 *                        which every rendered include `include`s. nginx's master reads its config
 *                        as root, so the secret needs no file any other user can read: the
 *                        rendered includes (0644, in a directory nginx's workers search) and their
 *                        last good copies carry its path only. `deploy setup --check` checks its mode.
 * Made at the agent's first start; kept across restarts and upgrades (the snippet is rewritten
 * from the secret when it differs, its mode tightened at every start).
 */
export const PROBE_HEADER = 'x-slipway-probe';
export const PROBE_SECRET_FILE = 'nginx-probe.secret';
export const PROBE_SNIPPET_FILE = 'nginx-probe.conf';
/** The nginx variable the snippet sets; the include compares the probe header with it. */
export const PROBE_SECRET_VARIABLE = 'slipway_probe_secret';
/** Plain hex only: the value is written verbatim into the snippet. */
export const PROBE_SECRET_PATTERN = '^[0-9a-f]{32,128}$';

export function probeSecretPath(home: string): string {
  return path.join(home, PROBE_SECRET_FILE);
}

export function probeSnippetPath(home: string): string {
  return path.join(home, PROBE_SNIPPET_FILE);
}

/** The request header of a probe through nginx. */
export function probeHeaders(secret: string): Record<string, string> {
  return { [PROBE_HEADER]: secret };
}

/** Pure: the snippet's text for `secret` (already checked against PROBE_SECRET_PATTERN). */
export function probeSnippet(secret: string): string {
  if (!new RegExp(PROBE_SECRET_PATTERN).test(secret)) throw new Error('the probe secret must be plain hex');
  return `# Slipway's probe secret (agent/nginx/probe-secret.ts): included by every rendered include; 0600, read by nginx's master as root.\nset $${PROBE_SECRET_VARIABLE} "${secret}";\n`;
}

/** Writes `text` to `file` (0600) through a temp file and a rename, unless it already holds exactly that; then tightens its mode. */
async function writePrivate(dir: string, file: string, text: string): Promise<void> {
  if ((await readOrNull(file))?.toString('utf8') !== text) {
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(text);
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
    await fsyncDir(dir);
  }
  await chmod(file, 0o600);
}

/**
 * Reads the secret, or makes one when there is none or it is malformed; then makes sure the
 * snippet nginx includes holds it. Both files atomically, 0600.
 */
export async function ensureProbeSecret(home: string): Promise<{ secret: string; snippetFile: string }> {
  const file = probeSecretPath(home);
  const snippetFile = probeSnippetPath(home);
  try {
    const existing = (await readOrNull(file))?.toString('utf8').trim();
    const secret = existing && new RegExp(PROBE_SECRET_PATTERN).test(existing) ? existing : randomBytes(32).toString('hex');
    await writePrivate(home, file, `${secret}\n`);
    await writePrivate(home, snippetFile, probeSnippet(secret));
    return { secret, snippetFile };
  } catch (error) {
    throw new SlipwayError('probe_secret_unavailable', `could not read or create the nginx probe secret ${file} (and ${snippetFile}): ${errorMessage(error)}`, {
      cause: error,
      hint: `check that the agent's home ${home} exists and is writable by the agent's user`,
    });
  }
}
