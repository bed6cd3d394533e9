import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';
import { agentRequest, auditRows, liveView } from '../helpers/box.js';

/**
 * Who picks the slot, and who gives the lock back (issue 10, defects 1, 2 and 4), through the CLI
 * against real sshd, nginx, PM2 and SQLite.
 */
describe('push and the deploy lock (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;
  let first: string;
  const state = () => readState(stack.home, APP);
  // The actor the CLI sends is <user>@<hostname>; SLIPWAY_ACTOR_USER sets the user part.
  const cliActor = (user: string) => `${user}@${os.hostname().replace(/[^A-Za-z0-9._:-]/g, '_')}`;

  beforeAll(async () => {
    stack = await startStack();
    const firstSha = await stack.repo.head();
    const a = await stack.deploy(['push']);
    expect(a.code, a.stderr + a.stdout).toBe(0);
    first = releaseOfCommit(stack.home, APP, firstSha);
    await stack.repo.commit({ 'message.txt': 'second\n' }, 'second');
    const b = await stack.deploy(['push']);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(state().app?.liveSlot).toBe('green');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('push --wait: the live slot changing while it waits does not make it target the new live slot (defect 1)', async () => {
    const other = 'ci@runner-7';
    const reserved = await agentRequest(stack, 'POST', `/apps/${APP}/lock`, { json: { releaseId: first }, headers: { 'x-slipway-actor': other } });
    expect(reserved.status, reserved.text).toBe(201);
    const lockId = (reserved.json!.lock as { lockId: string }).lockId;

    const third = await stack.repo.commit({ 'message.txt': 'third\n' }, 'third');
    const auditBefore = auditRows(stack.home).length;
    const waiting = stack.deployInBackground(['push', '--wait']);
    // Its first lock attempt was refused: it has read the status (green live) and now waits.
    await waitFor(() => auditRows(stack.home).slice(auditBefore).some((r) => r.action === 'POST /apps/:app/lock' && r.result === '409'),
      { timeoutMs: 60_000, description: 'the waiting push to be refused the lock once' });

    // Meanwhile the lock holder deploys into the standby slot: blue becomes live.
    const holderRun = await agentRequest(stack, 'POST', `/apps/${APP}/deployments`, { json: { releaseId: first, lockId }, headers: { 'x-slipway-actor': other } });
    expect(holderRun.status, holderRun.text).toBe(200);
    expect(JSON.parse(holderRun.text.trim().split('\n').at(-1)!)).toMatchObject({ type: 'result', outcome: 'succeeded', slot: 'blue' });

    const result = await waiting.done;
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, third), slot: 'green' });
    expect(state().lock).toBeUndefined();
  });

  it('push --slot <live slot> is refused by the agent and gives its lock back at once (defect 2)', async () => {
    const before = await liveView(stack);
    const next = await stack.repo.commit({ 'message.txt': 'fourth\n' }, 'fourth');
    const result = await stack.deploy(['push', '--slot', before.slot!]);
    expect(result.code, result.stderr + result.stdout).toBe(2);
    expect(result.stderr).toContain(`${before.slot} is the live slot of ${APP}`);
    expect(state().lock).toBeUndefined();
    expect((await stack.deploy(['lock', 'status'])).stdout.trim()).toBe('unlocked');
    expect(await liveView(stack)).toEqual(before);
    // and the release it uploaded is there for the next push, which is not locked out
    const retry = await stack.deploy(['push']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(retry.stderr).toContain('nothing uploaded');
    expect(await liveView(stack)).toMatchObject({ release: releaseOfCommit(stack.home, APP, next) });
  });

  it('lock release without --force releases the caller\'s own reservation, not someone else\'s (defect 4)', async () => {
    const mine = await agentRequest(stack, 'POST', `/apps/${APP}/lock`, { json: { releaseId: first }, headers: { 'x-slipway-actor': cliActor('ci') } });
    expect(mine.status, mine.text).toBe(201);
    const released = await stack.deploy(['lock', 'release'], { env: { SLIPWAY_ACTOR_USER: 'ci' } });
    expect(released.code, released.stderr + released.stdout).toBe(0);
    expect(released.stdout).toContain('released');
    expect(state().lock).toBeUndefined();

    const theirs = await agentRequest(stack, 'POST', `/apps/${APP}/lock`, { json: { releaseId: first }, headers: { 'x-slipway-actor': 'ops@elsewhere' } });
    expect(theirs.status, theirs.text).toBe(201);
    const refused = await stack.deploy(['lock', 'release'], { env: { SLIPWAY_ACTOR_USER: 'ci' } });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('ops@elsewhere');
    expect(refused.stderr).toContain('--force');
    expect(state().lock?.holder).toBe('ops@elsewhere');
    const forced = await stack.deploy(['lock', 'release', '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(state().lock).toBeUndefined();
  });
});
