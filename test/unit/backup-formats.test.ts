import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MongoArchiveReader, readBsonFields } from '../../agent/backups/mongo-archive.js';
import { CopyRowCounter } from '../../agent/backups/pg-copy.js';
import {
  backupFileName, countRowsSql, expandPlaceholders, isTempFileName, mongoConfigYaml, mongodumpArgv, mongorestoreArgv,
  parseBackupFileName, parseMongodumpCounts, parsePgUri, pgDumpArgv, pgPassLine, pgRestoreIntoArgv, psqlArgv, redactSecrets,
  scratchDbName, stampOf, tempFileName,
} from '../../agent/backups/commands.js';
import { dumpFailure } from '../../agent/backups/outcome.js';

// The stand-in's own (independent) archive writer produces the bytes the agent's reader must accept.
const standin = createRequire(import.meta.url)(path.resolve(import.meta.dirname, '../fixtures/mongodump-standin/lib.cjs')) as {
  buildArchive(db: string, collections: [string, number][], docBytes: number): Buffer;
  bson(doc: Record<string, unknown>): Buffer;
};

function read(bytes: Buffer, chunk: number) {
  const reader = new MongoArchiveReader();
  for (let at = 0; at < bytes.length; at += chunk) reader.push(bytes.subarray(at, at + chunk));
  return reader.end();
}

describe('mongodump archive reader', () => {
  const archive = standin.buildArchive('shop', [['users', 5], ['orders', 3], ['empty', 0]], 40);

  it('counts documents per namespace whatever the chunking', () => {
    for (const chunk of [1, 3, 7, 64, 4096, archive.length]) {
      const summary = read(archive, chunk);
      expect(summary.problems).toEqual([]);
      expect(summary).toMatchObject({
        complete: true, formatVersion: '0.1',
        namespaces: ['shop.users', 'shop.orders', 'shop.empty'],
        counts: { 'shop.users': 5, 'shop.orders': 3, 'shop.empty': 0 },
      });
    }
  });

  it('reports every truncation point as incomplete', () => {
    for (let cut = 0; cut < archive.length; cut++) {
      const summary = read(archive.subarray(0, cut), 97);
      expect(summary.complete, `cut at ${cut}`).toBe(false);
      expect(summary.problems.length).toBeGreaterThan(0);
    }
  });

  it('needs an end marker for every prelude namespace but views', () => {
    const small = standin.buildArchive('shop', [['users', 1]], 0);
    const afterPrelude = 4 + small.readInt32LE(4) + small.readInt32LE(4 + small.readInt32LE(4));
    const withPrelude = (doc: Record<string, unknown>) =>
      Buffer.concat([small.subarray(0, afterPrelude), standin.bson(doc), small.subarray(afterPrelude)]);
    const view = read(withPrelude({ db: 'shop', collection: 'active', metadata: '{"options":{"viewOn":"users"}}', size: 0, type: 'view' }), 50);
    expect(view).toMatchObject({ complete: true, namespaces: ['shop.users', 'shop.active'] });
    const lost = read(withPrelude({ db: 'shop', collection: 'orders', metadata: '{}', size: 0, type: 'collection' }), 50);
    expect(lost.problems).toEqual(['namespace shop.orders has no end-of-data marker (the dump stopped early)']);
  });

  it('rejects a wrong magic number and a corrupted length', () => {
    const wrongMagic = Buffer.from(archive);
    wrongMagic[0] = 0;
    expect(read(wrongMagic, 100).problems).toEqual(['not a mongodump archive (wrong magic number)']);
    const garbled = Buffer.from(archive);
    garbled.writeInt32LE(3, 4); // the header document's length
    expect(read(garbled, 100).problems[0]).toMatch(/neither a BSON length nor a terminator/);
  });

  it('reads top-level fields of a BSON document', () => {
    const doc = standin.bson({ db: 'a', collection: 'b', EOF: true, CRC: 5n, n: 7 });
    expect(readBsonFields(doc)).toEqual({ db: 'a', collection: 'b', EOF: true, CRC: 5, n: 7 });
  });
});

describe('pg COPY row counter', () => {
  it('counts rows per table across chunk boundaries, quoted names included', () => {
    const text = [
      '--', '-- PostgreSQL database dump', '--', 'SET statement_timeout = 0;', '',
      'COPY public.items (id, name) FROM stdin;', '1\tapple', '2\tpear\\nwith newline', '\\.', '',
      'COPY public."Order Lines" (id) FROM stdin;', '1', '2', '3', '\\.', '',
      'COPY "My Schema".empty (id) FROM stdin;', '\\.', '',
    ].join('\n');
    for (const size of [1, 5, 1000]) {
      const counter = new CopyRowCounter();
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length; at += size) counter.push(bytes.subarray(at, at + size));
      expect(counter.end()).toEqual({
        complete: true,
        tables: [{ table: 'public.items', rows: 2 }, { table: 'public."Order Lines"', rows: 3 }, { table: '"My Schema".empty', rows: 0 }],
      });
    }
  });

  it('an unterminated COPY block is incomplete', () => {
    const counter = new CopyRowCounter();
    counter.push(Buffer.from('COPY public.items (id) FROM stdin;\n1\n2\n'));
    expect(counter.end()).toEqual({ complete: false, tables: [{ table: 'public.items', rows: 2 }] });
  });
});

describe('backup commands (pure)', () => {
  it('names files by start time and id, and tells temp files apart', () => {
    const at = new Date('2025-03-04T05:06:07.890Z');
    expect(stampOf(at)).toBe('20250304T050607Z');
    expect(backupFileName('mongodump', 'raw', at, 12)).toBe('20250304T050607Z-12.archive.gz');
    expect(backupFileName('pg_dump', 'raw', at, 12)).toBe('20250304T050607Z-12.pgdump');
    expect(backupFileName('command', 'gzip', at, 3)).toBe('20250304T050607Z-3.dump.gz');
    expect(parseBackupFileName('20250304T050607Z-12.pgdump')).toEqual({ id: 12, stamp: '20250304T050607Z' });
    expect(parseBackupFileName('notes.txt')).toBeNull();
    expect(parseBackupFileName('20250304T050607Z-0.pgdump')).toBeNull();
    expect(isTempFileName(tempFileName(5, 'abcd'))).toBe(true);
    expect(isTempFileName('20250304T050607Z-12.pgdump')).toBe(false);
  });

  it('builds mongodump/mongorestore argv with the URI only in a --config file', () => {
    expect(mongodumpArgv('mongodump', '/run/x/cfg.yaml', ['--db=shop'])).toEqual(['mongodump', '--archive', '--gzip', '--config=/run/x/cfg.yaml', '--db=shop']);
    expect(mongorestoreArgv('mongorestore', '/c.yaml', '/b/1.archive.gz', 'dry-run')).toEqual(['mongorestore', '--archive=/b/1.archive.gz', '--gzip', '--config=/c.yaml', '--dryRun', '--verbose']);
    expect(mongorestoreArgv('mongorestore', '/c.yaml', '/b/1.archive.gz', 'restore')).toEqual(['mongorestore', '--archive=/b/1.archive.gz', '--gzip', '--config=/c.yaml', '--drop']);
    expect(mongoConfigYaml('mongodb://u:p"w@h/db')).toBe('uri: "mongodb://u:p\\"w@h/db"\n');
    expect(parseMongodumpCounts('x\tdone dumping shop.users (1 document)\ny\tdone dumping shop.orders (20 documents)\n')).toEqual({ 'shop.users': 1, 'shop.orders': 20 });
  });

  it('splits a postgres URI into libpq env and a pgpass line, password never in env or argv', () => {
    const pg = parsePgUri('postgres://app%40x:p%3Aw%5Cd@db.internal:6432/shop?sslmode=require');
    expect(pg.env).toEqual({ PGDATABASE: 'shop', PGUSER: 'app@x', PGHOST: 'db.internal', PGPORT: '6432', PGSSLMODE: 'require' });
    expect(pg.password).toBe('p:w\\d');
    expect(pgPassLine(pg)).toBe('db.internal:6432:*:app@x:p\\:w\\\\d\n');
    expect(JSON.stringify(pgDumpArgv('pg_dump', []))).not.toContain('p:w');
    expect(pgDumpArgv('pg_dump', ['--schema=public'])).toEqual(['pg_dump', '--format=custom', '--no-password', '--schema=public']);
    expect(pgRestoreIntoArgv('pg_restore', '/f', 'shop', 'replace')).toEqual(['pg_restore', '--no-owner', '--no-acl', '--exit-on-error', '--no-password', '--dbname=shop', '--clean', '--if-exists', '--single-transaction', '/f']);
    expect(psqlArgv('psql', 'shop', 'SELECT 1')).toEqual(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '--no-password', '--dbname=shop', '-c', 'SELECT 1']);
    expect(() => parsePgUri('postgres://u:secretpw@h/db?options=-c')).toThrow(/unsupported PostgreSQL URI parameter "options"/);
    expect(() => parsePgUri('postgres://u:secretpw@h/')).toThrow(/must name a plain database/);
    try {
      parsePgUri('postgres://u:secretpw@h/a=b');
    } catch (error) {
      expect((error as Error).message).not.toContain('secretpw');
    }
  });

  it('counts rows only of well-formed table names and names scratch databases per job and backup', () => {
    expect(countRowsSql(['public.items', 'public."Order Lines"'])).toBe('SELECT 0, count(*) FROM public.items UNION ALL SELECT 1, count(*) FROM public."Order Lines"');
    expect(() => countRowsSql(['public.items; DROP TABLE x'])).toThrow(/not a table name/);
    expect(scratchDbName('nightly-db', 42)).toBe('slipway_verify_nightly_db_42');
  });

  it('redacts secrets and URI passwords from text shown to people', () => {
    const uri = 'mongodb://admin:s3cr3t@db:27017/shop';
    expect(redactSecrets(`failed to connect to ${uri}`, [uri])).toBe('failed to connect to [REDACTED]');
    expect(redactSecrets('error at postgres://bob:hunter2@h/db and mongodb+srv://x:y@z/')).toBe('error at postgres://bob:[REDACTED]@h/db and mongodb+srv://x:[REDACTED]@z/');
    expect(redactSecrets('password hunter2 leaked', ['hunter2'])).toBe('password [REDACTED] leaked');
  });

  it('expands offsite placeholders inside arguments', () => {
    expect(expandPlaceholders(['rclone', 'copyto', '{file}', 'remote:b/{app}/{job}/{name}'], { file: '/b/1.pgdump', name: '1.pgdump', job: 'db', app: 'shop' }))
      .toEqual(['rclone', 'copyto', '/b/1.pgdump', 'remote:b/shop/db/1.pgdump']);
  });

  it('judges a dump: exit code, timeout, signal, empty and short output', () => {
    const job = { timeoutMs: 1000, minBytes: 64 };
    const ok = { error: null, timedOut: false, signal: null, exitCode: 0, bytes: 100 };
    expect(dumpFailure(ok, job)).toBeNull();
    expect(dumpFailure({ ...ok, exitCode: 1 }, job)).toBe('the dump exited with code 1');
    expect(dumpFailure({ ...ok, timedOut: true, signal: 'SIGKILL', exitCode: null }, job)).toBe('timed out after 1000 ms; its process group was killed');
    expect(dumpFailure({ ...ok, signal: 'SIGSEGV', exitCode: null }, job)).toBe('the dump was killed by SIGSEGV');
    expect(dumpFailure({ ...ok, bytes: 0 }, job)).toBe('the dump wrote nothing');
    expect(dumpFailure({ ...ok, bytes: 20 }, job)).toMatch(/only 20 bytes/);
    expect(dumpFailure({ ...ok, error: 'could not run mongodump: spawn mongodump ENOENT' }, job)).toMatch(/ENOENT/);
  });
});
