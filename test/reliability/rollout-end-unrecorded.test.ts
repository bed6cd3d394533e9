/**
 * The agent cannot record the end of a rollout: its home (with agent.db) is on a small tmpfs that
 * fills up during the watch window, after traffic moved. The end is a SQLite transaction that
 * fails with SQLITE_FULL. The agent must still end the progress stream (without a made-up
 * result: the outcome is unknown), so `deploy push` ends with agent_stream_cut (exit 6,
 * in_doubt) instead of waiting forever; the agent stays up; once there is room again and the
 * agent restarts, its crash recovery settles the deployment by what nginx serves and frees the lock.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { liveView } from '../helpers/box.js';

const DISK = '160m';

describe('a rollout whose end cannot be recorded (state database on a full disk)', () => {
  let parent: string;
  let disk: SmallDisk | undefined;
  let stack: Stack;
  let filler: string;

  beforeAll(async () => {
    parent = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-smalldisk-'));
    disk = await mountSmallDisk(parent, DISK);
    filler = path.join(disk.dir, 'filler');
    stack = await startStack({
      homeDir: path.join(disk.dir, 'home'),
      // A window long enough for the test to fill the disk while it runs; it ends on its own.
      appConfig: { watch: { windowMs: 15_000, intervalMs: 250, failuresToRollback: 3, keepPreviousWarm: true } },
    });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    if (filler) await fs.rm(filler, { force: true });
    await stack?.stop();
    await disk?.unmount();
    if (parent) await fs.rm(parent, { recursive: true, force: true });
  });

  /** Takes every free block of the disk, as a runaway log would. */
  const fill = async () => {
    const st = await fs.statfs(disk!.dir);
    const result = await runCommand(['fallocate', '-l', String(st.bavail * st.bsize), filler], { timeoutMs: 10_000 });
    expect(result.exitCode, `fallocate: ${result.stderr}`).toBe(0);
  };

  it('the stream ends without a result -> agent_stream_cut (exit 6); a push meanwhile is told the lock is orphaned; the next agent start settles the deployment and frees the lock', async () => {
    const sha = await stack.repo.commit({ 'message.txt': 'end not recorded\n' }, 'end not recorded');
    const cli = stack.deployInBackground(['push']);
    let exited = false;
    void cli.done.then(() => { exited = true; });
    let deploymentId = 0;
    try {
      deploymentId = await waitFor(async () => {
        if (exited) throw new Error(`the CLI exited before the watch window: ${JSON.stringify(await cli.done)}`);
        const s = readState(stack.home, APP);
        const d = s.deployments[0];
        if (!d || d.releaseId === null || !d.releaseId.startsWith(sha.slice(0, 12))) return null;
        return s.events(d.id).some((e) => e.step === 'watching') ? d.id : null;
      }, { timeoutMs: 90_000, intervalMs: 50, description: 'the rollout to reach its watch window' });
      await fill();

      // Before the fix the stream stayed open for good: this deadline is what failed.
      const result = await withDeadline(cli.done, 60_000, 'deploy push to exit after the end could not be recorded');
      expect(result.code, result.stderr + result.stdout).toBe(6);
      expect(result.stderr).toContain('the agent ended the progress stream without a result');
      expect(result.stderr).toMatch(/hint: .*deploy status.*deploy history/);
      expect(stack.agent.log()).toContain('could not record the end of a rollout');
      // The agent is up and answers.
      const health = await fetch(`http://127.0.0.1:${stack.agentPort}/health`);
      expect(health.ok).toBe(true);

      // The end was never written: the deployment is unfinished, and the lock (its release is a
      // write too) is still held by the running agent for that deployment.
      const stuck = readState(stack.home, APP);
      expect(stuck.deployments.find((d) => d.id === deploymentId)?.outcome).toBeNull();
      expect(stuck.lock?.deploymentId).toBe(deploymentId);
    } finally {
      await fs.rm(filler, { force: true });
      cli.kill();
    }

    // Room again, the same agent still running: a push is refused (the lock is held), and told that
    // waiting would never end and what frees it, not to wait.
    await stack.repo.commit({ 'message.txt': 'while the lock is orphaned\n' }, 'while the lock is orphaned');
    const refused = await stack.deploy(['push']);
    expect(refused.code, refused.stderr + refused.stdout).toBe(3);
    expect(refused.stderr).toContain(`deployment #${deploymentId} ended, but this agent could not record how`);
    expect(refused.stderr).toMatch(/hint: .*restart the agent.*deploy lock release --force/);

    // Room again, and the agent restarts (as after a reboot or an upgrade): its crash recovery
    // settles the unfinished deployment by what nginx serves, and the stale lock goes.
    await stack.restartAgent();
    const after = readState(stack.home, APP);
    const deployment = after.deployments.find((d) => d.id === deploymentId)!;
    const newRelease = releaseOfCommit(stack.home, APP, sha);
    expect(deployment.outcome).toBe('succeeded');
    expect(deployment.reason).toContain('was serving and healthy, so it was kept');
    expect(after.lock).toBeUndefined();
    expect(await liveView(stack)).toMatchObject({ status: 200, release: newRelease });

    await stack.repo.commit({ 'message.txt': 'after the recovery\n' }, 'after the recovery');
    const next = await stack.deploy(['push']);
    expect(next.code, next.stderr + next.stdout).toBe(0);
  });
});
