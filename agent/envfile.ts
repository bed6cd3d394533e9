import { promises as fs } from 'node:fs';
import { SlipwayError } from '../contract/errors.js';
import { parseEnvFile } from '../contract/env-file.js';

// The parser is shared with the controller (deploy env set --stdin): contract/env-file.ts.
export { parseEnvFile, type EnvParse } from '../contract/env-file.js';

/** Names of required keys missing from env; pure. */
export function missingEnvKeys(env: Record<string, string>, required: readonly string[]): string[] {
  return required.filter((key) => !(key in env) || env[key] === '');
}

/** The file's text and when it was last written; null when there is none. Refused when others may read it. */
export async function readEnvText(file: string, app: string): Promise<{ text: string; mtime: Date } | null> {
  try {
    const stat = await fs.stat(file);
    if ((stat.mode & 0o077) !== 0) {
      throw new SlipwayError('env_file_insecure', `env file of ${app} (${file}) is readable by other users (mode ${(stat.mode & 0o777).toString(8)})`, {
        hint: `run: chmod 600 ${file}`, status: 409,
      });
    }
    return { text: await fs.readFile(file, 'utf8'), mtime: stat.mtime };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The file's variables, or env_file_invalid naming the bad lines by number (never their text). */
export function parseAppEnv(text: string, file: string, app: string): Record<string, string> {
  const parsed = parseEnvFile(text);
  if (!parsed.ok) {
    throw new SlipwayError('env_file_invalid', `env file of ${app} (${file}) cannot be parsed`, {
      details: parsed.errors, hint: 'each line must be KEY=VALUE (comments start with #)', status: 409,
    });
  }
  return parsed.env;
}

/**
 * Reads an app's env file. It holds secrets, so it must not be readable by group or others;
 * a missing file is an empty env unless keys are required.
 */
export async function readAppEnv(file: string, app: string, required: readonly string[]): Promise<Record<string, string>> {
  const env = parseAppEnv((await readEnvText(file, app))?.text ?? '', file, app);
  const missing = missingEnvKeys(env, required);
  if (missing.length) {
    throw new SlipwayError('env_missing_keys', `env file of ${app} (${file}) lacks required keys: ${missing.join(', ')}`, {
      hint: `set them: deploy env set ${missing.join(' ')} (each value from the variable of that name in the controller's environment), or no longer require them`, status: 409,
    });
  }
  return env;
}
