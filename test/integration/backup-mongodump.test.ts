import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { BackupService } from '../../agent/backups/service.js';
import { BackupScheduler } from '../../agent/backups/scheduler.js';
import { processStartTime } from '../../agent/backups/process.js';
import { SlipwayError } from '../../contract/errors.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { isAlive } from '../helpers/nginx.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhook, type Webhook } from '../helpers/webhook.js';

// The mongodump kind end to end at the service level, with the STAND-IN mongodump/mongorestore
// of test/fixtures/mongodump-standin (MongoDB's tools are not installable here): real processes,
// real files, real gzip, real SQLite, a real HTTP webhook.

const STANDIN = path.join(REPO_ROOT, 'test', 'fixtures', 'mongodump-standin', 'bin');
const PASSWORD = 'Sup3r-s3cret-pw';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('mongodump backups (stand-in tools; real files, gzip, SQLite, webhook)', () => {
  let dir: string;
  let home: string;
  let envFile: string;
  let standinLog: string;
  let db: Db;
  let service: BackupService;
  let webhook: Webhook;
  const logs: string[] = [];

  const uri = (mode: string, extra: Record<string, string> = {}) => {
    const params = new URLSearchParams({ standin: mode, collections: 'users:3,orders:5', log: standinLog, ...extra });
    return `mongodb://backup:${PASSWORD}@127.0.0.1:27017/shop?${params.toString()}`;
  };
  /** The app's env file holds the URI, as on a real host; each test picks the stand-in's behaviour there. */
  const setEnv = (vars: Record<string, string>) =>
    fs.writeFile(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 });
  const jobDir = (job: string) => path.join(home, 'backups', 'shop', job);
  const filesIn = async (job: string) => (await fs.readdir(jobDir(job)).catch(() => [] as string[])).sort();
  const run = (job: string) => service.run(job, { trigger: 'manual', actor: 'tester@laptop' });
  const readLog = () => readFileSync(standinLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-mongo-'));
    home = path.join(dir, 'home');
    envFile = path.join(dir, 'shop.env');
    standinLog = path.join(dir, 'standin.log');
    webhook = await startWebhook();
    await fs.mkdir(path.join(dir, 'remote'));
    const config = parseAgentConfig({
      home,
      api: { port: 7070, tokenFile: path.join(dir, 'token') },
      nginx: { pidFile: path.join(dir, 'nginx.pid'), includeDir: dir },
      apps: {
        shop: {
          slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 'server.js' },
          public: { listenPort: 8080 }, envFile,
        },
      },
      backups: {
        notifyWebhook: webhook.url,
        tools: { mongodump: path.join(STANDIN, 'mongodump'), mongorestore: path.join(STANDIN, 'mongorestore') },
        jobs: {
          db: { app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' } },
          slow: { app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', timeoutMs: 2000, source: { uriEnv: 'SLOW_URL' } },
          ret: { app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'RET_URL' } },
          offsite: {
            app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' },
            offsite: { copy: ['cp', '{file}', path.join(dir, 'remote', '{name}')], list: ['ls', '-1', path.join(dir, 'remote')], delete: ['rm', path.join(dir, 'remote', '{name}')] },
          },
          copyonly: {
            app: 'shop', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' },
            offsite: { copy: ['cp', '{file}', path.join(dir, 'remote', 'copyonly-{name}')] },
          },
        },
      },
    });
    db = openDatabase(path.join(home, 'agent.db'));
    const logger = createLogger({ level: 'debug', destination: { write: (line: string) => { logs.push(line); } } });
    service = new BackupService({ config, db, logger });
    await service.recoverOnStart();
  });

  afterAll(async () => {
    await service?.close();
    db?.close();
    await webhook?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes a verified archive: atomically named file, sha256 recorded, credentials only in a 0600 --config file', async () => {
    await setEnv({ MONGO_URL: uri('ok') });
    const row = await run('db');
    expect(row.status, row.reason ?? '').toBe('verified');
    expect(row.file).toBe(path.join(jobDir('db'), path.basename(row.file!)));
    expect(path.basename(row.file!)).toMatch(/^\d{8}T\d{6}Z-1\.archive\.gz$/);
    expect(await filesIn('db')).toEqual([path.basename(row.file!)]); // no temp file left
    expect((await fs.stat(row.file!)).mode & 0o777).toBe(0o600);
    expect(sha256(row.file!)).toBe(row.sha256);
    expect((await fs.stat(row.file!)).size).toBe(row.bytes);
    expect(row.verification).toMatchObject({ level: 'restore-dry-run', counts: { 'shop.users': 3, 'shop.orders': 5 } });
    expect(row.verification!.checks.map((c) => [c.name, c.ok])).toEqual([['checksum', true], ['gzip', true], ['archive', true], ['restore drill', true]]);

    const [dump, dryRun] = readLog();
    expect(dump).toMatchObject({ tool: 'mongodump', configMode: '600', uriInEnv: false });
    expect(dump!.argv).toEqual(['--archive', '--gzip', `--config=${dump!.configFile as string}`]);
    expect(existsSync(dump!.configFile as string)).toBe(false); // removed after the run
    expect(dryRun).toMatchObject({ tool: 'mongorestore', dryRun: true, configMode: '600' });
    expect(JSON.stringify(readLog())).not.toContain(PASSWORD);
    expect(await fs.readdir(service.privateRoot)).toEqual([]);
  });

  it('case 26: mongodump exiting non-zero is a failed run: no file, earlier backup intact, webhook told, no password anywhere', async () => {
    const [earlier] = await filesIn('db');
    const earlierSha = sha256(path.join(jobDir('db'), earlier!));
    await setEnv({ MONGO_URL: uri('fail') });
    const row = await run('db');
    expect(row).toMatchObject({ status: 'failed', reason: 'the dump exited with code 1', exitCode: 1, file: null, timedOut: false });
    expect(row.bytes).toBe(100); // what it wrote before failing is on record, then deleted
    expect(await filesIn('db')).toEqual([earlier]);
    expect(sha256(path.join(jobDir('db'), earlier!))).toBe(earlierSha);
    expect(row.stderrTail).toContain('failed to connect to [REDACTED]');
    await waitFor(() => webhook.messages.find((m) => m.text.includes(`backup db #${row.id}`)), { description: 'the failure notification' });
    const note = webhook.messages.find((m) => m.text.includes(`backup db #${row.id}`))!;
    expect(note.text).toContain('failed. the dump exited with code 1. Earlier backups are untouched.');
    for (const text of [JSON.stringify(row), JSON.stringify(webhook.messages), logs.join('')]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain('/hooks/T000'); // the webhook URL is a secret too
    }
  });

  it('case 27: a hanging dump is killed with its whole process group at the timeout; an overlapping run is skipped and recorded', async () => {
    const pidFile = path.join(dir, 'hang.pids');
    await setEnv({ MONGO_URL: uri('ok'), SLOW_URL: uri('hang', { pidFile }) });
    const first = service.begin('slow', { trigger: 'schedule', actor: 'schedule' });
    const pids = await waitFor(() => (existsSync(pidFile) ? JSON.parse(readFileSync(pidFile, 'utf8')) as { pid: number; child: number } : null), { description: 'the hanging dump to start' });
    expect(isAlive(pids.pid) && isAlive(pids.child)).toBe(true);
    await waitFor(async () => (await filesIn('slow')).some((n) => n.startsWith('.tmp-')), { description: 'the temp file' });

    const overlapping = await service.run('slow', { trigger: 'schedule', actor: 'schedule' });
    expect(overlapping).toMatchObject({ status: 'skipped', trigger: 'schedule', file: null });
    expect(overlapping.reason).toMatch(new RegExp(`^run #${first.id} of this job \\(started .*\\) is still going$`));

    const row = await first.done;
    expect(row).toMatchObject({ status: 'failed', timedOut: true, file: null, reason: 'timed out after 2000 ms; its process group was killed' });
    await waitFor(() => !isAlive(pids.pid) && !isAlive(pids.child), { description: 'the dump and its child to be gone' });
    expect(await filesIn('slow')).toEqual([]);
    expect(webhook.messages.some((m) => m.text.includes(`#${overlapping.id}`) && m.text.includes('skipped'))).toBe(true);
  });

  it('a truncated archive that mongodump "succeeded" with is caught by verification and never recorded as good', async () => {
    await setEnv({ MONGO_URL: uri('truncate') });
    const before = await filesIn('db');
    const row = await run('db');
    expect(row.status).toBe('failed');
    expect(row.exitCode).toBe(0);
    expect(row.reason).toMatch(/^verification found the archive broken: gzip: the gzip stream is damaged or cut short: unexpected end of file/);
    expect(row.verification!.checks.find((c) => c.name === 'gzip')).toMatchObject({ ok: false });
    expect(await filesIn('db')).toEqual(before);
  });

  it('empty output is a failed run', async () => {
    await setEnv({ MONGO_URL: uri('empty') });
    const row = await run('db');
    expect(row).toMatchObject({ status: 'failed', reason: 'the dump wrote nothing', bytes: 0, file: null });
  });

  it('counts that disagree with what mongodump reported leave the backup unverified and kept; restore refuses it without --force', async () => {
    const store = path.join(dir, 'forced-restore.json');
    await setEnv({ MONGO_URL: uri('miscount', { store }) });
    const row = await run('db');
    expect(row.status).toBe('unverified');
    expect(row.reason).toBe('archive: document counts differ: shop.users: mongodump reported 4, the archive holds 3');
    expect(existsSync(row.file!)).toBe(true);
    expect(webhook.messages.some((m) => m.text.includes(`#${row.id}`) && m.text.includes('unverified'))).toBe(true);
    await expect(service.restore(row.id, { force: false, actor: 't@h' })).rejects.toMatchObject({ code: 'backup_unverified', status: 409 });
    expect(existsSync(store)).toBe(false);
    const forced = await service.restore(row.id, { force: true, actor: 't@h' });
    expect(forced).toMatchObject({ status: 'succeeded', forced: true, backupId: row.id });
    expect(JSON.parse(readFileSync(store, 'utf8'))).toMatchObject({ drop: true, counts: { 'shop.users': 3, 'shop.orders': 5 } });
  });

  it('restores a verified backup into the job\'s database or --to another; case 30: a corrupted file is refused loudly', async () => {
    const storeA = path.join(dir, 'restore-a.json');
    const storeB = path.join(dir, 'restore-b.json');
    await setEnv({ MONGO_URL: uri('ok', { store: storeA }) });
    const restored = await service.restore(1, { force: false, actor: 'tester@laptop' });
    expect(restored).toMatchObject({ backupId: 1, job: 'db', status: 'succeeded', target: 'source of job db', forced: false });
    expect(JSON.parse(readFileSync(storeA, 'utf8'))).toEqual({ target: '127.0.0.1:27017/shop', drop: true, counts: { 'shop.users': 3, 'shop.orders': 5 } });

    const to = `mongodb://other:Other-pw-9@127.0.0.2:27018/copy?store=${encodeURIComponent(storeB)}&log=${encodeURIComponent(standinLog)}`;
    const elsewhere = await service.restore(1, { to, force: false, actor: 'tester@laptop' });
    expect(elsewhere.target).toBe(`mongodb://other:[REDACTED]@127.0.0.2:27018/copy?store=${encodeURIComponent(storeB)}&log=${encodeURIComponent(standinLog)}`);
    expect(JSON.parse(readFileSync(storeB, 'utf8'))).toMatchObject({ target: '127.0.0.2:27018/copy' });
    expect(readLog().at(-1)).toMatchObject({ tool: 'mongorestore', dryRun: false, configMode: '600' });
    expect(JSON.stringify(readLog())).not.toContain('Other-pw-9');

    const file = service.store.get(1)!.file!;
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await fs.writeFile(file, bytes);
    const error = await service.restore(1, { force: false, actor: 'tester@laptop' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'backup_corrupt', status: 409 });
    expect((error as Error).message).toMatch(/^backup #1 is corrupt: sha256 of .* is [0-9a-f]{64}, but [0-9a-f]{64} was recorded when it was written$/);
    expect(service.store.get(1)).toMatchObject({ status: 'unverified', reason: expect.stringMatching(/^checksum mismatch before restore/) });
    expect(webhook.messages.some((m) => m.text.includes('#1') && m.text.includes('corrupt'))).toBe(true);
  });

  it('case 29: retention prunes only after a newer verified backup, and failed runs never remove the last verified one', async () => {
    const ok = uri('ok');
    await setEnv({ MONGO_URL: ok, RET_URL: ok });
    const a = await run('ret');
    expect(await filesIn('ret')).toEqual([path.basename(a.file!)]);
    const b = await run('ret');
    // all runs fall on one day: the daily, weekly and monthly tiers each keep the newest verified
    expect(await filesIn('ret')).toEqual([path.basename(b.file!)]);
    expect(service.store.get(a.id)).toMatchObject({ pruneReason: 'outside the retention policy' });
    await setEnv({ MONGO_URL: ok, RET_URL: uri('miscount') });
    const c = await run('ret'); // unverified: no retention runs, b stays the last verified
    expect([a.status, b.status, c.status]).toEqual(['verified', 'verified', 'unverified']);
    expect(await filesIn('ret')).toEqual([path.basename(b.file!), path.basename(c.file!)].sort());
    await setEnv({ MONGO_URL: ok, RET_URL: ok });
    const d = await run('ret');
    expect((await filesIn('ret'))).toEqual([path.basename(d.file!)]);
    for (const id of [b.id, c.id]) expect(service.store.get(id)!.prunedAt).not.toBeNull();
    expect(service.store.get(c.id)!.pruneReason).toBe('unverified, and a newer backup is verified');

    for (const mode of ['fail', 'truncate', 'empty', 'fail', 'miscount']) {
      await setEnv({ MONGO_URL: ok, RET_URL: uri(mode) });
      const failed = await run('ret');
      expect(failed.status).not.toBe('verified');
    }
    expect(await filesIn('ret')).toContain(path.basename(d.file!));
    expect(sha256(d.file!)).toBe(d.sha256);
    const view = service.overview({ job: 'ret' }).jobs[0]!;
    expect(view.lastVerified).toMatchObject({ id: d.id, level: 'restore-dry-run' });
    expect(view.lastRun).toMatchObject({ status: 'unverified' });
    expect(view.kept).toEqual({ count: 2, bytes: d.bytes! + service.store.get(view.lastRun!.id)!.bytes!, verified: 1 });
  });

  it('offsite: copies each verified backup, prunes remote copies by the same policy, leaves unknown remote files alone; copy-only says so', async () => {
    await setEnv({ MONGO_URL: uri('ok') });
    await fs.writeFile(path.join(dir, 'remote', 'notes.txt'), 'not a backup');
    const runs = [await run('offsite'), await run('offsite'), await run('offsite')];
    expect(runs.map((r) => service.store.get(r.id)!.offsiteStatus)).toEqual(['pruned', 'pruned', 'copied']);
    const remote = (await fs.readdir(path.join(dir, 'remote'))).filter((n) => !n.startsWith('copyonly-')).sort();
    expect(remote).toEqual([path.basename(runs[2]!.file!), 'notes.txt'].sort());
    expect(readFileSync(path.join(dir, 'remote', path.basename(runs[2]!.file!))).equals(readFileSync(runs[2]!.file!))).toBe(true);

    const copies = [await run('copyonly'), await run('copyonly')];
    expect(copies.map((r) => service.store.get(r.id)!.offsiteStatus)).toEqual(['copied', 'copied']);
    expect((await fs.readdir(path.join(dir, 'remote'))).filter((n) => n.startsWith('copyonly-'))).toHaveLength(2);
    const overview = service.overview();
    expect(overview.jobs.find((j) => j.job === 'offsite')!.offsite).toMatchObject({ mode: 'gfs', lastStatus: 'copied' });
    expect(overview.jobs.find((j) => j.job === 'copyonly')!.offsite.note).toMatch(/^copy-only: remote copies are never pruned/);
    expect(overview.notifications).toBe(true);
  });

  it('runJobForDeployment links a verified backup to the deployment, and throws when the backup is not verified', async () => {
    await setEnv({ MONGO_URL: uri('ok') });
    const linked = await service.runJobForDeployment('db', 4242, 'tester@laptop');
    expect(linked.status).toBe('verified');
    expect(service.store.get(linked.id)).toMatchObject({ deploymentId: 4242, trigger: 'deploy', requestedBy: 'tester@laptop' });
    await setEnv({ MONGO_URL: uri('fail') });
    const error = await service.runJobForDeployment('db', 4243).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'backup_before_deploy_failed', status: 409 });
    expect((error as Error).message).toMatch(/^the pre-deploy backup db #\d+ is failed: the dump exited with code 1$/);
    await expect(service.runJobForDeployment('nope', 1)).rejects.toMatchObject({ code: 'backup_job_not_found', status: 404 });
  });

  it('case 28: on start, a run left by a crashed agent is marked failed, its orphaned dump killed and its temp file removed', async () => {
    // What a kill -9 of the agent mid-dump leaves: a `running` row, a temp file, a dump process still alive.
    const orphan = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    orphan.unref();
    const id = service.store.startRun({ job: 'db', app: 'shop', kind: 'mongodump', trigger: 'schedule', requestedBy: 'schedule', deploymentId: null, startedAt: new Date().toISOString() });
    service.store.setProcess(id, orphan.pid!, processStartTime(orphan.pid!));
    const temp = path.join(jobDir('db'), `.tmp-${id}-deadbeef.part`);
    await fs.writeFile(temp, 'half a dump');
    await fs.mkdir(path.join(service.privateRoot, 'run-left'), { recursive: true });
    const kept = await filesIn('db');

    const restarted = new BackupService({ config: (service as unknown as { deps: { config: never } }).deps.config, db, logger: createLogger({ level: 'silent' }) });
    const recovered = await restarted.recoverOnStart();
    expect(recovered).toEqual({ interrupted: [id], removed: [temp] });
    expect(service.store.get(id)).toMatchObject({ status: 'failed', reason: 'interrupted: the agent stopped during the run; its temp file was removed' });
    await waitFor(() => !isAlive(orphan.pid!), { description: 'the orphaned dump to be killed' });
    expect(await filesIn('db')).toEqual(kept.filter((n) => !n.startsWith('.tmp-')));
    expect(existsSync(service.privateRoot)).toBe(false);
  });

  it('the scheduler fires jobs on their cron schedule; ticks that overlap a run are recorded as skipped', async () => {
    await setEnv({ MONGO_URL: uri('ok', { delayMs: '1500' }) });
    const config = (service as unknown as { deps: { config: ReturnType<typeof parseAgentConfig> } }).deps.config;
    const every = structuredClone(config);
    every.backups!.jobs = { db: { ...config.backups!.jobs.db!, schedule: '* * * * * *' } };
    const scheduled = new BackupService({ config: every, db, logger: createLogger({ level: 'silent' }), notify: async () => undefined });
    const scheduler = new BackupScheduler(scheduled, createLogger({ level: 'silent' }));
    const since = service.store.list({ job: 'db', limit: 1 })[0]!.id;
    scheduler.start();
    try {
      expect(scheduler.nextRun('db')).toBeInstanceOf(Date);
      await waitFor(() => {
        const rows = service.store.list({ job: 'db', limit: 50 }).filter((r) => r.id > since && r.trigger === 'schedule');
        return rows.some((r) => r.status === 'verified') && rows.some((r) => r.status === 'skipped');
      }, { timeoutMs: 20_000, description: 'a scheduled verified run and a skipped overlapping tick' });
    } finally {
      await scheduler.stop();
      await scheduled.close();
    }
  });
});
