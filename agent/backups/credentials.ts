import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BackupKind } from './config.js';
import { mongoConfigYaml, parsePgUri, pgPassLine, type PgConnection } from './commands.js';

// Credentials reach dump and restore tools only through files readable by the agent's user
// (mode 0600 in a 0700 directory created for one run and removed after it) and environment
// variables that hold no password. They never appear on a command line.

export interface Credentials {
  /** Extra environment for the tool: libpq variables and PGPASSFILE. */
  env: Record<string, string>;
  /** The mongo tools' --config file (holds `uri:`). */
  configFile: string | null;
  pg: PgConnection | null;
  /** Strings to scrub from anything shown to people. */
  secrets: string[];
}

export const NO_CREDENTIALS: Credentials = { env: {}, configFile: null, pg: null, secrets: [] };

/** Writes the files for `uri`, runs fn, and removes them whatever happens. */
export async function withCredentials<T>(
  kind: BackupKind, uri: string | null, privateRoot: string, fn: (credentials: Credentials) => Promise<T>,
): Promise<T> {
  if (kind === 'command' || uri === null) return fn(NO_CREDENTIALS);
  // Parse before creating anything, so a bad URI leaves no directory behind.
  const pg = kind === 'pg_dump' ? parsePgUri(uri) : null;
  await mkdir(privateRoot, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(path.join(privateRoot, 'run-'));
  try {
    let credentials: Credentials;
    if (pg) {
      const env: Record<string, string> = { ...pg.env };
      if (pg.password !== null) {
        const passFile = path.join(dir, 'pgpass');
        await writeFile(passFile, pgPassLine(pg), { mode: 0o600, flag: 'wx' });
        env.PGPASSFILE = passFile;
      }
      credentials = { env, configFile: null, pg, secrets: [uri, pg.password].filter((s): s is string => Boolean(s)) };
    } else {
      const configFile = path.join(dir, 'mongo-tools.yaml');
      await writeFile(configFile, mongoConfigYaml(uri), { mode: 0o600, flag: 'wx' });
      let password: string | null = null;
      try {
        password = decodeURIComponent(new URL(uri).password) || null;
      } catch {
        // the tool reports an unparsable URI itself; the whole URI is scrubbed either way
      }
      credentials = { env: {}, configFile, pg: null, secrets: [uri, password].filter((s): s is string => Boolean(s)) };
    }
    return await fn(credentials);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
