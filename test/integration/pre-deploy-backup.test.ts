import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../agent/state/db.js';
import { BackupStore } from '../../agent/backups/store.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';

// backupBeforeDeploy: the rollout runs the app's backup job first, links it to the deployment, and
// a failed backup stops the rollout before anything changes. Uses the STAND-IN mongodump.
const STANDIN = path.join(REPO_ROOT, 'test', 'fixtures', 'mongodump-standin', 'bin');

describe('pre-deploy backup (real CLI, sshd, agent; stand-in mongodump)', () => {
  let stack: Stack;
  const uri = (mode: string) => `mongodb://backup:Pre-deploy-pw-5@127.0.0.1:27017/sample?${new URLSearchParams({ standin: mode, collections: 'users:3' }).toString()}`;
  const setMongo = (url: string) => fs.writeFile(stack.envFile, `SAMPLE_GREETING=hello\nMONGO_URL=${url}\n`, { mode: 0o600 });
  const backups = () => {
    const db = openDatabase(path.join(stack.home, 'agent.db'));
    try {
      return new BackupStore(db).list({ limit: 100 });
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    stack = await startStack({
      appConfig: { backupBeforeDeploy: 'db' },
      agentConfig: {
        backups: {
          tools: { mongodump: path.join(STANDIN, 'mongodump'), mongorestore: path.join(STANDIN, 'mongorestore') },
          jobs: { db: { app: APP, schedule: '0 3 * * *', kind: 'mongodump', source: { uriEnv: 'MONGO_URL' } } },
        },
      },
    });
    await setMongo(uri('ok'));
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('runs the backup first and links it to the deployment', async () => {
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toMatch(/✓ backup .*backup \d+ of db written and verified/);
    const deployment = readState(stack.home, APP).deployments[0]!;
    const [backup] = backups();
    expect(backup).toMatchObject({ status: 'verified', deploymentId: deployment.id });
  });

  it('a failed backup stops the rollout before anything changes', async () => {
    // a warm standby exists, so "nothing changes" covers it too
    const second = await stack.repo.commit({ 'message.txt': 'second\n' }, 'second');
    expect((await stack.deploy(['push'])).code).toBe(0);
    const slotsBefore = readState(stack.home, APP).slots;
    const liveBefore = JSON.parse((await stack.get('/')).body);
    expect(liveBefore.release).toBe(releaseOfCommit(stack.home, APP, second));
    await setMongo(uri('fail'));
    const sha = await stack.repo.commit({ 'message.txt': 'not without a backup\n' }, 'needs a backup');
    const result = await stack.deploy(['push']);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('live slot untouched');
    expect(JSON.parse((await stack.get('/')).body)).toEqual(expect.objectContaining({ release: liveBefore.release }));
    const state = readState(stack.home, APP);
    expect(state.deployments[0]).toMatchObject({ releaseId: releaseOfCommit(stack.home, APP, sha), outcome: 'failed' });
    // nothing started: the target slot never ran the new release
    expect(state.slots.find((s) => s.releaseId === releaseOfCommit(stack.home, APP, sha) && s.state === 'running')).toBeUndefined();
    expect(state.events(state.deployments[0]!.id).map((e) => e.step)).not.toContain('starting');
    expect(state.slots).toEqual(slotsBefore);
    const standby = slotsBefore.find((s) => s.slot !== state.app?.liveSlot)!;
    const direct = await fetch(`http://127.0.0.1:${stack.slotPorts[standby.slot]}/`).then((r) => r.json());
    expect(direct).toMatchObject({ release: standby.releaseId });
    await setMongo(uri('ok'));
  });
});
