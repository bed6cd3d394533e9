import { existsSync, readFileSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCommand } from '../../lib/exec.js';
import { freePort } from './ports.js';
import { isAlive } from './nginx.js';
import { waitFor } from './wait.js';

export interface PgCluster {
  /** Directory holding the cluster's data, socket and log; removed by stop(). */
  dir: string;
  /** /usr/lib/postgresql/<version>/bin of the binaries that run it (pg_dump, pg_restore, psql too). */
  binDir: string;
  host: '127.0.0.1';
  port: number;
  /** The postmaster's pid. */
  pid: number;
  /** postgres://user:password@127.0.0.1:port/db */
  uri(database: string, user?: string, password?: string): string;
  /** Runs SQL as the superuser over TCP; answers psql's unaligned, tuples-only output. */
  sql(query: string, database?: string): Promise<string>;
  /** A role with a password (and CREATEDB, for the restore drill's scratch database) owning a new database. */
  createAppDatabase(database: string, user: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

/** Debian's PostgreSQL binaries, newest version first; null when the postgresql package is missing. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(root, versions[0]!, 'bin') : null;
}

function postgresAccount(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres system user: install the postgresql package (scripts/ensure-system-deps)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * A private PostgreSQL cluster for one test file: initdb'd as the `postgres` user in a temp dir,
 * listening on 127.0.0.1 and a random port, password (SCRAM) auth over TCP, stopped by pid.
 * It never touches the system cluster (/var/lib/postgresql) or port 5432.
 */
export async function startPostgres(): Promise<PgCluster> {
  const binDir = postgresBinDir();
  if (!binDir) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: run scripts/ensure-system-deps');
  const account = postgresAccount();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pg-'));
  await fs.chown(dir, account.uid, account.gid);
  const data = path.join(dir, 'data');
  const superPassword = randomBytes(12).toString('hex');
  const pwfile = path.join(dir, 'pwfile');
  await fs.writeFile(pwfile, `${superPassword}\n`, { mode: 0o600 });
  await fs.chown(pwfile, account.uid, account.gid);
  const asPostgres = (argv: string[], timeoutMs = 60_000) => runCommand(['runuser', '-u', 'postgres', '--', ...argv], { timeoutMs, cwd: dir });
  let pid = 0;
  const stop = async () => {
    if (pid && isAlive(pid)) {
      process.kill(pid, 'SIGINT'); // "fast" shutdown: roll back open transactions, exit
      await waitFor(() => !isAlive(pid), { timeoutMs: 30_000, description: `postgres ${pid} to exit` }).catch(() => {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      });
    }
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const init = await asPostgres([path.join(binDir, 'initdb'), '-D', data, '-U', 'postgres', `--pwfile=${pwfile}`,
      '--auth-local=peer', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync']);
    if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr}`);
    let port = 0;
    for (let attempt = 0; attempt < 3 && !pid; attempt++) {
      port = await freePort();
      // pg_ctl hands -o to a shell: every value here is a number or a path without spaces.
      const started = await asPostgres([path.join(binDir, 'pg_ctl'), '-D', data, '-l', path.join(dir, 'postgres.log'), '-w', '-t', '60',
        '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off`, 'start'], 90_000);
      if (started.exitCode === 0) pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    }
    if (!pid) throw new Error(`postgres did not start:\n${readFileSync(path.join(dir, 'postgres.log'), 'utf8')}`);
    const psql = path.join(binDir, 'psql');
    const sql = async (query: string, database = 'postgres') => {
      const result = await runCommand([psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-c', query], {
        timeoutMs: 60_000, env: { ...process.env, PGPASSWORD: superPassword },
      });
      if (result.exitCode !== 0) throw new Error(`psql failed: ${result.stderr}`);
      return result.stdout.trim();
    };
    return {
      dir, binDir, host: '127.0.0.1', port, pid,
      uri: (database, user = 'postgres', password = superPassword) =>
        `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      sql,
      async createAppDatabase(database, user, password) {
        await sql(`CREATE ROLE "${user}" LOGIN CREATEDB PASSWORD '${password.replace(/'/g, "''")}'`);
        await sql(`CREATE DATABASE "${database}" OWNER "${user}"`);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
