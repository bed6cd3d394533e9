import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { BackupService } from '../../agent/backups/service.js';
import { SlipwayError } from '../../contract/errors.js';
import { startPostgres, type PgCluster } from '../helpers/postgres.js';

// The pg_dump kind against a real PostgreSQL server (a private cluster of Debian's binaries on a
// random loopback port): dump, restore drill into a scratch database with row counts compared,
// restores over the live database and into another one.

const APP_PASSWORD = 'App:pw\\with-odd chars';

describe('pg_dump backups against a real PostgreSQL', () => {
  let pg: PgCluster;
  let dir: string;
  let envFile: string;
  let record: string;
  let db: Db;
  let service: BackupService;
  const logs: string[] = [];

  const setUrl = (url: string) => fs.writeFile(envFile, `DATABASE_URL=${url}\n`, { mode: 0o600 });
  const asApp = (sql: string, database = 'shop') => pg.sql(`SET ROLE app; ${sql}`, database);
  const counts = async (database = 'shop') => ({
    items: Number(await asApp('SELECT count(*) FROM items', database)),
    lines: Number(await asApp('SELECT count(*) FROM "Order Lines"', database)),
  });
  const run = () => service.run('pg', { trigger: 'manual', actor: 'tester@laptop' });

  beforeAll(async () => {
    pg = await startPostgres();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-pg-'));
    envFile = path.join(dir, 'shop.env');
    record = path.join(dir, 'pg_dump.record');
    await pg.createAppDatabase('shop', 'app', APP_PASSWORD);
    await asApp(`
      CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;
      CREATE TABLE "Order Lines" (id serial PRIMARY KEY, note text);
      INSERT INTO "Order Lines" (note) VALUES ('one'), (E'two\\nlines'), ('tab\\there');
      CREATE SCHEMA "My Schema";
      CREATE TABLE "My Schema".empty (id int);
    `);
    // Records how Slipway calls pg_dump (argv, names of PG* variables, the passfile's mode), then runs it.
    const wrapper = path.join(dir, 'pg_dump');
    await fs.writeFile(wrapper, [
      '#!/bin/sh',
      `{ printf 'argv=%s\\n' "$*"; env | grep '^PG' | sed 's/=.*//' | sort | tr '\\n' ' '; printf '\\nmode=%s\\n' "$(stat -c %a "$PGPASSFILE")"; } > ${record}`,
      `exec ${path.join(pg.binDir, 'pg_dump')} "$@"`,
      '',
    ].join('\n'), { mode: 0o755 });
    await setUrl(pg.uri('shop', 'app', APP_PASSWORD));
    const config = parseAgentConfig({
      home: path.join(dir, 'home'),
      api: { port: 7070, tokenFile: path.join(dir, 'token') },
      nginx: { pidFile: path.join(dir, 'nginx.pid'), includeDir: dir },
      apps: { shop: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 'server.js' }, public: { listenPort: 8080 }, envFile } },
      backups: {
        tools: { pgDump: wrapper, pgRestore: path.join(pg.binDir, 'pg_restore'), psql: path.join(pg.binDir, 'psql') },
        jobs: { pg: { app: 'shop', schedule: '0 3 * * *', kind: 'pg_dump', timeoutMs: 120_000, source: { uriEnv: 'DATABASE_URL' } } },
      },
    });
    db = openDatabase(path.join(dir, 'home', 'agent.db'));
    // Inherited PG* variables must not leak into the tools: the service drops them.
    service = new BackupService({ config, db, logger: createLogger({ level: 'debug', destination: { write: (l: string) => { logs.push(l); } } }), env: { ...process.env, PGPASSWORD: 'inherited-should-be-dropped' } });
  });

  afterAll(async () => {
    db?.close();
    await pg?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('dumps in custom format, connects through PGPASSFILE only, and is verified by a restore drill comparing row counts', async () => {
    const row = await run();
    expect(row.status, row.reason ?? '').toBe('verified');
    expect(readFileSync(row.file!).subarray(0, 5).toString()).toBe('PGDMP');
    expect(row.verification!.level).toBe('restore');
    expect(row.verification!.counts).toEqual({ 'public.items': 5000, 'public."Order Lines"': 3, '"My Schema".empty': 0 });
    expect(row.verification!.checks.map((c) => [c.name, c.ok])).toEqual([['checksum', true], ['format', true], ['restore drill', true]]);
    expect(row.verification!.checks.at(-1)!.detail).toMatch(/^restored into scratch database slipway_verify_pg_1: 3 table\(s\), 5003 row\(s\), every count matches the archive$/);
    // the scratch database is gone
    expect(await pg.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'slipway_verify%'")).toBe('0');

    const recorded = readFileSync(record, 'utf8');
    expect(recorded).toContain('argv=--format=custom --no-password\n');
    expect(recorded).toContain('PGDATABASE PGHOST PGPASSFILE PGPORT PGUSER \n');
    expect(recorded).toContain('mode=600');
    expect(recorded).not.toContain(APP_PASSWORD);
    expect(await fs.readdir(service.privateRoot)).toEqual([]);
    expect(JSON.stringify(row) + logs.join('')).not.toContain(APP_PASSWORD);
  });

  it('a wrong password is a failed run with pg_dump\'s own message and nothing kept', async () => {
    await setUrl(pg.uri('shop', 'app', 'not-the-password'));
    try {
      const row = await run();
      expect(row).toMatchObject({ status: 'failed', file: null, exitCode: 1 });
      expect(row.stderrTail).toContain('password authentication failed for user "app"');
      expect(JSON.stringify(row)).not.toContain('not-the-password');
    } finally {
      await setUrl(pg.uri('shop', 'app', APP_PASSWORD));
    }
  });

  it('without CREATEDB the drill cannot run: the backup stays unverified, with the fix in the reason', async () => {
    await pg.sql('ALTER ROLE app NOCREATEDB');
    try {
      const row = await run();
      expect(row.status).toBe('unverified');
      expect(row.reason).toMatch(/^restore drill: cannot create the scratch database slipway_verify_pg_\d+: exit code 1: .*permission denied to create database.*grant the backup user CREATEDB, or set verify.restore to false for this job$/);
      expect(existsSync(row.file!)).toBe(true);
      await expect(service.restore(row.id, { force: false, actor: 't@h' })).rejects.toMatchObject({ code: 'backup_unverified' });
    } finally {
      await pg.sql('ALTER ROLE app CREATEDB');
    }
  });

  it('restores a verified backup over the live database, and --to into another database', async () => {
    const backup = await run();
    expect(backup.status).toBe('verified');
    await asApp('DELETE FROM items WHERE id > 10; DROP TABLE "Order Lines"; CREATE TABLE junk (x int)');
    const restored = await service.restore(backup.id, { force: false, actor: 'tester@laptop' });
    expect(restored).toMatchObject({ status: 'succeeded', target: 'source of job pg' });
    expect(await counts()).toEqual({ items: 5000, lines: 3 });
    expect(await asApp(`SELECT note FROM "Order Lines" WHERE id = 2`)).toBe('two\nlines');

    await pg.sql('CREATE DATABASE shop_copy OWNER app');
    const copy = await service.restore(backup.id, { to: pg.uri('shop_copy', 'app', APP_PASSWORD), force: false, actor: 'tester@laptop' });
    expect(copy.target).toBe(`postgres://app:[REDACTED]@127.0.0.1:${pg.port}/shop_copy`);
    expect(await counts('shop_copy')).toEqual({ items: 5000, lines: 3 });
  });

  it('a restore that fails is reported with pg_restore\'s message, and the target keeps its data', async () => {
    const backup = service.store.latest('pg', ['verified'])!;
    await asApp('DELETE FROM items WHERE id > 100');
    // A table the archive's --clean cannot drop (another table depends on it) aborts the single transaction.
    await asApp('CREATE TABLE pins (item int REFERENCES items (id))');
    const error = await service.restore(backup.id, { force: false, actor: 'tester@laptop' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'restore_failed' });
    expect((error as Error).message).toMatch(/^restore of backup #\d+ into source of job pg failed: exit code 1: /);
    expect((error as Error).message).not.toContain(APP_PASSWORD);
    expect(await counts()).toEqual({ items: 100, lines: 3 });
    await asApp('DROP TABLE pins');
  });

  it('case 30: a pg archive cut short on disk is refused for restore, loudly', async () => {
    const backup = service.store.latest('pg', ['verified'])!;
    const file = backup.file!;
    await fs.truncate(file, Math.floor((await fs.stat(file)).size / 2));
    await expect(service.restore(backup.id, { force: false, actor: 'tester@laptop' })).rejects.toMatchObject({ code: 'backup_corrupt' });
    expect(service.store.get(backup.id)!.status).toBe('unverified');
  });
});
