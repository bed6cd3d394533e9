/**
 * The rollback rules (issue 11), through the fast harness: plain rollbacks walk back through
 * deploy order and never return to a release rolled back from; a forced activation keeps the bad
 * mark unless a clean watch window clears it; every activation that moves traffic is watched and
 * swapped back; a rollback settles like a push; `--to` takes unambiguous prefixes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { APP, ACTOR, createHarness, refusal, rel, type Harness } from './rollout-harness.js';
import type { DeploymentEvent, DeploymentStreamLine } from '../../contract/api.js';
import { planRollback, previousRelease, resolveReleaseRef, type RollbackCandidate } from '../../agent/rollout/rollback-plan.js';
import { planActivation, releaseStateAfterSwitch } from '../../agent/rollout/activation-plan.js';
import { deploymentSummary, releaseList } from '../../agent/state/views.js';
import { formatHistory, formatReleases, historyNotes } from '../../controller/commands/history.js';


/** The message of the watching step's end: "N s window passed" or the failure. */
function windowPassed(result: { lines: DeploymentStreamLine[] }): string | null | undefined {
  const end = result.lines.find((l): l is DeploymentEvent => l.type === 'event' && l.step === 'watching' && l.status === 'ok');
  return end?.message;
}

const stepsOf = (h: Harness, result: Parameters<Harness['steps']>[0]) => h.steps(result).filter((s) => s.endsWith(':ok') || s.endsWith(':failed'));

describe('plain rollback walks back through deploy order (C → B → A)', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('the issue\'s scenario: A, B, C; rollback → B; rollback → A, never C again', async () => {
    h = createHarness();
    const [a, b, c] = [h.upload(rel('a')), h.upload(rel('b')), h.upload(rel('c'))];
    for (const r of [a, b, c]) expect((await h.push(r)).outcome).toBe('succeeded');

    const first = await h.rollback({ reason: 'checkout broken', actor: 'ops@laptop' });
    expect(first).toMatchObject({ outcome: 'succeeded', liveReleaseId: b });
    expect(h.state.release(APP, c)?.rolledBack).toMatchObject({ by: 'ops@laptop', reason: 'checkout broken' });
    expect(h.releaseState(c)).toBe('good');

    const second = await h.rollback();
    expect(second).toMatchObject({ outcome: 'succeeded', liveReleaseId: a });
    expect(h.served()).toMatchObject({ releaseId: a, status: 200 });
    expect(h.state.release(APP, b)?.rolledBack).toMatchObject({ by: ACTOR, reason: null });

    const third = refusal(() => h.rollback());
    expect(third.code).toBe('no_previous_release');
    expect(third.hint).toContain('--to');
    expect(h.served().releaseId).toBe(a);
  });

  it('a release rolled back from is reachable with --to, which clears its mark; going forward marks nothing', async () => {
    h = createHarness();
    const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
    await h.rollback();
    expect(h.state.release(APP, b)?.rolledBack).not.toBeNull();
    expect(await h.rollback({ to: b.slice(0, 7) })).toMatchObject({ outcome: 'succeeded', liveReleaseId: b });
    expect(h.state.release(APP, b)?.rolledBack).toBeNull();
    // rolling back away from b again marks it again; a goes live through a plain rollback
    expect(await h.rollback()).toMatchObject({ liveReleaseId: a });
    expect(h.state.release(APP, b)?.rolledBack).not.toBeNull();
  });

  it('pushing a release rolled back from clears the mark', async () => {
    h = createHarness();
    const [a, b, c] = [h.upload(rel('a')), h.upload(rel('b')), h.upload(rel('c'))];
    for (const r of [a, b, c]) await h.push(r);
    await h.rollback();
    await h.push(c);
    expect(h.state.release(APP, c)?.rolledBack).toBeNull();
    expect(await h.rollback()).toMatchObject({ liveReleaseId: b });
  });

  it('deploy order is the order of pushes, not of switches: a release pushed again is the newest', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b, c] = [h.upload(rel('a')), h.upload(rel('b')), h.upload(rel('c'))];
    for (const r of [a, b, a, c]) await h.push(r);
    expect(await h.rollback()).toMatchObject({ liveReleaseId: a });
    // a switch back and forth does not reorder anything, and marks nothing rolled back
    expect((await h.switchTo(h.served().liveSlot === 'blue' ? 'green' : 'blue')).outcome).toBe('succeeded');
    expect(h.state.release(APP, a)?.rolledBack).toBeNull();
    expect(await h.rollback()).toMatchObject({ liveReleaseId: a });
    expect(await h.rollback()).toMatchObject({ liveReleaseId: b });
  });

  it('after a switch to the older slot, a plain rollback returns to the newest pushed release (no release was rolled back from)', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
    await h.switchTo('blue');
    const back = await h.rollback();
    expect(back).toMatchObject({ outcome: 'succeeded', liveReleaseId: b });
    expect(stepsOf(h, back)).not.toContain('starting:ok');
    // it went forward in deploy order: the release it left is not marked
    expect(h.state.release(APP, a)?.rolledBack).toBeNull();
  });

  it('a warm slot holding a release rolled back from is not a plain target', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b, c] = [h.upload(rel('a')), h.upload(rel('b')), h.upload(rel('c'))];
    for (const r of [a, b, c]) await h.push(r);
    await h.rollback();
    // c still runs warm in its slot; the next plain rollback still goes to a, starting it
    const next = await h.rollback();
    expect(next).toMatchObject({ liveReleaseId: a });
    expect(stepsOf(h, next)).toContain('starting:ok');
  });
});

describe('a forced activation keeps the bad mark; only a clean watch window clears it', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  /** push A; push D, which fails 2 s after going live: swapped back, D marked bad. */
  async function badD(): Promise<{ a: string; d: string }> {
    h = createHarness();
    const a = h.upload(rel('a'));
    const d = h.upload(rel('d'), { failHealthAfterMs: 2_000 });
    await h.push(a);
    expect((await h.push(d)).outcome).toBe('rolled_back');
    expect(h.releaseState(d)).toBe('bad');
    return { a, d };
  }

  it('the issue\'s scenario: rollback --to D --force is watched (the full push window) and swapped back; D stays bad and is never a plain target', async () => {
    const { a, d } = await badD();
    expect(refusal(() => h.rollback({ to: d })).code).toBe('release_bad');
    const forced = await h.rollback({ to: d, force: true, reason: 'try it once more' });
    expect(forced).toMatchObject({ outcome: 'rolled_back', phase: 'after_switch', liveReleaseId: a });
    expect(h.served()).toMatchObject({ releaseId: a, status: 200 });
    expect(h.releaseState(d)).toBe('bad');
    expect(h.state.deployments(APP)[0]).toMatchObject({ kind: 'rollback', forced: true, targetState: 'bad', badMark: 'kept', outcome: 'rolled_back' });
    const again = refusal(() => h.rollback());
    expect(again.code).toBe('no_previous_release');
    expect(h.served().releaseId).toBe(a);
  });

  it('the issue\'s scenario with the windows off: the forced release keeps its mark, and a later plain rollback never returns to it', async () => {
    const { a, d } = await badD();
    h.config.apps[APP]!.watch!.windowMs = 0;
    expect(await h.rollback({ to: d, force: true })).toMatchObject({ outcome: 'succeeded', liveReleaseId: d });
    expect(h.releaseState(d)).toBe('bad');
    expect(h.state.deployments(APP)[0]).toMatchObject({ forced: true, targetState: 'bad', badMark: 'kept' });
    expect(await h.rollback()).toMatchObject({ outcome: 'succeeded', liveReleaseId: a });
    // D's slot is gone (a crash, a reboot)
    h.processes.kill(`${APP}-${h.served().liveSlot === 'blue' ? 'green' : 'blue'}`);
    expect(refusal(() => h.rollback()).code).toBe('no_previous_release');
    expect(h.served()).toMatchObject({ releaseId: a, status: 200 });
  });

  it('a forced activation that passes its full window clears the mark, and the history says so', async () => {
    const { d } = await badD();
    h.behave(d, {});
    const forced = await h.rollback({ to: d, force: true });
    expect(forced).toMatchObject({ outcome: 'succeeded', liveReleaseId: d });
    expect(windowPassed(forced)).toBe('60 s window passed');
    expect(forced.lines.some((l) => l.type === 'event' && Boolean(l.message?.includes('clears the mark')))).toBe(true);
    expect(h.releaseState(d)).toBe('good');
    const row = h.state.deployments(APP)[0]!;
    expect(row).toMatchObject({ forced: true, targetState: 'bad', badMark: 'cleared' });
    expect(historyNotes(deploymentSummary(row))).toContain('forced: the target was marked bad; mark cleared by a clean watch window');
  });

  it('the switch step never clears a bad mark: not in a swap-back to a forced release, not in crash recovery\'s re-apply', async () => {
    const { a, d } = await badD();
    h.config.apps[APP]!.watch!.windowMs = 0;
    await h.rollback({ to: d, force: true });
    const live = h.served().liveSlot!;
    await h.traffic.switchTraffic(APP, live, d, { reapply: true });
    expect(h.releaseState(d)).toBe('bad');
    // a push that fails its window swaps back to d: still bad
    h.behave(d, {});
    h.config.apps[APP]!.watch!.windowMs = 60_000;
    const e = h.upload(rel('e'), { failHealthAfterMs: 1_000 });
    expect(await h.push(e)).toMatchObject({ outcome: 'rolled_back', liveReleaseId: d });
    expect(h.releaseState(d)).toBe('bad');
    expect(a).toBe(rel('a'));
  });

  it('a switch to a slot running a bad release is refused, pointing at the forced rollback', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true, windowMs: 0 } } });
    const [a, b] = [h.upload(rel('a')), h.upload(rel('b'))];
    await h.push(a);
    await h.push(b);
    h.state.setReleaseState(APP, a, 'bad');
    const error = refusal(() => h.switchTo('blue'));
    expect(error.code).toBe('release_bad');
    expect(error.hint).toBe(`to send traffic to it anyway: deploy rollback --to ${a} --force`);
  });
});

describe('every activation that moves traffic is watched and swapped back', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('a rollback whose target fails inside its window is swapped back to the slot it left, and marked bad', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
    // its warm process is gone, so the rollback starts it again; it fails 3 s after starting
    h.processes.kill(`${APP}-blue`);
    h.behave(a, { failHealthAfterMs: 3_000 });
    const result = await h.rollback();
    expect(result).toMatchObject({ outcome: 'rolled_back', phase: 'after_switch', liveReleaseId: b });
    expect(stepsOf(h, result)).toEqual(['preflight:ok', 'starting:ok', 'healthy:ok', 'switching:ok', 'watching:ok', 'swap_back:ok', 'compensate:ok']);
    expect(h.releaseState(a)).toBe('bad');
    expect(h.served()).toMatchObject({ releaseId: b, status: 200 });
  });

  it('a switch is watched and swapped back too', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
    const age = h.clock.now() - h.processes.procs.get(`${APP}-blue`)!.startedAt;
    h.behave(a, { failHealthAfterMs: age + 5_000 });
    const result = await h.switchTo('blue');
    expect(result).toMatchObject({ outcome: 'rolled_back', liveReleaseId: b });
  });

  it('rollback and switch watch for the shorter activation window (15 s by default, configurable); a push for the full one', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b] = [h.upload(rel('a')), h.upload(rel('b'))];
    await h.push(a);
    expect(windowPassed(await h.push(b))).toBe('60 s window passed');
    expect(windowPassed(await h.switchTo('blue'))).toBe('15 s window passed');
    h.config.apps[APP]!.watch!.activationWindowMs = 5_000;
    expect(windowPassed(await h.rollback())).toBe('5 s window passed');
  });

  it('--no-wait: the client may leave after the switch; the agent still watches and swaps back', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    const [a, b] = await h.pushAll(rel('a'), rel('b')) as [string, string];
    h.processes.kill(`${APP}-blue`);
    h.behave(a, { failHealthAfterMs: 3_000 });
    const feed = h.rollouts.startRollback({ app: APP, force: false, actor: ACTOR });
    let unsubscribe: () => void = () => undefined;
    const switched = new Promise<void>((resolve) => {
      unsubscribe = feed.subscribe((line) => { if (line.type === 'event' && line.step === 'switching' && line.status === 'ok') resolve(); });
    });
    await switched;
    unsubscribe();
    expect((await feed.done)?.outcome).toBe('rolled_back');
    expect(h.served().releaseId).toBe(b);
  });
});

describe('a rollback settles like a push', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('the slot it leaves keeps running through the window, then is stopped (keepPreviousWarm false)', async () => {
    h = createHarness();
    await h.pushAll(rel('a'), rel('b'));
    const feed = h.rollouts.startRollback({ app: APP, force: false, actor: ACTOR });
    const leftDuringWindow: boolean[] = [];
    feed.subscribe((line) => {
      if (line.type === 'event' && line.step === 'watching' && line.status === 'started') leftDuringWindow.push(h.processes.procs.has(`${APP}-green`));
    });
    const result = await h.run(feed);
    expect(leftDuringWindow).toEqual([true]);
    expect(stepsOf(h, result).slice(-2)).toEqual(['watching:ok', 'settle:ok']);
    expect(h.slotRow('green').state).toBe('stopped');
    expect(h.processes.procs.has(`${APP}-green`)).toBe(false);
  });

  it('with keepPreviousWarm it stays warm', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true } } });
    await h.pushAll(rel('a'), rel('b'));
    await h.rollback();
    expect(h.slotRow('green').state).toBe('running');
  });
});

describe('--to takes an unambiguous prefix of a release id or commit SHA', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('a 7-character prefix of the id, the printed 12, a prefix of the manifest\'s commit SHA', async () => {
    h = createHarness({ app: { watch: { keepPreviousWarm: true, windowMs: 0 } } });
    const sha = '1234567890abcdef1234567890abcdef12345678';
    const a = h.upload(`${sha.slice(0, 12)}-${'e'.repeat(16)}`, {}, sha);
    const b = h.upload(rel('b'));
    await h.push(a);
    await h.push(b);
    expect(await h.rollback({ to: a.slice(0, 7) })).toMatchObject({ liveReleaseId: a });
    expect(await h.rollback({ to: b.slice(0, 12) })).toMatchObject({ liveReleaseId: b });
    expect(await h.rollback({ to: sha.slice(0, 20) })).toMatchObject({ liveReleaseId: a });
  });

  it('an ambiguous prefix is refused, listing the candidates; nothing changes', async () => {
    h = createHarness({ app: { watch: { windowMs: 0 } } });
    const sha = 'abcdef0000000000000000000000000000000000';
    const one = h.upload(`abcdef0000aa-${'1'.repeat(16)}`, {}, sha);
    const two = h.upload(`abcdef0000aa-${'2'.repeat(16)}`, {}, sha);
    const live = h.upload(rel('c'));
    await h.push(live);
    const before = h.state.deployments(APP).length;
    const error = refusal(() => h.rollback({ to: 'abcdef0' }));
    expect(error.code).toBe('release_ref_ambiguous');
    expect(error.message).toContain(one);
    expect(error.message).toContain(two);
    expect([...error.details!].sort()).toEqual([`${one} (ready)`, `${two} (ready)`]);
    expect(h.state.deployments(APP).length).toBe(before);
    expect(refusal(() => h.rollback({ to: 'fedcba9' })).code).toBe('release_not_found');
  });
});

describe('rollback and activation plans (pure)', () => {
  const c = (id: string, over: Partial<RollbackCandidate> = {}): RollbackCandidate =>
    ({ releaseId: rel(id), sha: rel(id), state: 'good', lastDeployId: null, liveAt: null, rolledBack: false, ...over });

  it('walks back by the last push, skipping live, bad, failed, never-live and rolled-back releases', () => {
    const releases = [
      c('a', { lastDeployId: 1 }), c('b', { lastDeployId: 2 }), c('c', { lastDeployId: 3, rolledBack: true }),
      c('d', { lastDeployId: 4, state: 'bad' }), c('e', { state: 'ready' }), c('f', { lastDeployId: 5, state: 'failed' }), c('g', { lastDeployId: 6 }),
    ];
    expect(previousRelease(releases, rel('g'))).toBe(rel('b'));
    expect(previousRelease(releases, rel('b'))).toBe(rel('g'));
    expect(previousRelease([c('a', { lastDeployId: 1 })], rel('a'))).toBeNull();
    // releases live before deploy order was recorded come after every pushed one, newest first
    expect(previousRelease([c('x', { liveAt: '2026-01-02' }), c('y', { liveAt: '2026-01-03' }), c('z', { lastDeployId: 1 })], null)).toBe(rel('z'));
    expect(previousRelease([c('x', { liveAt: '2026-01-02' }), c('y', { liveAt: '2026-01-03' })], null)).toBe(rel('y'));
  });

  it('records a forced override only when --force overrode a bad mark', () => {
    const releases = [c('a', { lastDeployId: 1, state: 'bad' }), c('b', { lastDeployId: 2 })];
    const base = { app: APP, liveSlot: 'green' as const, liveRelease: rel('b'), releases };
    expect(planRollback({ ...base, to: rel('a'), force: true })).toEqual({ target: rel('a'), targetState: 'bad', forced: true, marksLiveRolledBack: true });
    expect(planRollback({ ...base, releases: [c('a', { lastDeployId: 1 }), c('b', { lastDeployId: 2 })], force: true }))
      .toEqual({ target: rel('a'), targetState: 'good', forced: false, marksLiveRolledBack: true });
    // going forward in deploy order (undoing a rollback) marks nothing
    expect(planRollback({ ...base, liveSlot: 'blue', liveRelease: rel('a'), to: rel('b'), force: false }).marksLiveRolledBack).toBe(false);
    expect(refusal(() => planRollback({ ...base, to: rel('a'), force: false })).hint).toContain(`deploy rollback --to ${rel('a')} --force`);
  });

  it('resolves a full id even when it is the prefix of another', () => {
    expect(resolveReleaseRef(APP, rel('a'), [c('a'), { ...c('a'), releaseId: `${rel('a')}-dirty-${'1'.repeat(12)}` }]).releaseId).toBe(rel('a'));
  });

  it('activation windows: push full, rollback/switch shorter, a bad target full; a switch does not settle', () => {
    const watch = { windowMs: 60_000, intervalMs: 1000, failuresToRollback: 3, keepPreviousWarm: false };
    expect(planActivation('deploy', 'ready', watch)).toEqual({ windowMs: 60_000, settle: true, clearsBadMark: false });
    expect(planActivation('rollback', 'good', watch)).toEqual({ windowMs: 15_000, settle: true, clearsBadMark: false });
    expect(planActivation('switch', 'good', watch)).toEqual({ windowMs: 15_000, settle: false, clearsBadMark: false });
    expect(planActivation('rollback', 'bad', watch)).toEqual({ windowMs: 60_000, settle: true, clearsBadMark: true });
    expect(planActivation('rollback', 'good', { ...watch, windowMs: 2_000 }).windowMs).toBe(2_000);
    expect(planActivation('switch', 'good', { ...watch, activationWindowMs: 0 }).windowMs).toBe(0);
    expect(planActivation('rollback', 'bad', { ...watch, windowMs: 0 })).toMatchObject({ windowMs: 0, clearsBadMark: false });
    expect(releaseStateAfterSwitch('bad')).toBe('bad');
    expect(releaseStateAfterSwitch('ready')).toBe('good');
    expect(releaseStateAfterSwitch('failed')).toBe('good');
  });
});

describe('what deploy releases and deploy history show', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('rolled_back with who, when and why; a live release marked bad; forced rollbacks', async () => {
    h = createHarness({ app: { watch: { windowMs: 0, keepPreviousWarm: false } } });
    const [a, b, c] = [h.upload(rel('a')), h.upload(rel('b')), h.upload(rel('c'))];
    for (const r of [a, b, c]) await h.push(r);
    await h.rollback({ reason: 'checkout broken', actor: 'ops@laptop' });
    h.state.setReleaseState(APP, a, 'bad');
    await h.rollback({ to: a, force: true });
    const list = releaseList(h.state, APP);
    expect(list.find((r) => r.releaseId === c)).toMatchObject({ state: 'rolled_back', recordedState: 'good', rolledBack: { by: 'ops@laptop', reason: 'checkout broken' } });
    expect(list.find((r) => r.releaseId === a)).toMatchObject({ state: 'live', recordedState: 'bad' });
    const now = Date.now();
    const text = formatReleases(list, now);
    expect(text).toMatch(new RegExp(`^${c.slice(0, 12)}\\s+rolled_back .*\\(rolled back by ops@laptop \\d+s ago: checkout broken\\)$`, 'm'));
    expect(text).toMatch(new RegExp(`^${a.slice(0, 12)}\\s+live .*\\(marked bad\\)$`, 'm'));

    const history = formatHistory(h.state.deployments(APP).map(deploymentSummary), now);
    expect(history).toMatch(/rollback +a{12} .* FORCED\n {4}from b{12} \(marked rolled back\)\n {4}forced: the target was marked bad; mark kept/);
    expect(history).toMatch(/rollback +b{12} .*\n {4}from c{12} \(marked rolled back\)\n {4}note: checkout broken/);
  });
});
