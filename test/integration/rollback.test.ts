import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';
import { liveView } from '../helpers/box.js';
import { Pm2Adapter } from '../../agent/pm2.js';

/**
 * The two rollback scenarios of issue 11, through the CLI against real sshd, nginx, PM2 and
 * SQLite, proving what nginx serves and what the state database records afterwards.
 */
describe('rollback walks back through deploy order (real stack)', () => {
  let stack: Stack;
  const shas: string[] = [];
  const state = () => readState(stack.home, APP);

  beforeAll(async () => {
    stack = await startStack();
    shas.push(await stack.repo.head());
    for (const message of ['B', 'C']) shas.push(await stack.repo.commit({ 'message.txt': `${message}\n` }, message));
    for (const sha of shas) {
      const pushed = await stack.deploy(['push', '--sha', sha]);
      expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    }
    // From here on each commit stands for its release (its id starts with the commit's first 12 hex).
    shas.splice(0, shas.length, ...shas.map((sha) => releaseOfCommit(stack.home, APP, sha)));
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('A, B, C; rollback → B; rollback → A, never C again (C still runs warm); a third is refused', async () => {
    const [a, b, c] = shas as [string, string, string];
    const first = await stack.deploy(['rollback', '--reason', 'checkout broken']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: b });

    const second = await stack.deploy(['rollback']);
    expect(second.code, second.stderr + second.stdout).toBe(0);
    expect(second.stderr).toMatch(/starting .*healthy .*switching .*watching/s);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });

    const third = await stack.deploy(['rollback']);
    expect(third.code).toBe(3);
    expect(third.stderr).toContain('no earlier good release');
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });

    const s = state();
    expect(s.releases.find((r) => r.releaseId === c)?.rolledBack).toMatchObject({ reason: 'checkout broken' });
    expect(s.releases.find((r) => r.releaseId === b)?.rolledBack).toMatchObject({ reason: null });
    expect(s.releases.find((r) => r.releaseId === a)?.rolledBack).toBeNull();
    expect(s.releases.map((r) => r.state)).toEqual(['good', 'good', 'good']);
  });

  it('deploy releases and deploy history show who rolled back from what, and why', async () => {
    const [, b, c] = shas as [string, string, string];
    const releases = await stack.deploy(['releases']);
    expect(releases.code, releases.stderr).toBe(0);
    expect(releases.stdout).toMatch(new RegExp(`^${c.slice(0, 12)}\\S*\\s+rolled_back .*\\(rolled back by \\S+@\\S+ \\d+[smhd] ago: checkout broken\\)$`, 'm'));
    // b still runs warm in its slot: shown as standby, with its mark
    expect(releases.stdout).toMatch(new RegExp(`^${b.slice(0, 12)}\\S*\\s+standby .*\\(rolled back by \\S+@\\S+ \\d+[smhd] ago\\)$`, 'm'));
    const json = JSON.parse((await stack.deploy(['--json', 'releases'])).stdout.trim());
    expect(json.find((r: { releaseId: string }) => r.releaseId === c)).toMatchObject({ state: 'rolled_back', recordedState: 'good', rolledBack: { reason: 'checkout broken' } });

    const history = await stack.deploy(['history', '-n', '3']);
    expect(history.stdout).toMatch(new RegExp(`rollback +${shas[0]!.slice(0, 12)}\\S* .*\\n(.*\\n)? {4}from ${b.slice(0, 12)}\\S* \\(marked rolled back\\)`));
    expect(history.stdout).toMatch(new RegExp(`rollback +${b.slice(0, 12)}\\S* .*\\n(.*\\n)? {4}from ${c.slice(0, 12)}\\S* \\(marked rolled back\\)\\n {4}note: checkout broken`));
  });

  it('--to takes the 7-character prefix deploy releases shows; going forward clears the mark and marks nothing', async () => {
    const [a, , c] = shas as [string, string, string];
    const result = await stack.deploy(['rollback', '--to', c.slice(0, 7)]);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: c });
    const s = state();
    expect(s.releases.find((r) => r.releaseId === c)?.rolledBack).toBeNull();
    expect(s.releases.find((r) => r.releaseId === a)?.rolledBack).toBeNull();
    const tooShort = await stack.deploy(['rollback', '--to', c.slice(0, 6)]);
    expect(tooShort.code).toBe(2);
    expect(await liveView(stack)).toMatchObject({ release: c });
  });
});

describe('a forced rollback to a bad release is watched and keeps the mark (real stack)', () => {
  let stack: Stack;
  let pm2: Pm2Adapter;
  let a: string;
  let d: string;
  const state = () => readState(stack.home, APP);

  beforeAll(async () => {
    stack = await startStack({
      // D fails 4 s after it starts: after its health gate and switch, inside an 8 s window.
      appConfig: { watch: { windowMs: 8000, activationWindowMs: 2000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: false } },
    });
    pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    const aSha = await stack.repo.head();
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    a = releaseOfCommit(stack.home, APP, aSha);
    const dSha = await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: '4000\n' }, 'goes bad 4 s after start');
    const bad = await stack.deploy(['push']);
    expect(bad.code, bad.stderr + bad.stdout).toBe(4);
    d = releaseOfCommit(stack.home, APP, dSha);
    expect(state().releases.find((r) => r.releaseId === d)?.state).toBe('bad');
  });
  afterAll(async () => {
    await pm2?.disconnect();
    await stack?.stop();
  });

  it('rollback --to D --force: D gets the full window, fails it, traffic swaps back to A; D stays bad; history shows the override', async () => {
    const result = await stack.deploy(['rollback', '--to', d, '--force', '--reason', 'one more try']);
    expect(result.code, result.stderr + result.stdout).toBe(4);
    expect(result.stderr).toMatch(/switching .*nginx serves .*watching .*failed: .*swap_back/s);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });
    const s = state();
    expect(s.releases.find((r) => r.releaseId === d)?.state).toBe('bad');
    expect(s.deployments[0]).toMatchObject({ kind: 'rollback', releaseId: d, forced: true, targetState: 'bad', badMark: 'kept', outcome: 'rolled_back' });

    const history = await stack.deploy(['history', '-n', '1']);
    expect(history.stdout).toMatch(/rollback .* rolled_back .* FORCED/);
    expect(history.stdout).toContain('forced: the target was marked bad; mark kept');
    const json = JSON.parse((await stack.deploy(['--json', 'history', '-n', '1'])).stdout.trim());
    expect(json[0]).toMatchObject({ forced: true, targetState: 'bad', badMark: 'kept' });
  });

  it('a plain rollback never goes to D: refused, A keeps serving', async () => {
    const result = await stack.deploy(['rollback']);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('no earlier good release');
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });
  });

  it('rollback --no-wait returns once traffic moved; the agent still watches and swaps back', async () => {
    const result = await stack.deploy(['rollback', '--to', d.slice(0, 7), '--force', '--no-wait']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toContain('the agent keeps watching deployment');
    const id = state().deployments[0]!.id;
    const finished = await waitFor(() => state().deployments.find((x) => x.id === id && x.outcome !== null) ?? null,
      { timeoutMs: 60_000, description: 'the detached rollback to finish its watch window' });
    expect(finished).toMatchObject({ outcome: 'rolled_back', badMark: 'kept' });
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });
    expect(state().lock).toBeUndefined();
  });

  it('a rollback keeps the slot it leaves running through its window, then settles like a push', async () => {
    const eSha = await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: null, 'message.txt': 'E\n' }, 'E');
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const e = releaseOfCommit(stack.home, APP, eSha);
    const eSlot = state().app!.liveSlot!;
    const cli = stack.deployInBackground(['rollback']);
    // Inside the rollback's window the slot it left still runs (a swap-back needs it).
    await waitFor(() => state().deployments[0]?.kind === 'rollback' && state().deployments[0]?.state === 'watching',
      { timeoutMs: 60_000, description: 'the rollback to be in its watch window' });
    expect((await pm2.describe(`${APP}-${eSlot}`))?.status).toBe('online');
    const result = await cli.done;
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toContain(`stopped the previous slot ${eSlot}`);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });
    expect(await pm2.describe(`${APP}-${eSlot}`)).toBeNull();
    expect(state().slots.find((s) => s.slot === eSlot)?.state).toBe('stopped');
    expect(state().releases.find((r) => r.releaseId === e)?.rolledBack).not.toBeNull();
  });
});
