import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../contract/errors.js';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Constant-time bearer-token check: both sides are hashed first so that tokens of different
 * lengths compare in the same time and never throw.
 */
export function tokenMatches(expected: string, authorizationHeader: string | undefined): boolean {
  // The auth scheme is case-insensitive (RFC 9110 §11.1); the token itself is compared exactly.
  const match = /^Bearer (\S+)$/i.exec(authorizationHeader ?? '');
  const presented = match?.[1] ?? '';
  return timingSafeEqual(digest(expected), digest(presented)) && presented.length > 0;
}

/** Reads the API token, creating a random one (0600) on first start. */
export async function loadOrCreateToken(file: string): Promise<string> {
  try {
    const stat = await fs.stat(file);
    // Group read is allowed: deploy setup gives the token's group (slipway-api) to the deploy SSH
    // user, which reads the token and nothing else of the agent's. Group write or any access by
    // others is refused.
    if ((stat.mode & 0o037) !== 0) {
      const what = (stat.mode & 0o007) !== 0 ? 'readable by other users' : 'writable by its group';
      throw new SlipwayError('token_file_insecure', `token file ${file} is ${what} (mode ${(stat.mode & 0o777).toString(8)})`, {
        hint: `run: chmod 640 ${file} (group read only for the token's group, as deploy setup makes it) or chmod 600 ${file}`,
      });
    }
    const token = (await fs.readFile(file, 'utf8')).trim();
    if (token.length < 32) {
      throw new SlipwayError('token_file_invalid', `token file ${file} holds a token shorter than 32 characters`, {
        hint: `delete it and restart the agent to generate a new one`,
      });
    }
    return token;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  // wx: never overwrite a token another agent process just wrote.
  await fs.writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}
