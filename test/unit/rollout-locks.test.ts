import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { APP, ACTOR, createHarness, refusal, rel, type Harness } from './rollout-harness.js';
import { deploymentRequest } from '../../controller/commands/push.js';


describe('deploy lock: a reservation the agent refuses to start is given back (issue 10, defect 2)', () => {
  let h: Harness;
  const live = rel('a');
  beforeEach(() => {
    h = createHarness();
    h.upload(live);
    h.state.setSlot(APP, 'blue', live, 'running');
    h.state.setLiveSlot(APP, 'blue');
  });
  afterEach(() => h.cleanup());

  it('slot_is_live: the reservation is released, the next push is not locked out', () => {
    const next = h.upload(rel('b'));
    const lock = h.rollouts.reserveLock({ app: APP, releaseId: next, actor: ACTOR });
    expect(refusal(() => h.rollouts.startDeploy({ app: APP, releaseId: next, slot: 'blue', lockId: lock.lockId, actor: ACTOR })).code).toBe('slot_is_live');
    expect(h.state.lock(APP)).toBeUndefined();
    expect(() => h.rollouts.reserveLock({ app: APP, releaseId: next, actor: 'other@ci' })).not.toThrow();
  });

  it('release_not_found: the reservation is released', () => {
    const missing = rel('c');
    const lock = h.rollouts.reserveLock({ app: APP, releaseId: missing, actor: ACTOR });
    expect(refusal(() => h.rollouts.startDeploy({ app: APP, releaseId: missing, lockId: lock.lockId, actor: ACTOR })).code).toBe('release_not_found');
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('a release whose files are gone: the reservation is released', () => {
    const gone = h.upload(rel('d'));
    h.remove(gone);
    const lock = h.rollouts.reserveLock({ app: APP, releaseId: gone, actor: ACTOR });
    expect(refusal(() => h.rollouts.startDeploy({ app: APP, releaseId: gone, lockId: lock.lockId, actor: ACTOR })).code).toBe('release_not_found');
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('a refused request never releases a lock it does not name', () => {
    const theirs = h.rollouts.reserveLock({ app: APP, releaseId: rel('e'), actor: 'other@ci' });
    expect(refusal(() => h.rollouts.startDeploy({ app: APP, releaseId: rel('f'), lockId: '00000000-0000-4000-8000-000000000000', actor: ACTOR })).code).toBe('release_not_found');
    expect(h.state.lock(APP)?.lockId).toBe(theirs.lockId);
  });
});

describe('deploy lock release without --force (issue 10, defect 4)', () => {
  let h: Harness;
  beforeEach(() => {
    h = createHarness();
  });
  afterEach(() => h.cleanup());

  it('releases the caller\'s own reservation (same actor), with no lock id', () => {
    h.rollouts.reserveLock({ app: APP, releaseId: rel('a'), actor: ACTOR });
    expect(h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR })).toMatchObject({ released: true });
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('releases a stale lock left by an earlier agent process', () => {
    h.state.acquireLock({ app: APP, lockId: 'old', holder: 'someone@else', action: 'deploy', releaseId: null, expiresAt: null, bootId: 'boot-0', deploymentId: 12 });
    expect(h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR })).toMatchObject({ released: true });
  });

  it('releases an expired reservation of someone else', () => {
    h.state.acquireLock({ app: APP, lockId: 'old', holder: 'someone@else', action: 'deploy', releaseId: null, expiresAt: '2020-01-01T00:00:00.000Z', bootId: h.bootId, deploymentId: null });
    expect(h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR })).toMatchObject({ released: true });
  });

  it('refuses someone else\'s live reservation without --force, and releases it with --force', () => {
    h.rollouts.reserveLock({ app: APP, releaseId: rel('a'), actor: 'ci@runner-7' });
    const error = refusal(() => h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR }));
    expect(error.code).toBe('lock_not_yours');
    expect(error.message).toContain('ci@runner-7');
    expect(error.hint).toContain('--force');
    expect(h.rollouts.releaseLock({ app: APP, force: true, actor: ACTOR })).toMatchObject({ released: true });
  });

  it('refuses the lock of a running deployment without --force, even to the actor who started it', () => {
    h.state.acquireLock({ app: APP, lockId: 'run', holder: ACTOR, action: 'deploy', releaseId: null, expiresAt: null, bootId: h.bootId, deploymentId: 3 });
    expect(refusal(() => h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR })).code).toBe('lock_in_use');
    expect(refusal(() => h.rollouts.releaseLock({ app: APP, lockId: 'run', force: false, actor: ACTOR })).code).toBe('lock_in_use');
    expect(h.state.lock(APP)?.lockId).toBe('run');
  });

  it('there being no lock is not an error', () => {
    expect(h.rollouts.releaseLock({ app: APP, force: false, actor: ACTOR })).toEqual({ released: false, lock: null });
  });
});

describe('who picks the slot of a push (issue 10, defect 1)', () => {
  it('the controller sends a slot only when the user passed --slot', () => {
    expect(deploymentRequest(rel('a'), 'lock-1', undefined)).toEqual({ releaseId: rel('a'), lockId: 'lock-1' });
    expect(deploymentRequest(rel('a'), 'lock-1', 'green')).toEqual({ releaseId: rel('a'), lockId: 'lock-1', slot: 'green' });
  });

  it('without a slot the agent picks the standby slot from its state when the rollout starts', async () => {
    const h = createHarness({ app: { watch: { windowMs: 0 } } });
    try {
      const a = h.upload(rel('a'));
      const b = h.upload(rel('b'));
      expect((await h.push(a)).slot).toBe('blue');
      // What a controller read before waiting for the lock (blue live) no longer matters.
      expect(await h.push(b)).toMatchObject({ outcome: 'succeeded', slot: 'green' });
      expect(await h.push(a)).toMatchObject({ outcome: 'succeeded', slot: 'blue' });
    } finally {
      h.cleanup();
    }
  });
});
