import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../agent/state/db.js';
import { BackupStore } from '../../agent/backups/store.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { isAlive } from '../helpers/nginx.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// `deploy backup run|list|restore` through the real CLI, SSH tunnel and agent process, with the
// STAND-IN mongodump/mongorestore of test/fixtures/mongodump-standin; and a kill -9 of the agent
// in the middle of a dump (case 28).

const STANDIN = path.join(REPO_ROOT, 'test', 'fixtures', 'mongodump-standin', 'bin');
const PASSWORD = 'E2e-db-pw-771';

describe('deploy backup (real CLI, sshd, agent process; stand-in mongodump)', () => {
  let stack: Stack;
  let webhook: http.Server;
  const hooks: string[] = [];
  let dir: string;

  const uri = (mode: string, extra: Record<string, string> = {}) =>
    `mongodb://backup:${PASSWORD}@127.0.0.1:27017/sample?${new URLSearchParams({ standin: mode, collections: 'users:2,events:7', ...extra }).toString()}`;
  const setMongo = (url: string) => fs.writeFile(stack.envFile, `SAMPLE_GREETING=hello\nMONGO_URL=${url}\n`, { mode: 0o600 });
  const rows = () => {
    const db = openDatabase(path.join(stack.home, 'agent.db'));
    try {
      return { backups: new BackupStore(db).list({ limit: 100 }), audit: db.prepare("SELECT * FROM audit WHERE action LIKE '%backups%' ORDER BY id").all() as { action: string; args: string; result: string }[] };
    } finally {
      db.close();
    }
  };
  const jobDir = () => path.join(stack.home, 'backups', 'sample', 'db');

  beforeAll(async () => {
    webhook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => { hooks.push(body); res.end('ok'); });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    const { port } = webhook.address() as { port: number };
    stack = await startStack({
      agentConfig: {
        backups: {
          notifyWebhook: `http://127.0.0.1:${port}/hook`,
          tools: { mongodump: path.join(STANDIN, 'mongodump'), mongorestore: path.join(STANDIN, 'mongorestore') },
          jobs: { db: { app: 'sample', schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' } } },
        },
      },
    });
    dir = stack.dir;
    await setMongo(uri('ok'));
  });

  afterAll(async () => {
    await stack?.stop();
    await new Promise((resolve) => webhook?.close(resolve));
  });

  it('backup list shows the job before any run', async () => {
    const result = await stack.deploy(['backup', 'list']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^db {2}\(app sample, mongodump, schedule "0 3 \* \* \*", next \d{4}-\d\d-\d\dT03:00:00\.000Z\)$/m);
    expect(result.stdout).toContain('last verified: none: there is no verified backup of this job');
    expect(result.stdout).toContain('offsite:       no offsite copy configured');
  });

  it('backup run waits for the dump and its verification, and list shows the verified backup', async () => {
    const result = await stack.deploy(['backup', 'run', 'db']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('backup #1 of db (mongodump): verified');
    expect(result.stdout).toContain('✓ archive: mongodump archive v0.1: 2 collection(s), 9 document(s), matching what mongodump reported');
    expect(result.stdout).toContain('✓ restore drill: mongorestore --dryRun accepted the archive (2 namespace(s))');
    const listed = await stack.deploy(['--json', 'backup', 'list']);
    const overview = JSON.parse(listed.stdout);
    expect(overview.jobs[0]).toMatchObject({ job: 'db', lastVerified: { id: 1, level: 'restore-dry-run' }, kept: { count: 1, verified: 1 } });
    expect(overview.runs[0]).toMatchObject({ id: 1, status: 'verified', trigger: 'manual', requestedBy: expect.stringMatching(/@/) });
  });

  it('a failing dump exits non-zero with the reason and a hint, notifies, and keeps the earlier backup', async () => {
    await setMongo(uri('fail'));
    const result = await stack.deploy(['backup', 'run', 'db']);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('deploy: backup #2 of db is failed: the dump exited with code 1');
    expect(result.stderr).toContain('hint: earlier backups are untouched');
    expect(result.stdout).toContain('[REDACTED]');
    await waitFor(() => hooks.some((h) => h.includes('backup db #2')), { description: 'the webhook notification' });
    expect(existsSync(rows().backups.find((r) => r.id === 1)!.file!)).toBe(true);
    await setMongo(uri('ok'));
  });

  it('restore needs --yes, refuses a run without a file, and restores through the agent; --to is never stored or logged with its password', async () => {
    const store = path.join(dir, 'restored.json');
    const refused = await stack.deploy(['backup', 'restore', '1']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('restoring backup #1 replaces the data in its job\'s database');
    expect(existsSync(store)).toBe(false);

    const gone = await stack.deploy(['backup', 'restore', '2', '--yes']);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toContain('backup #2 of db has no file (the run failed)');

    const to = `mongodb://other:TopSecret-42@127.0.0.1:27018/copy?store=${encodeURIComponent(store)}`;
    const result = await stack.deploy(['backup', 'restore', '1', '--yes', '--to', to]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^✓ restored backup #1 of db into mongodb:\/\/other:\[REDACTED\]@127\.0\.0\.1:27018\/copy\?store=\S+ in \d+/m);
    expect(JSON.parse(readFileSync(store, 'utf8'))).toMatchObject({ target: '127.0.0.1:27018/copy', counts: { 'sample.users': 2, 'sample.events': 7 } });
    const audit = rows().audit;
    expect(audit.map((a) => [a.action, a.result])).toEqual(expect.arrayContaining([
      ['POST /backups/:job/run', '200'], ['POST /backups/:id/restore', '410'], ['POST /backups/:id/restore', '200'],
    ]));
    const restoreAudit = audit.filter((a) => a.action === 'POST /backups/:id/restore').at(-1)!;
    expect(restoreAudit.args).toContain('other:[REDACTED]@');
    for (const text of [JSON.stringify(audit), stack.agent.log(), JSON.stringify(rows().backups), hooks.join('\n')]) {
      expect(text).not.toContain('TopSecret-42');
      expect(text).not.toContain(PASSWORD);
    }
  });

  it('case 28: kill -9 of the agent mid-dump leaves only a temp file; the next start kills the orphaned dump, removes it and records why', async () => {
    const pidFile = path.join(dir, 'dump.pids');
    await setMongo(uri('hang', { pidFile }));
    const token = readFileSync(path.join(dir, 'agent.token'), 'utf8').trim();
    const started = await fetch(`http://127.0.0.1:${stack.agentPort}/backups/db/run`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ wait: false }),
    });
    expect(started.status).toBe(202);
    const { backup } = await started.json() as { backup: { id: number; status: string } };
    expect(backup.status).toBe('running');
    const pids = await waitFor(() => (existsSync(pidFile) ? JSON.parse(readFileSync(pidFile, 'utf8')) as { pid: number; child: number } : null), { description: 'the dump to start' });
    const temp = await waitFor(async () => (await fs.readdir(jobDir())).find((n) => n.startsWith('.tmp-')), { description: 'the temp file' });

    await stack.agent.kill('SIGKILL');
    // What the crash leaves: the temp file and the orphaned dump, no final file for this run.
    expect(existsSync(path.join(jobDir(), temp))).toBe(true);
    expect(isAlive(pids.pid)).toBe(true);
    expect(rows().backups.find((r) => r.id === backup.id)).toMatchObject({ status: 'running', file: null });

    await stack.restartAgent();
    expect(rows().backups.find((r) => r.id === backup.id)).toMatchObject({ status: 'failed', reason: 'interrupted: the agent stopped during the run; its temp file was removed' });
    expect(existsSync(path.join(jobDir(), temp))).toBe(false);
    await waitFor(() => !isAlive(pids.pid) && !isAlive(pids.child), { description: 'the orphaned dump and its child to be killed' });
    expect((await fs.readdir(jobDir())).filter((n) => n.startsWith('.tmp-'))).toEqual([]);

    await setMongo(uri('ok'));
    const list = await stack.deploy(['backup', 'list']);
    expect(list.stdout).toMatch(new RegExp(`#${backup.id} +db +failed .*interrupted: the agent stopped during the run`));
  });
});
