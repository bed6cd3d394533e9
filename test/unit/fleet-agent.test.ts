import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { APP, ACTOR, createHarness, refusal, rel, type Harness } from './rollout-harness.js';
import type { DeploymentFeed } from '../../agent/rollout/feed.js';

/** A host's part in a fleet rollout, on the agent (issue 15): the fields controller/fleet sends. */
const ROLLOUT = '0f8fad5b-d9cb-469f-a165-70867728950e';

describe('a fleet host\'s deployment on the agent', () => {
  let h: Harness;
  const old = rel('a');
  beforeEach(async () => {
    h = createHarness({ app: { watch: { windowMs: 60_000, intervalMs: 1_000, failuresToRollback: 3, keepPreviousWarm: false } } });
    await h.pushAll(old);
  });
  afterEach(() => h.cleanup());

  const fleetDeploy = (releaseId: string, extra: Record<string, unknown> = {}) => {
    const lock = h.rollouts.reserveLock({ app: APP, releaseId, actor: ACTOR, rolloutId: ROLLOUT });
    const feed = h.rollouts.startDeploy({
      app: APP, releaseId, actor: ACTOR, lockId: lock.lockId, rolloutId: ROLLOUT, watchMs: 2_000, keepPrevious: true, keepLock: true, runOnce: false, ...extra,
    });
    return { lock, feed };
  };
  /** Calls `fn` when the deployment reaches `step` (synchronously, as the step starts). */
  const when = (feed: DeploymentFeed, step: string, fn: () => void) => {
    let fired = false;
    feed.subscribe((line) => {
      if (!fired && line.type === 'event' && line.step === step && line.status === 'started') {
        fired = true;
        fn();
      }
    });
  };

  it('watches for the batch window, keeps the previous slot warm, keeps the lock as the rollout\'s reservation, records the rollout id', async () => {
    const next = h.upload(rel('b'));
    const { lock, feed } = fleetDeploy(next);
    const result = await h.run(feed);
    expect(result.outcome).toBe('succeeded');
    expect(result.stepDurationsMs.watching).toBeGreaterThanOrEqual(2_000);
    expect(result.stepDurationsMs.watching).toBeLessThan(10_000);
    expect(h.slotRow('blue')).toMatchObject({ releaseId: old, state: 'running' });
    expect(h.state.lock(APP)).toMatchObject({ lockId: lock.lockId, action: `fleet:${ROLLOUT}`, deploymentId: null });
    expect(h.state.lock(APP)!.expiresAt).not.toBeNull();
    expect(h.state.deployments(APP)[0]!.rolloutId).toBe(ROLLOUT);
    // The same user's plain push does not take the fleet's reservation over; the rollout's retry does.
    expect(refusal(() => h.rollouts.reserveLock({ app: APP, releaseId: next, actor: ACTOR })).code).toBe('app_locked');

    // The fleet's revert: one switch back to the warm slot, no window, under the same lock.
    const flips = h.nginx.flips;
    const revert = await h.run(h.rollouts.startSwitch({ app: APP, slot: 'blue', actor: ACTOR, lockId: lock.lockId, rolloutId: ROLLOUT, watchMs: 0, keepLock: false }));
    expect(revert.outcome).toBe('succeeded');
    expect(h.nginx.flips - flips).toBe(1);
    expect(h.served()).toMatchObject({ slot: 'blue', releaseId: old });
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('an abort after the switch swaps back by one flip at once (rolled back)', async () => {
    const next = h.upload(rel('c'));
    const { feed } = fleetDeploy(next, { watchMs: 60_000 });
    when(feed, 'watching', () => { h.rollouts.abort({ app: APP, deploymentId: feed.deploymentId, reason: 'h3 failed', actor: ACTOR }); });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'rolled_back', liveReleaseId: old });
    expect(result.reason).toMatch(/aborted: h3 failed/);
    expect(result.stepDurationsMs.watching).toBeLessThan(1_000);
  });

  it('an abort after the switch whose previous slot does not answer: traffic stays, no swap-back (the check that starts with the abort decides)', async () => {
    const next = h.upload(rel('f'));
    const { feed } = fleetDeploy(next, { watchMs: 60_000 });
    when(feed, 'watching', () => {
      h.behave(old, { failHealth: true });
      h.rollouts.abort({ app: APP, deploymentId: feed.deploymentId, reason: 'h2 failed', actor: ACTOR });
    });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'after_switch', error: { error: 'watch_failed_previous_unhealthy' } });
    expect(h.steps(result)).not.toContain('swap_back:started');
    expect(h.served()).toMatchObject({ releaseId: next });
  });

  it('an abort while the new slot is in its health gate stops the gate at once (not after its retries): traffic never moves', async () => {
    const next = h.upload(rel('e'), { healthHangs: true });
    const { feed } = fleetDeploy(next);
    when(feed, 'healthy', () => { h.rollouts.abort({ app: APP, deploymentId: feed.deploymentId, reason: 'h1 failed', actor: ACTOR }); });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', liveReleaseId: old });
    expect(result.error?.error).toBe('rollout_aborted');
    expect(result.reason).toMatch(/aborted before traffic moved: .*h1 failed/);
    expect(h.served()).toMatchObject({ releaseId: old });
  });

  it('an abort before the switch stops the new slot: traffic never moves', async () => {
    const next = h.upload(rel('d'));
    const { feed } = fleetDeploy(next);
    when(feed, 'healthy', () => { h.rollouts.abort({ app: APP, deploymentId: feed.deploymentId, reason: 'h2 failed', actor: ACTOR }); });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', liveReleaseId: old });
    expect(result.error?.error).toBe('rollout_aborted');
    expect(h.served()).toMatchObject({ releaseId: old });
    expect(refusal(() => h.rollouts.abort({ app: APP, deploymentId: feed.deploymentId, reason: 'again', actor: ACTOR })).code).toBe('deployment_not_found');
  });
});
