import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const valid = () => ({
  home: '/srv/slipway',
  api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
  nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
  apps: {
    shop: {
      slots: { blue: { port: 3001 }, green: { port: 3002 } },
      start: { script: 'server.js' },
      public: { listenPort: 80 },
      backupBeforeDeploy: 'db' as string | undefined,
    },
  },
  backups: {
    jobs: {
      db: { app: 'shop', schedule: '0 3 * * *', kind: 'pg_dump', source: { uriEnv: 'DATABASE_URL' } },
    } as Record<string, Record<string, unknown>>,
  } as { jobs: Record<string, Record<string, unknown>>; defaults?: unknown },
});

const problems = agentConfigProblems;

describe('backups config', () => {
  it('fills job defaults from backups.defaults and the documented defaults', () => {
    const config = parseAgentConfig(valid());
    expect(config.backups!.dir).toBe('/srv/slipway/backups');
    expect(config.backups!.tools).toEqual({ mongodump: 'mongodump', mongorestore: 'mongorestore', pgDump: 'pg_dump', pgRestore: 'pg_restore', psql: 'psql' });
    expect(config.backups!.jobs.db).toMatchObject({
      timeoutMs: 3_600_000, retention: { daily: 7, weekly: 4, monthly: 12 }, verify: { restore: true }, minBytes: 64, args: [],
    });
    expect(config.apps.shop!.backupBeforeDeploy).toBe('db');
  });

  it('a job inherits backups.defaults and overrides single tiers', () => {
    const raw = valid();
    raw.backups.defaults = { timeoutMs: 5000, retention: { daily: 3 } };
    raw.backups.jobs = { ...raw.backups.jobs, logs: { app: 'shop', schedule: '*/10 * * * * *', kind: 'command', command: ['cat', '/var/log/x'], retention: { monthly: 0 } } } as never;
    const config = parseAgentConfig(raw);
    expect(config.backups!.jobs.db!.retention).toEqual({ daily: 3, weekly: 4, monthly: 12 });
    expect(config.backups!.jobs.logs).toMatchObject({ timeoutMs: 5000, retention: { daily: 3, weekly: 4, monthly: 0 }, minBytes: 1, format: 'raw' });
  });

  it('rejects a bad cron expression at load, naming the field and what is wrong with it', () => {
    const raw = valid();
    raw.backups.jobs.db!.schedule = '61 3 * * *';
    expect(problems(raw)).toEqual([expect.stringMatching(/^backups\/jobs\/db\/schedule: "61 3 \* \* \*" is not a valid cron expression \(61 is a invalid expression for minute\); e\.g\./)]);
    raw.backups.jobs.db!.schedule = 'daily';
    expect(problems(raw)).toEqual([expect.stringContaining('expected 5 or 6 fields but got 1')]);
  });

  it('lists every problem by path: kinds, sources, apps, retention, offsite, backupBeforeDeploy', () => {
    const raw = valid();
    raw.apps.shop.backupBeforeDeploy = 'nope';
    raw.backups.jobs = {
      db: { app: 'ghost', schedule: '0 3 * * *', kind: 'pg_dump', source: { uri: 'mongodb://x/y' }, retention: { daily: 0, weekly: 0, monthly: 0 } },
      both: { app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uri: 'mongodb://h/db', uriEnv: 'X' } },
      cmd: { app: 'shop', schedule: '0 3 * * *', kind: 'command', offsite: { copy: ['cp', '{file}', '/mnt'], list: ['ls', '/mnt'] } },
      bad_name: { app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['true'] },
    };
    expect(problems(raw)).toEqual(expect.arrayContaining([
      expect.stringMatching(/^backups\/jobs: .*property name|^backups\/jobs\/bad_name/),
    ]));
    delete raw.backups.jobs.bad_name;
    expect(problems(raw).sort()).toEqual([
      'apps/shop/backupBeforeDeploy: no backup job "nope" in backups/jobs',
      'backups/jobs/both/source: give exactly one of uri or uriEnv (a key of the app\'s env file)',
      'backups/jobs/cmd/command: is required for kind "command" (argv writing the dump to stdout)',
      'backups/jobs/cmd/offsite: give both list and delete (remote pruning) or neither (copy-only)',
      'backups/jobs/db/app: "ghost" is not an app configured in apps',
      'backups/jobs/db/retention: keeps nothing; set at least one of daily, weekly, monthly above 0',
      'backups/jobs/db/source/uri: is not a postgres:// URI',
    ]);
  });

  it('refuses credentials and output options in args without echoing them', () => {
    const raw = valid();
    raw.backups.jobs.db = { app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' }, args: ['--db=app', '--uri=mongodb://u:hunter2@h/db', '-p', '--gzip'] };
    const found = problems(raw);
    expect(found).toHaveLength(3);
    expect(found.map((p) => p.split(':')[0])).toEqual(['backups/jobs/db/args/1', 'backups/jobs/db/args/2', 'backups/jobs/db/args/3']);
    expect(found.join('\n')).not.toContain('hunter2');
  });

  it('backupBeforeDeploy must name a job of the same app, and needs a backups section', () => {
    const raw = valid();
    raw.apps = { ...raw.apps, web: { ...raw.apps.shop, slots: { blue: { port: 3003 }, green: { port: 3004 } }, public: { listenPort: 81 }, backupBeforeDeploy: 'db' } } as never;
    expect(problems(raw)).toEqual(['apps/web/backupBeforeDeploy: job "db" backs up app shop, not web']);
    const none = valid();
    delete (none as Partial<ReturnType<typeof valid>>).backups;
    expect(problems(none)).toEqual(['apps/shop/backupBeforeDeploy: no backup job "db" (the config has no backups section)']);
  });
});
