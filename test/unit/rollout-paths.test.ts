/**
 * Every refusal and compensation path of the rollout, through the fast harness: for each, what
 * nginx serves, what PM2 runs and what SQLite records afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { APP, ACTOR, createHarness, refusal, rel, type Harness } from './rollout-harness.js';
import { SlipwayError } from '../../contract/errors.js';
import { planSwitch } from '../../agent/rollout/switch-plan.js';
import { waitFor } from '../helpers/wait.js';


/** Two releases pushed: `a` on blue (stopped after the window unless kept warm), `b` live on green. */
async function twoPushed(h: Harness): Promise<{ a: string; b: string }> {
  const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
  return { a, b };
}

describe('rollout paths: refusals change nothing', () => {
  let h: Harness;
  let a: string;
  let b: string;
  beforeEach(async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    ({ a, b } = await twoPushed(h));
  });
  afterEach(() => h.cleanup());

  const unchanged = () => ({
    served: h.served(), slots: h.state.slots(APP).map((s) => `${s.slot} ${s.releaseId} ${s.state}`),
    deployments: h.state.deployments(APP).length, lock: h.state.lock(APP) ?? null, pm2: [...h.processes.procs.keys()].sort(),
  });

  it.each([
    ['app_not_found', (x: Harness) => x.rollouts.startDeploy({ app: 'nope', releaseId: rel('a'), actor: ACTOR })],
    ['app_not_found', (x: Harness) => x.rollouts.startSwitch({ app: 'nope', slot: 'blue', actor: ACTOR })],
    ['app_not_found', (x: Harness) => x.rollouts.startRollback({ app: 'nope', force: false, actor: ACTOR })],
    ['app_not_found', (x: Harness) => x.rollouts.reserveLock({ app: 'nope', releaseId: rel('a'), actor: ACTOR })],
    ['release_not_found', (x: Harness) => x.rollouts.startDeploy({ app: APP, releaseId: rel('9'), actor: ACTOR })],
    ['slot_is_live', (x: Harness) => x.rollouts.startDeploy({ app: APP, releaseId: rel('a'), slot: 'green', actor: ACTOR })],
    ['slot_already_live', (x: Harness) => x.rollouts.startSwitch({ app: APP, slot: 'green', actor: ACTOR })],
    ['release_not_found', (x: Harness) => x.rollouts.startRollback({ app: APP, to: rel('9'), force: false, actor: ACTOR })],
    ['release_already_live', (x: Harness) => x.rollouts.startRollback({ app: APP, to: rel('b'), force: false, actor: ACTOR })],
  ] as const)('%s', (code, call) => {
    const before = unchanged();
    expect(refusal(() => call(h)).code).toBe(code);
    expect(unchanged()).toEqual(before);
  });

  it('slot_not_running: a switch to a stopped slot', async () => {
    h.state.setSlotState(APP, 'blue', 'stopped');
    const before = unchanged();
    const error = refusal(() => h.switchTo('blue'));
    expect(error.code).toBe('slot_not_running');
    expect(error.hint).toContain('deploy push --slot blue');
    expect(unchanged()).toEqual(before);
  });

  it('app_locked: any rollout while another holds the lock, naming the holder', () => {
    h.rollouts.reserveLock({ app: APP, releaseId: a, actor: 'ci@runner-7' });
    const before = unchanged();
    for (const start of [() => h.switchTo('blue'), () => h.rollback(), () => h.push(a)]) {
      const error = refusal(start);
      expect(error.code).toBe('app_locked');
      expect(error.message).toMatch(/locked by ci@runner-7 since \S+ for deploy of a{12}/);
    }
    expect(unchanged()).toEqual(before);
  });

  it('app_locked: a second rollout while one runs; the lock is free again once it ended', async () => {
    const c = h.upload(rel('c'));
    const running = h.push(c);
    expect(h.state.lock(APP)?.deploymentId).toBeTypeOf('number');
    expect(refusal(() => h.switchTo('blue')).code).toBe('app_locked');
    expect((await running).outcome).toBe('succeeded');
    expect(h.state.lock(APP)).toBeUndefined();
    expect(b).not.toBe(c);
  });
});

describe('rollout paths: failures before the switch leave the live slot untouched', () => {
  let h: Harness;
  let b: string;
  beforeEach(async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    ({ b } = await twoPushed(h));
  });
  afterEach(() => h.cleanup());

  const liveUntouched = () => {
    expect(h.served()).toMatchObject({ slot: 'green', releaseId: b, status: 200, liveSlot: 'green' });
    expect(h.state.lock(APP)).toBeUndefined();
  };

  it('preflight: nginx not running: no PM2 call at all, the standby slot keeps running', async () => {
    h.nginx.running = false;
    const calls = h.processes.calls.length;
    const result = await h.push(h.upload(rel('c')));
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'nginx_not_running' } });
    expect(h.processes.calls.length).toBe(calls);
    expect(h.slotRow('blue')).toMatchObject({ releaseId: rel('a'), state: 'running' });
    liveUntouched();
  });

  it('preflight: a required env variable missing: nothing touched', async () => {
    await fs.writeFile(h.config.apps[APP]!.envFile!, 'OTHER=1\n', { mode: 0o600 });
    h.config.apps[APP]!.requiredEnv = ['GREETING'];
    const calls = h.processes.calls.length;
    const result = await h.push(h.upload(rel('c')));
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch' });
    expect(result.reason).toContain('GREETING');
    expect(h.processes.calls.length).toBe(calls);
    liveUntouched();
  });

  it('backup: a failed pre-deploy backup stops the rollout before anything changes', async () => {
    h.cleanup();
    h = createHarness({ runBackup: async () => { throw new SlipwayError('backup_failed', 'pg_dump exited with code 1'); } });
    h.config.apps[APP]!.backupBeforeDeploy = 'db';
    const a = h.upload(rel('a'));
    const result = await h.push(a);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'backup_failed' } });
    expect(h.steps(result)).toEqual(['preflight:started', 'preflight:ok', 'backup:started', 'backup:failed']);
    expect(h.processes.calls).toEqual([]);
    expect(h.served().slot).toBeNull();
  });

  it('backup: declared but backups not set up', async () => {
    h.cleanup();
    h = createHarness();
    h.config.apps[APP]!.backupBeforeDeploy = 'db';
    const result = await h.push(h.upload(rel('a')));
    expect(result).toMatchObject({ outcome: 'failed', error: { error: 'backups_unavailable' } });
    expect(h.processes.calls).toEqual([]);
  });

  it('starting: the start script is missing: the slot and release are marked failed', async () => {
    const c = h.upload(rel('c'));
    await fs.rm(path.join(h.root, 'releases', APP, c, 'server.js'));
    const result = await h.push(c);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'start_script_missing' } });
    expect(h.slotRow('blue')).toMatchObject({ releaseId: c, state: 'failed' });
    expect(h.releaseState(c)).toBe('failed');
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(false);
    liveUntouched();
  });

  it('starting: the port is held by a process Slipway did not start', async () => {
    h.portHeld.add(h.config.apps[APP]!.slots!.blue.port);
    const result = await h.push(h.upload(rel('c')));
    expect(result).toMatchObject({ outcome: 'failed', error: { error: 'port_in_use' } });
    expect(result.error?.hint).toContain('ss -ltnp');
    expect(h.slotRow('blue').state).toBe('failed');
    liveUntouched();
  });

  it('starting: PM2 refuses the start: compensated', async () => {
    const result = await h.push(h.upload(rel('c'), { failStart: true }));
    expect(result).toMatchObject({ outcome: 'failed', error: { error: 'pm2_start_failed' } });
    expect(result.lines.some((l) => l.type === 'event' && l.step === 'compensate' && l.status === 'ok')).toBe(true);
    expect(h.releaseState(rel('c'))).toBe('failed');
    liveUntouched();
  });

  it('healthy: the health gate fails: the new slot is stopped, nginx never changed', async () => {
    const applies = h.nginx.applies;
    const c = h.upload(rel('c'), { failHealth: true });
    const result = await h.push(c);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'health_check_failed' } });
    expect(result.reason).toMatch(/last saw HTTP 503 .*PM2 reports online/);
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(false);
    expect(h.slotRow('blue')).toMatchObject({ releaseId: c, state: 'failed' });
    expect(h.releaseState(c)).toBe('failed');
    expect(h.nginx.applies).toBe(applies);
    liveUntouched();
  });

  it('switching: nginx -t or the reload proof fails: the new slot is stopped, the flag never moved', async () => {
    h.nginx.failApply = new SlipwayError('nginx_config_invalid', 'nginx -t failed: unknown directive');
    const c = h.upload(rel('c'));
    const result = await h.push(c);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'nginx_config_invalid' } });
    expect(h.slotRow('blue')).toMatchObject({ releaseId: c, state: 'stopped' });
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(false);
    expect(h.nginx.flips).toBe(1);
    liveUntouched();
  });

  it('switching: the flip is not proven: compensated the same way', async () => {
    h.nginx.failFlip = new SlipwayError('nginx_switch_not_applied', 'nginx did not show the new slot');
    const result = await h.push(h.upload(rel('c')));
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'nginx_switch_not_applied' } });
    expect(h.slotRow('blue').state).toBe('stopped');
    liveUntouched();
  });

  it('a switch whose target fails its fresh health check is refused, and the target is left as it was', async () => {
    h.behave(rel('a'), { failHealth: true });
    const result = await h.switchTo('blue');
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'health_check_failed' } });
    expect(h.slotRow('blue')).toMatchObject({ releaseId: rel('a'), state: 'running' });
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(true);
    liveUntouched();
  });

  it('a rollback to a warm slot whose process PM2 lost starts it again first', async () => {
    h.processes.kill(`${APP}-blue`);
    const result = await h.rollback({ to: rel('a') });
    expect(result.outcome).toBe('succeeded');
    expect(result.lines.some((l) => l.type === 'event' && l.message?.includes('is not running in PM2 any more'))).toBe(true);
    expect(h.steps(result)).toContain('starting:ok');
    expect(h.served()).toMatchObject({ slot: 'blue', releaseId: rel('a') });
  });
});

describe('rollout paths: failures after the switch', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('the watch window fails: traffic back to the previous slot, the release bad, its slot stopped', async () => {
    h = createHarness();
    const { b } = await twoPushed(h);
    const c = h.upload(rel('c'), { failHealthAfterMs: 5_000 });
    const result = await h.push(c);
    expect(result).toMatchObject({ outcome: 'rolled_back', phase: 'after_switch', error: { error: 'watch_failed' }, liveSlot: 'green', liveReleaseId: b });
    expect(result.reason).toMatch(/slot check: HTTP 503/);
    expect(h.steps(result)).toContain('swap_back:ok');
    expect(h.served()).toMatchObject({ slot: 'green', releaseId: b, status: 200 });
    expect(h.releaseState(c)).toBe('bad');
    expect(h.slotRow('blue')).toMatchObject({ releaseId: c, state: 'stopped' });
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(false);
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('a crash inside the window (restart count up) swaps back too', async () => {
    h = createHarness();
    await twoPushed(h);
    const result = await h.push(h.upload(rel('c'), { crashAfterMs: 2_000 }));
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/process check: restarted/);
  });

  it('PM2 daemon down inside the window: the process check is unknown, the public and slot checks judge, no swap-back', async () => {
    h = createHarness();
    await twoPushed(h);
    const c = h.upload(rel('c'));
    const feed = h.rollouts.startDeploy({ app: APP, releaseId: c, actor: ACTOR });
    feed.subscribe((line) => {
      if (line.type === 'event' && line.step === 'watching' && line.status === 'started') h.processes.daemonDown = true;
    });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'succeeded', liveReleaseId: c });
    expect(h.releaseState(c)).toBe('good');
  });

  it('the first release fails its window: nothing to swap back to, it stays, marked bad', async () => {
    h = createHarness();
    const a = h.upload(rel('a'), { failHealthAfterMs: 1_000 });
    const result = await h.push(a);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'after_switch', error: { error: 'watch_failed_no_previous' } });
    expect(h.releaseState(a)).toBe('bad');
  });

  it('the previous slot does not answer either: traffic stays, no swap-back', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const { a } = await twoPushed(h);
    h.behave(rel('b'), { failHealth: true });
    const c = h.upload(rel('c'), { failHealthAfterMs: 1_000 });
    const result = await h.push(c);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'after_switch', error: { error: 'watch_failed_previous_unhealthy' } });
    expect(h.steps(result)).not.toContain('swap_back:started');
    expect(h.served()).toMatchObject({ slot: 'blue', releaseId: c });
    expect(h.releaseState(c)).toBe('bad');
    expect(a).toBe(rel('a'));
  });

  it('the swap-back itself fails: reported as failed after the switch (traffic had moved), the release bad', async () => {
    h = createHarness();
    await twoPushed(h);
    const c = h.upload(rel('c'), { failHealthAfterMs: 1_000 });
    const feed = h.rollouts.startDeploy({ app: APP, releaseId: c, actor: ACTOR });
    feed.subscribe((line) => {
      if (line.type === 'event' && line.step === 'watching' && line.status === 'started') h.nginx.failFlip = new SlipwayError('nginx_switch_not_applied', 'nginx did not show the old slot');
    });
    const result = await h.run(feed);
    expect(result).toMatchObject({ outcome: 'failed', phase: 'after_switch', error: { error: 'swap_back_failed' } });
    expect(result.reason).toMatch(/failed after going live .*moving traffic back to green failed: nginx did not show the old slot/);
    expect(h.steps(result)).toContain('swap_back:failed');
    expect(h.releaseState(c)).toBe('bad');
    expect(h.state.lock(APP)).toBeUndefined();
  });

  it('after a clean window the previous slot is stopped (settle), unless keepPreviousWarm', async () => {
    h = createHarness();
    await twoPushed(h);
    expect(h.slotRow('blue').state).toBe('stopped');
    expect(h.processes.procs.has(`${APP}-blue`)).toBe(false);
    h.cleanup();
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    await twoPushed(h);
    expect(h.slotRow('blue').state).toBe('running');
  });

  it('a previous slot that cannot be stopped does not undo a release that passed its window', async () => {
    h = createHarness();
    const a = h.upload(rel('a'));
    await h.push(a);
    const b = h.upload(rel('b'));
    const realDelete = h.processes.delete.bind(h.processes);
    h.processes.delete = async (name) => {
      if (name === `${APP}-blue` && h.state.deployments(APP)[0]?.state === 'settle') throw new Error('PM2 delete timed out');
      return realDelete(name);
    };
    const result = await h.push(b);
    expect(result).toMatchObject({ outcome: 'succeeded', liveReleaseId: b });
    expect(h.steps(result)).toContain('settle:failed');
    expect(h.slotRow('blue').state).toBe('running');
  });
});

describe('rollout paths: locks and fault injection', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('the lock is tied to the running deployment and released at its end, whatever the outcome', async () => {
    h = createHarness();
    for (const how of [{}, { failHealth: true }, { failHealthAfterMs: 1_000 }]) {
      const id = h.upload(rel(String(h.state.releases(APP).length + 1)), how);
      const feed = h.rollouts.startDeploy({ app: APP, releaseId: id, actor: ACTOR });
      expect(h.state.lock(APP)).toMatchObject({ deploymentId: feed.deploymentId, holder: ACTOR, action: 'deploy', expiresAt: null });
      await h.run(feed);
      expect(h.state.lock(APP)).toBeUndefined();
    }
  });

  it('a push takes over its own reservation; a retry by the same controller replaces its unused one', () => {
    h = createHarness();
    const a = h.upload(rel('a'));
    const first = h.rollouts.reserveLock({ app: APP, releaseId: a, actor: ACTOR });
    const retry = h.rollouts.reserveLock({ app: APP, releaseId: a, actor: ACTOR });
    expect(retry.lockId).not.toBe(first.lockId);
    const feed = h.rollouts.startDeploy({ app: APP, releaseId: a, lockId: retry.lockId, actor: ACTOR });
    expect(h.state.lock(APP)).toMatchObject({ lockId: retry.lockId, deploymentId: feed.deploymentId });
    return h.run(feed);
  });

  it('an expired reservation is taken over by the next rollout', async () => {
    h = createHarness();
    const a = h.upload(rel('a'));
    h.rollouts.reserveLock({ app: APP, releaseId: a, actor: 'ci@gone' });
    h.clock.advance(15 * 60_000 + 1);
    expect((await h.push(a)).outcome).toBe('succeeded');
  });

  it.each(['preflight', 'starting', 'healthy', 'switching', 'flip', 'record', 'watching'])('fault injection parks the rollout before %s', async (point) => {
    h = createHarness({ faultPauseBefore: point });
    const a = h.upload(rel('a'));
    const feed = h.rollouts.startDeploy({ app: APP, releaseId: a, actor: ACTOR });
    const lines: string[] = [];
    feed.subscribe((line) => { if (line.type === 'event') lines.push(`${line.step}:${line.status}:${line.message ?? ''}`); });
    await waitFor(() => lines.at(-1) === `${point}:info:paused before ${point} (SLIPWAY_FAULT_PAUSE_BEFORE)`, { description: `the pause before ${point}` });
    // and it stays parked
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.at(-1)).toContain('paused before');
    expect(h.state.deployments(APP)[0]?.outcome).toBeNull();
    expect(h.state.lock(APP)?.deploymentId).toBe(feed.deploymentId);
  });
});

describe('switch plan (pure)', () => {
  const render = (generation: number, fallback: string) => `include gen=${generation} fallback=${fallback} blue=a green=b`;
  it('the first switch applies the include and flips nothing when the target already serves', () => {
    expect(planSwitch({ serving: 'blue', target: 'blue', onDisk: null, generationNow: 0, render, reapply: false })).toEqual({ applyInclude: true, flip: false });
  });
  it('a flip between running slots whose include is unchanged needs no reload, whichever fallback it names', () => {
    for (const onDisk of [render(4, 'blue'), render(4, 'green')]) {
      expect(planSwitch({ serving: 'blue', target: 'green', onDisk, generationNow: 4, render, reapply: false })).toEqual({ applyInclude: false, flip: true });
    }
  });
  it('a changed include (new release, ports, template) is applied before the flip', () => {
    expect(planSwitch({ serving: 'blue', target: 'green', onDisk: 'include gen=4 fallback=blue blue=a green=OLD', generationNow: 4, render, reapply: false }))
      .toEqual({ applyInclude: true, flip: true });
  });
  it('crash recovery re-applies even an unchanged include', () => {
    expect(planSwitch({ serving: 'green', target: 'green', onDisk: render(4, 'green'), generationNow: 4, render, reapply: true })).toEqual({ applyInclude: true, flip: false });
  });
});
