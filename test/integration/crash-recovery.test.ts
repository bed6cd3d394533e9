import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';
import { Pm2Adapter } from '../../agent/pm2.js';

/**
 * kill -9 of the agent at every step boundary of a rollout (held there by the test-only
 * SLIPWAY_FAULT_PAUSE_BEFORE switch), then a normal restart: exactly one slot is live and healthy,
 * SQLite agrees with nginx and PM2, and the interrupted deployment has a terminal state and a reason.
 */
describe('crash recovery: SIGKILL of the agent at each step boundary and inside the switch', () => {
  let stack: Stack;
  let pm2: Pm2Adapter;
  const state = () => readState(stack.home, APP);
  /** A release id covers the commit and the files: the release on the box packed from `sha`. */
  const releaseOf = (sha: string): string => releaseOfCommit(stack.home, APP, sha);

  beforeAll(async () => {
    // Checks every 250 ms (each with a 500 ms timeout): at 100 ms the 200 ms timeouts could fail
    // three rounds in a row on a busy 2-core box and roll a healthy release back.
    stack = await startStack({ appConfig: { watch: { windowMs: 1000, intervalMs: 250, failuresToRollback: 3, keepPreviousWarm: false } } });
    pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    await pm2?.disconnect();
    await stack?.stop();
  });

  const cases: { step: string; newReleaseLive: boolean }[] = [
    { step: 'preflight', newReleaseLive: false },
    { step: 'starting', newReleaseLive: false },
    { step: 'healthy', newReleaseLive: false },
    { step: 'switching', newReleaseLive: false },
    // Inside the switch: the include (with the new release in the standby slot) is applied, the
    // flag has not moved yet; then the flag has moved and SQLite does not know yet.
    { step: 'flip', newReleaseLive: false },
    { step: 'record', newReleaseLive: true },
    { step: 'watching', newReleaseLive: true },
    { step: 'settle', newReleaseLive: true },
  ];

  for (const { step, newReleaseLive } of cases) {
    it(`killed before "${step}": one healthy live slot, state consistent, deployment resolved`, async () => {
      const before = state();
      const liveBefore = before.slots.find((s) => s.slot === before.app?.liveSlot)!.releaseId!;
      await stack.restartAgent({ env: { SLIPWAY_FAULT_PAUSE_BEFORE: step } });
      const sha = await stack.repo.commit({ 'message.txt': `killed before ${step}\n` }, `crash at ${step}`);
      const cli = stack.deployInBackground(['push']);
      const deploymentId = await waitFor(() => {
        const s = state();
        const d = s.deployments[0];
        if (!d || d.releaseId !== releaseOf(sha)) return null;
        return s.events(d.id).some((e) => e.message?.includes(`paused before ${step}`)) ? d.id : null;
      }, { timeoutMs: 60_000, description: `the rollout of ${sha.slice(0, 12)} to pause before ${step}` });

      await stack.restartAgent({ crash: true });
      cli.kill();
      await cli.done;

      const after = state();
      const liveSlot = after.app?.liveSlot;
      expect(liveSlot).toBeTruthy();
      const liveRelease = after.slots.find((s) => s.slot === liveSlot)!.releaseId!;
      expect(liveRelease).toBe(newReleaseLive ? releaseOf(sha) : liveBefore);

      // nginx serves exactly what SQLite says, and it answers
      const answer = await stack.get('/');
      expect(answer.status).toBe(200);
      expect(answer.headers['x-slipway-slot']).toBe(liveSlot);
      expect(JSON.parse(answer.body)).toMatchObject({ release: liveRelease, slot: liveSlot });

      // PM2 runs the live slot from its release dir; a stopped slot has no process
      const proc = await pm2.describe(`${APP}-${liveSlot}`);
      expect(proc?.status).toBe('online');
      expect(proc?.pmCwd).toBe(await fs.realpath(path.join(stack.home, 'releases', APP, liveRelease)));
      for (const s of after.slots.filter((x) => x.slot !== liveSlot)) {
        const other = await pm2.describe(`${APP}-${s.slot}`);
        if (s.state === 'running') expect(other?.status).toBe('online');
        else expect(other).toBeNull();
      }

      const deployment = after.deployments.find((d) => d.id === deploymentId)!;
      expect(deployment.outcome).toBe(newReleaseLive ? 'succeeded' : 'failed');
      expect(deployment.reason).toContain(`the agent stopped during`);
      expect(after.lock).toBeUndefined();
      expect((await fs.readdir(path.join(stack.home, 'releases', APP))).filter((f) => f.startsWith('.tmp'))).toEqual([]);
      expect(await fs.readdir(path.join(stack.home, 'incoming'))).toEqual([]);

      // and the next rollout works normally
      const next = await stack.deploy(['push']);
      if (!newReleaseLive) expect(next.code, next.stderr + next.stdout).toBe(0);
      expect(JSON.parse((await stack.get('/')).body).release).toBe(releaseOf(sha));
    });
  }
});
