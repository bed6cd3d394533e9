/**
 * deploy promote, for real: staging and production as two apps of one box (one stack), and as two
 * boxes (two stacks). The same tarball (same sha256) on both sides, packed again here when that is
 * reproducible, fetched from the source when not; refusals by the source's gate; --force --reason
 * recorded on both sides; approval needs --yes without a terminal; the tag travels on.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { runCommand } from '../../lib/exec.js';
import { freePort } from '../helpers/ports.js';
import { httpGet, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';

const PROD_APP = 'shop';
const STAGING_APP = 'shop-staging';

function hostOf(stack: Stack) {
  return {
    address: stack.sshd.host, port: stack.sshd.port, user: stack.sshd.user,
    identityFile: stack.sshd.clientKeyPath, knownHostsFile: stack.sshd.knownHostsPath,
  };
}
const agentOf = (stack: Stack) => ({ port: stack.agentPort, tokenFile: path.join(stack.dir, 'agent.token') });

/** Promotion records and queued notifications of an app, read from the box's database. */
function promotionsOf(stack: Stack, app: string) {
  const db = openDatabase(path.join(stack.home, 'agent.db'));
  try {
    const outbox = db.prepare('SELECT event FROM outbox WHERE app = ? ORDER BY id').all(app) as { event: string }[];
    return { records: new StateStore(db).promotions(app), notified: outbox.map((o) => o.event) };
  } finally {
    db.close();
  }
}

async function served(url: string): Promise<string | undefined> {
  const answer = await httpGet(url);
  return answer.status === 200 ? (JSON.parse(answer.body) as { release?: string }).release : undefined;
}

const git = async (cwd: string, ...args: string[]) => {
  const result = await runCommand(['git', ...args], { cwd, timeoutMs: 30_000 });
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
};

describe('promote between two environments of one box', () => {
  let stack: Stack;
  let stagingUrl: string;
  const webhook = 'http://127.0.0.1:9/hook';

  beforeAll(async () => {
    stack = await startStack({ app: PROD_APP });
    // The staging app beside it: its own slots, public port and env file.
    const [blue, green, publicPort] = [await freePort(), await freePort(), await freePort()];
    const apps = stack.agentConfig.apps as Record<string, Record<string, unknown>>;
    const prod = apps[PROD_APP]!;
    const envFile = path.join(stack.dir, `${STAGING_APP}.env`);
    await fs.copyFile(stack.envFile, envFile);
    apps[STAGING_APP] = {
      ...prod, envFile, slots: { blue: { port: blue }, green: { port: green } },
      public: { ...(prod.public as object), listenPort: publicPort },
    };
    // Notifications are queued (the webhook is a closed port: delivery does not matter here).
    stack.agentConfig.notifications = { webhooks: { ops: { url: webhook } } };
    await fs.writeFile(stack.agentConfigPath, JSON.stringify(stack.agentConfig, null, 2), { mode: 0o600 });
    await fs.chmod(stack.agentConfigPath, 0o600);
    await stack.restartAgent();
    stagingUrl = `http://127.0.0.1:${publicPort}`;
    await stack.repo.commit({
      'deploy.config.json': JSON.stringify({
        app: PROD_APP, host: hostOf(stack), agent: agentOf(stack),
        environments: {
          staging: { app: STAGING_APP },
          production: { requireApproval: true, promotion: { from: 'staging', maxAge: '14d' }, gitTag: 'deploy/production/{date}-{shortSha}' },
        },
      }, null, 2),
    }, 'environments');
  }, 120_000);
  afterAll(async () => { await stack?.stop(); });

  it('promotes what passed staging: same sha256, packed again here, approval by --yes, tag carried, git tag made', async () => {
    const sha = await git(stack.repo.dir, 'rev-parse', 'HEAD');
    await git(stack.repo.dir, 'tag', '-a', 'v1.0.0', '-m', 'v1');
    const pushStarted = Date.now();
    const pushed = await stack.deploy(['--env', 'staging', 'push', '--sha', 'v1.0.0']);
    const pushMs = Date.now() - pushStarted;
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const releaseId = releaseOfCommit(stack.home, STAGING_APP, sha);
    expect(await served(stagingUrl)).toBe(releaseId);

    // Without a terminal and without --yes: a usage error naming --yes; nothing reaches production.
    const unapproved = await stack.deploy(['promote', '--to', 'production']);
    expect(unapproved.code, unapproved.stderr).toBe(2);
    expect(unapproved.stderr).toContain('--yes');
    expect(readState(stack.home, PROD_APP).releases).toEqual([]);

    const started = Date.now();
    const promoted = await stack.deploy(['promote', '--to', 'production', '--yes']);
    const promoteMs = Date.now() - started;
    expect(promoted.code, promoted.stderr + promoted.stdout).toBe(0);
    const said = promoted.stderr + promoted.stdout;
    expect(said).toContain('the same as the source\'s (nothing fetched)');
    expect(said).toContain('production requires approval');
    expect(await served(stack.publicUrl)).toBe(releaseId);

    const staging = readState(stack.home, STAGING_APP).releases.find((r) => r.releaseId === releaseId)!;
    const production = readState(stack.home, PROD_APP).releases.find((r) => r.releaseId === releaseId)!;
    expect(production.sha256).toBe(staging.sha256);
    expect(await fs.stat(path.join(stack.home, 'artifacts', PROD_APP, `${releaseId}.tar.gz`))).toBeTruthy();
    const deployment = readState(stack.home, PROD_APP).deployments[0]!;
    expect(deployment).toMatchObject({ env: 'production', tag: 'v1.0.0', outcome: 'succeeded', promotion: { from: 'staging', forced: false, reason: null } });
    expect(await git(stack.repo.dir, 'tag', '-l', 'deploy/production/*')).toMatch(/^deploy\/production\/\d{8}-\d{6}-[0-9a-f]{12}$/);
    expect(said).toContain('git push origin deploy/production/');
    console.log(`[figures] one box: push to staging ${pushMs} ms, promote to production ${promoteMs} ms`);
  }, 120_000);

  it('refuses a release never deployed to staging, and one swapped back there; nothing changes on production', async () => {
    const live = await served(stack.publicUrl);
    const sha = await stack.repo.commit({ 'message.txt': 'never on staging\n' }, 'not on staging');
    const never = await stack.deploy(['promote', sha, '--to', 'production', '--yes']);
    expect(never.code, never.stderr).toBe(3);
    expect(never.stderr).toContain('never deployed to staging');

    const bad = await stack.repo.commit({ 'FAIL_HEALTH_AFTER_MS': '200\n' }, 'goes bad after going live');
    const pushed = await stack.deploy(['--env', 'staging', 'push']);
    expect(pushed.code, pushed.stdout).toBe(4);
    const refused = await stack.deploy(['promote', bad, '--to', 'production', '--yes']);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain('promotion of');
    expect(refused.stderr).toContain('refused');
    expect(refused.stderr).toContain('swapped back');
    expect(await served(stack.publicUrl)).toBe(live);
    expect(promotionsOf(stack, PROD_APP).notified).toContain('promotion_refused');
  }, 120_000);

  it('--force --reason promotes past the gate (rolled back on staging), recorded and notified on both sides', async () => {
    const sha = await stack.repo.commit({ 'FAIL_HEALTH_AFTER_MS': null, 'message.txt': 'second\n' }, 'fixed');
    expect((await stack.deploy(['--env', 'staging', 'push'])).code).toBe(0);
    expect((await stack.deploy(['--env', 'staging', 'rollback', '--reason', 'checking something'])).code).toBe(0);
    const refused = await stack.deploy(['promote', sha, '--to', 'production', '--yes']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('rolled back');
    const noReason = await stack.deploy(['promote', sha, '--to', 'production', '--yes', '--force']);
    expect(noReason.code).toBe(2);

    const forced = await stack.deploy(['promote', sha, '--to', 'production', '--yes', '--force', '--reason', 'verified by hand']);
    expect(forced.code, forced.stderr + forced.stdout).toBe(0);
    const releaseId = releaseOfCommit(stack.home, PROD_APP, sha);
    expect(await served(stack.publicUrl)).toBe(releaseId);
    expect(readState(stack.home, PROD_APP).deployments[0]).toMatchObject({ promotion: { from: 'staging', forced: true, reason: 'verified by hand' } });
    const source = promotionsOf(stack, STAGING_APP);
    expect(source.records[0]).toMatchObject({ side: 'source', event: 'forced', releaseId, reason: 'verified by hand', toEnv: 'production' });
    expect(source.notified).toContain('promotion_forced');
    const target = promotionsOf(stack, PROD_APP);
    expect(target.records[0]).toMatchObject({ side: 'target', event: 'forced', releaseId, reason: 'verified by hand', fromEnv: 'staging' });
    expect(target.notified).toContain('promotion_forced');
    // Audited in the history of both sides.
    const sourceHistory = await stack.deploy(['--env', 'staging', 'history']);
    expect(sourceHistory.stdout).toMatch(/FORCED promotion of \S+ to production[\s\S]*reason: verified by hand/);
    const targetHistory = await stack.deploy(['--env', 'production', 'history']);
    expect(targetHistory.stdout).toContain('forced past its gate: verified by hand');
  }, 180_000);

  it('deploy lock release --force taking someone else\'s lock is notified lock_overridden', async () => {
    const token = (await fs.readFile(path.join(stack.dir, 'agent.token'), 'utf8')).trim();
    const releaseId = readState(stack.home, PROD_APP).releases[0]!.releaseId;
    const reserved = await fetch(`http://127.0.0.1:${stack.agentPort}/apps/${PROD_APP}/lock`, {
      method: 'POST', body: JSON.stringify({ releaseId }),
      headers: { authorization: `Bearer ${token}`, 'x-slipway-actor': 'alice@laptop', 'content-type': 'application/json' },
    });
    expect(reserved.status).toBe(201);
    const refused = await stack.deploy(['--env', 'production', 'lock', 'release']);
    expect(refused.code).toBe(3);
    expect((await stack.deploy(['--env', 'production', 'lock', 'release', '--force'])).code).toBe(0);
    expect(promotionsOf(stack, PROD_APP).notified).toContain('lock_overridden');
  }, 60_000);

  it('at start the agent drops kept tarballs without their release, or not of the recorded size (a crash before they reached the disk)', async () => {
    const dir = path.join(stack.home, 'artifacts', PROD_APP);
    const [kept, damaged] = readState(stack.home, PROD_APP).releases.map((r) => r.releaseId);
    const stray = path.join(dir, 'cccccccccccc-dddddddddddd.tar.gz');
    await fs.writeFile(stray, 'left by a crash', { mode: 0o600 });
    await fs.truncate(path.join(dir, `${damaged}.tar.gz`), 10);
    await stack.restartAgent();
    const left = await fs.readdir(dir);
    expect(left).toContain(`${kept}.tar.gz`);
    expect(left).not.toContain(`${damaged}.tar.gz`);
    expect(left).not.toContain(path.basename(stray));
  }, 60_000);
});

describe('promote between two boxes', () => {
  let staging: Stack;
  let production: Stack;

  beforeAll(async () => {
    [staging, production] = await Promise.all([startStack({ app: PROD_APP }), startStack({ app: PROD_APP })]);
    await staging.repo.commit({
      '.gitignore': 'dist/\n',
      'deploy.config.json': JSON.stringify({
        app: PROD_APP, agent: agentOf(staging), include: ['dist'], defaultEnv: 'staging',
        environments: {
          staging: { hosts: [hostOf(staging)] },
          production: { hosts: [hostOf(production)], agent: agentOf(production), promotion: { from: 'staging', maxAge: '1d' } },
        },
      }, null, 2),
    }, 'two boxes');
  }, 120_000);
  afterAll(async () => { await Promise.all([staging?.stop(), production?.stop()]); });

  it('fetches the source\'s tarball when packing here gives other bytes, and verifies it: same sha256 on both boxes', async () => {
    const dist = path.join(staging.repo.dir, 'dist');
    await fs.mkdir(dist, { recursive: true });
    await fs.writeFile(path.join(dist, 'bundle.js'), '// built in CI\n');
    const sha = await git(staging.repo.dir, 'rev-parse', 'HEAD');
    const started = Date.now();
    expect((await staging.deploy(['push'])).code).toBe(0);
    const pushMs = Date.now() - started;
    const releaseId = releaseOfCommit(staging.home, PROD_APP, sha);
    // The build output here is no longer what staging got: packing again gives other files.
    await fs.writeFile(path.join(dist, 'bundle.js'), '// rebuilt, different\n');

    const promoteStarted = Date.now();
    const promoted = await staging.deploy(['promote', releaseId.slice(0, 12), '--to', 'production']);
    const promoteMs = Date.now() - promoteStarted;
    expect(promoted.code, promoted.stderr + promoted.stdout).toBe(0);
    expect(promoted.stderr + promoted.stdout).toContain('fetched');
    expect(await served(production.publicUrl)).toBe(releaseId);
    const [a, b] = [readState(staging.home, PROD_APP), readState(production.home, PROD_APP)];
    expect(b.releases[0]!.sha256).toBe(a.releases.find((r) => r.releaseId === releaseId)!.sha256);
    expect(b.deployments[0]).toMatchObject({ env: 'production', promotion: { from: 'staging', forced: false } });
    console.log(`[figures] two boxes: push to staging ${pushMs} ms, promote (fetch + upload) ${promoteMs} ms`);

    // Promoting it again: production has it live, nothing to do.
    const again = await staging.deploy(['promote', releaseId.slice(0, 12), '--to', 'production']);
    expect(again.code).toBe(0);
    expect(again.stderr + again.stdout).toContain('already live');
  }, 180_000);
});
