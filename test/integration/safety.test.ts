import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';
import { agentRequest } from '../helpers/box.js';
import { Pm2Adapter } from '../../agent/pm2.js';

/** Watch window and swap-back, rollback, lock and retention against real sshd, nginx and PM2. */
describe('rollout safety (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;
  let pm2: Pm2Adapter;
  const shas: string[] = [];
  const state = () => readState(stack.home, APP);
  const served = async () => JSON.parse((await stack.get('/')).body) as { release: string; slot: string };
  /** A release id covers the commit and the files: the release on the box packed from `sha`. */
  const releaseOf = (sha: string): string => releaseOfCommit(stack.home, APP, sha);

  beforeAll(async () => {
    stack = await startStack({
      appConfig: { watch: { windowMs: 2500, intervalMs: 150, failuresToRollback: 3, keepPreviousWarm: false } },
      agentConfig: { retention: { keepReleases: 2, schedule: '0 0 1 1 *' } },
    });
    pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    shas.push(await stack.repo.head());
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    await pm2?.disconnect();
    await stack?.stop();
  });

  it('after a clean watch window the previous slot is stopped', async () => {
    shas.push(await stack.repo.commit({ 'message.txt': 'two\n' }, 'two'));
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toMatch(/watching .*window passed/);
    expect(result.stderr).toContain('stopped the previous slot blue');
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!), slot: 'green' });
    expect(await pm2.describe(`${APP}-blue`)).toBeNull();
    expect(state().slots.find((s) => s.slot === 'blue')?.state).toBe('stopped');
  });

  it('a release whose health fails after the switch is swapped back to the warm previous slot', async () => {
    const bad = await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: '600\n' }, 'goes bad after start');
    const result = await stack.deploy(['push']);
    await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: null }, 'fixed');
    expect(result.code, result.stderr + result.stdout).toBe(4);
    expect(result.stdout).toContain('was rolled back');
    expect(result.stdout).toMatch(/(public|slot) check: HTTP 503/);
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!), slot: 'green' });
    expect(await pm2.describe(`${APP}-blue`)).toBeNull();
    const s = state();
    expect(s.app?.liveSlot).toBe('green');
    expect(s.releases.find((r) => r.releaseId === releaseOf(bad))?.state).toBe('bad');
    const deployment = s.deployments[0]!;
    expect(deployment).toMatchObject({ outcome: 'rolled_back', releaseId: releaseOf(bad) });
    expect(deployment.reason).toContain('HTTP 503');
    const swap = s.events(deployment.id).find((e) => e.step === 'swap_back' && e.status === 'ok');
    expect(swap?.elapsedMs).toBeTypeOf('number');
  });

  it('a release that crashes inside the window is swapped back (PM2 restart count)', async () => {
    const crashing = await stack.repo.commit({ CRASH_AFTER_MS: '500\n' }, 'crashes after start');
    const result = await stack.deploy(['push']);
    await stack.repo.commit({ CRASH_AFTER_MS: null }, 'fixed again');
    expect(result.code, result.stderr + result.stdout).toBe(4);
    expect(result.stdout).toMatch(/process check: (restarted|PM2 status)/);
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!), slot: 'green' });
    expect(state().releases.find((r) => r.releaseId === releaseOf(crashing))?.state).toBe('bad');
  });

  it('when the previous slot stops answering too, the swap-back keeps traffic where it is', async () => {
    const failing = await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: '900\n' }, 'goes bad, and the old slot dies too');
    const cli = stack.deployInBackground(['push']);
    // Once traffic is on the new slot (blue), the previous one (green) dies as well.
    await waitFor(() => state().app?.liveSlot === 'blue' && state().deployments[0]?.releaseId === releaseOf(failing), {
      timeoutMs: 60_000, description: 'the new release to go live',
    });
    await pm2.stop(`${APP}-green`);
    const result = await cli.done;
    await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: null }, 'fixed once more');
    expect(result.code, result.stderr + result.stdout).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('does not answer its health check either, so traffic stays');
    // No flip towards a dead slot: blue keeps serving, the include and flag unchanged.
    const answer = await stack.get('/');
    expect(answer.headers['x-slipway-slot']).toBe('blue');
    expect(answer.headers['x-slipway-release']).toBe(releaseOf(failing));
    const s = state();
    expect(s.app?.liveSlot).toBe('blue');
    expect(s.releases.find((r) => r.releaseId === releaseOf(failing))?.state).toBe('bad');
    const deployment = s.deployments[0]!;
    expect(deployment.outcome).toBe('failed');
    expect(s.events(deployment.id).some((e) => e.step === 'swap_back')).toBe(false);
    // Back to a good state for the tests below: the last good release, through a rollback.
    // SQLite still calls green running; PM2 does not, so the rollback starts it again first.
    const back = await stack.deploy(['rollback', '--to', releaseOf(shas[1]!)]);
    expect(back.code, back.stderr + back.stdout).toBe(0);
    expect(back.stderr).toMatch(/starting .*healthy .*switching/s);
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!), slot: 'green' });
  });

  it('rollback goes to the previous good release, starting it when its slot is cold', async () => {
    const result = await stack.deploy(['rollback', '--reason', 'customer reports']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toMatch(/starting .*healthy .*switching/s);
    expect(await served()).toMatchObject({ release: releaseOf(shas[0]!), slot: 'blue' });
    const history = await stack.deploy(['--json', 'history', '-n', '1']);
    const [latest] = JSON.parse(history.stdout.trim());
    expect(latest).toMatchObject({ kind: 'rollback', outcome: 'succeeded', releaseId: releaseOf(shas[0]!), note: 'customer reports' });
    expect(latest.requestedBy).toMatch(/^[^@]+@.+/);
  });

  // Issue 11: a plain rollback walks back in deploy order and never returns to the release it just
  // left; going forward again takes --to. The slot it left was settled after the rollback's window.
  it('rollback --to the release just rolled back from brings it back', async () => {
    const result = await stack.deploy(['--json', 'rollback', '--to', releaseOf(shas[1]!)]);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const steps = result.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'event').map((l) => l.step);
    expect(steps).toContain('switching');
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!), slot: 'green' });
  });

  it('rollback --to a release marked bad is refused without --force', async () => {
    const bad = state().releases.find((r) => r.state === 'bad')!.releaseId;
    const refused = await stack.deploy(['rollback', '--to', bad]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('marked bad');
    expect(refused.stderr).toContain('--force');
    expect(await served()).toMatchObject({ release: releaseOf(shas[1]!) });
  });

  it('rollback --to any retained release works', async () => {
    const result = await stack.deploy(['rollback', '--to', releaseOf(shas[0]!)]);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await served()).toMatchObject({ release: releaseOf(shas[0]!) });
    const back = await stack.deploy(['rollback', '--to', releaseOf(shas[1]!)]);
    expect(back.code, back.stderr + back.stdout).toBe(0);
  });

  it('a second rollout while one holds the lock is refused, or waits with --wait', async () => {
    shas.push(await stack.repo.commit({ 'message.txt': 'three\n' }, 'three'));
    const first = stack.deployInBackground(['push']);
    await waitFor(() => state().lock?.deploymentId ?? null, { timeoutMs: 30_000, description: 'the first rollout to hold the lock' });
    const refused = await stack.deploy(['rollback']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/sample is locked by [^@]+@\S+ since \S+ for deploy of [0-9a-f]{12}/);
    const firstResult = await first.done;
    expect(firstResult.code, firstResult.stderr + firstResult.stdout).toBe(0);
    expect(state().lock).toBeUndefined();
  });

  it('push --wait waits for the lock instead of failing', async () => {
    shas.push(await stack.repo.commit({ 'message.txt': 'four\n' }, 'four'));
    const four = await stack.deploy(['push']);
    expect(four.code, four.stderr + four.stdout).toBe(0);
    const five = await stack.repo.commit({ 'message.txt': 'five\n' }, 'five');
    // Another rollout's reservation holds the lock (the lock a running push holds) until the waiting
    // push has said that it waits: a push that would finish first cannot make the wait vanish.
    const held = await agentRequest(stack, 'POST', `/apps/${APP}/lock`, { json: { releaseId: releaseOf(shas.at(-1)!) } });
    expect(held.status, held.text).toBe(201);
    const { lockId } = (held.json as { lock: { lockId: string } }).lock;
    const waiting = stack.deployInBackground(['push', '--wait']);
    await waitFor(() => waiting.output().stderr.includes('waiting: sample is locked by') || null, { timeoutMs: 60_000, description: 'push --wait to say it waits for the lock' });
    expect(state().lock?.lockId).toBe(lockId);
    const released = await agentRequest(stack, 'DELETE', `/apps/${APP}/lock?lockId=${lockId}`);
    expect(released.status, released.text).toBe(200);
    const waited = await waiting.done;
    expect(waited.code, waited.stderr + waited.stdout).toBe(0);
    expect(await served()).toMatchObject({ release: releaseOf(five) });
  });

  it('push --no-wait returns once traffic moved; the agent finishes the window and releases the lock', async () => {
    const six = await stack.repo.commit({ 'message.txt': 'six\n' }, 'six');
    const result = await stack.deploy(['push', '--no-wait']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toContain('the agent keeps watching deployment');
    expect(result.stderr).not.toContain('window passed');
    expect(await served()).toMatchObject({ release: releaseOf(six) });
    const id = state().deployments[0]!.id;
    const finished = await waitFor(() => state().deployments.find((d) => d.id === id && d.outcome !== null) ?? null,
      { timeoutMs: 30_000, description: 'the detached deployment to finish its watch window' });
    expect(finished.outcome).toBe('succeeded');
    expect(state().lock).toBeUndefined();
  });

  it('lock release --force clears a lock a controller reserved and abandoned', async () => {
    const token = (await fs.readFile(path.join(stack.dir, 'agent.token'), 'utf8')).trim();
    const reserve = await fetch(`http://127.0.0.1:${stack.agentPort}/apps/${APP}/lock`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-slipway-actor': 'ci@runner-7' },
      body: JSON.stringify({ releaseId: 'f'.repeat(40) }),
    });
    expect(reserve.status).toBe(201);
    const refused = await stack.deploy(['rollback']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('locked by ci@runner-7');
    const status = await stack.deploy(['lock', 'status']);
    expect(status.stdout).toMatch(/locked by ci@runner-7 since .* for deploy of ffffffffffff \(reserved until /);
    const notForced = await stack.deploy(['lock', 'release']);
    expect(notForced.code).toBe(3);
    const released = await stack.deploy(['lock', 'release', '--force']);
    expect(released.code, released.stderr).toBe(0);
    expect(state().lock).toBeUndefined();
  });

  it('the lock is released after a failure', async () => {
    await stack.repo.commit({ FAIL_HEALTH: 'yes\n' }, 'unhealthy');
    const result = await stack.deploy(['push']);
    await stack.repo.commit({ FAIL_HEALTH: null }, 'healthy');
    expect(result.code).toBe(3);
    const lock = await stack.deploy(['lock', 'status']);
    expect(lock.stdout.trim()).toBe('unlocked');
  });

  it('retention keeps the newest, the live, the standby and the last good release, and deletes the rest', async () => {
    const before = state();
    const live = before.slots.find((s) => s.slot === before.app?.liveSlot)!.releaseId!;
    const result = await stack.deploy(['--json', 'releases', 'cleanup']);
    expect(result.code, result.stderr).toBe(0);
    const cleanup = JSON.parse(result.stdout.trim());
    expect(cleanup.skipped).toBeNull();
    expect(cleanup.removed.length).toBeGreaterThan(0);
    expect(cleanup.kept).toContain(live);
    const referenced = before.slots.map((s) => s.releaseId).filter(Boolean);
    for (const id of referenced) expect(cleanup.kept).toContain(id);
    for (const id of cleanup.removed) {
      await expect(fs.access(path.join(stack.home, 'releases', APP, id))).rejects.toThrow();
      expect(referenced).not.toContain(id);
    }
    expect(state().releases.map((r) => r.releaseId).sort()).toEqual([...cleanup.kept].sort());
    expect(await served()).toMatchObject({ release: live });
    const listing = await stack.deploy(['releases']);
    expect(listing.stdout).toMatch(/live/);
  });
});
