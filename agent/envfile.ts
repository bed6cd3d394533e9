import { promises as fs } from 'node:fs';
import { SlipwayError } from '../contract/errors.js';

export type EnvParse = { ok: true; env: Record<string, string> } | { ok: false; errors: string[] };

/** Pure: parses KEY=VALUE lines (dotenv style: comments, blank lines, optional quotes, `export `). */
export function parseEnvFile(text: string): EnvParse {
  const env: Record<string, string> = {};
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      // Never echo the line: it may hold a secret.
      errors.push(`line ${index + 1}: expected KEY=VALUE`);
      return;
    }
    let value = match[2]!;
    const quoted = /^(['"])(.*)\1$/.exec(value);
    if (quoted) {
      value = quoted[1] === '"' ? quoted[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"') : quoted[2]!;
    } else {
      value = value.replace(/\s+#.*$/, '');
    }
    env[match[1]!] = value;
  });
  return errors.length ? { ok: false, errors } : { ok: true, env };
}

/** Names of required keys missing from env; pure. */
export function missingEnvKeys(env: Record<string, string>, required: readonly string[]): string[] {
  return required.filter((key) => !(key in env) || env[key] === '');
}

/**
 * Reads an app's env file. It holds secrets, so it must not be readable by group or others;
 * a missing file is an empty env unless keys are required.
 */
export async function readAppEnv(file: string, app: string, required: readonly string[]): Promise<Record<string, string>> {
  let text = '';
  try {
    const stat = await fs.stat(file);
    if ((stat.mode & 0o077) !== 0) {
      throw new SlipwayError('env_file_insecure', `env file of ${app} (${file}) is readable by other users (mode ${(stat.mode & 0o777).toString(8)})`, {
        hint: `run: chmod 600 ${file}`, status: 409,
      });
    }
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const parsed = parseEnvFile(text);
  if (!parsed.ok) {
    throw new SlipwayError('env_file_invalid', `env file of ${app} (${file}) cannot be parsed`, {
      details: parsed.errors, hint: 'each line must be KEY=VALUE (comments start with #)', status: 409,
    });
  }
  const missing = missingEnvKeys(parsed.env, required);
  if (missing.length) {
    throw new SlipwayError('env_missing_keys', `env file of ${app} (${file}) lacks required keys: ${missing.join(', ')}`, {
      hint: `add them to ${file} (mode 0600) or remove them from apps.${app}.requiredEnv`, status: 409,
    });
  }
  return parsed.env;
}
