// Items 1 (re-push), 2 and 3: whole `deploy` CLI processes against Capistrano deploying the same
// commits over the same sshd, each timed from the process start until a fresh connection gets
// the expected SHA, with every probe in between checked for a gap where neither SHA answered.
import type { DeploymentEvent } from '../../contract/api.js';
import { APP } from '../../test/helpers/stack.js';
import { deployCli, jsonLines, liveRelease, requireCliOk, sshArgv, type BenchContext } from './context.js';
import { ReleasePoller, epochMs } from './poller.js';
import { runTimed, type TimedRun } from './procs.js';
import { makeFigure } from './report.js';
import { analyzeTransition, summarize, type Transition } from './stats.js';

const POLL_MS = 5;

export interface Timed { servedMs: number; transition: Transition; run: TimedRun }

/**
 * Runs `action` while polling `url`; resolves once `target` answers and the action has ended.
 * The transition is analysed from the action's start to its end (or to the first answer, if later).
 */
export async function timeUntilServed(url: string, from: string | null, target: string, action: () => Promise<TimedRun>, headers: Record<string, string> = {}): Promise<Timed> {
  const poller = new ReleasePoller(url, { intervalMs: POLL_MS, headers }).start();
  try {
    const started = epochMs();
    const running = action();
    // Awaited below; until then a failure must not surface as an unhandled rejection.
    running.catch(() => undefined);
    let served: number;
    try {
      served = (await poller.waitForRelease(target, started, 120_000)).doneAt;
    } catch (error) {
      const run = await running.catch((e: unknown) => e);
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the action ended with: ${JSON.stringify(run instanceof Error ? run.message : (run as TimedRun).stderr?.slice(-1500))}`);
    }
    const run = await running;
    const to = Math.max(served, run.endedAt);
    await poller.waitFor((s) => s.sentAt > to, to, 2_000, 'a probe after the end').catch(() => undefined);
    const transition = analyzeTransition(poller.samples, { from: started, to, oldRelease: from, newRelease: target });
    return { servedMs: served - started, transition, run };
  } finally {
    await poller.stop();
  }
}

/** Median elapsed time of each rollout step reported by the CLI's --json events. */
function stepMedians(runs: TimedRun[]): string {
  const bySteps = new Map<string, number[]>();
  for (const run of runs) {
    for (const { value } of jsonLines(run)) {
      const e = value as unknown as DeploymentEvent;
      if (e.type === 'event' && (e.status === 'ok' || e.status === 'failed') && typeof e.elapsedMs === 'number') {
        bySteps.set(e.step, [...(bySteps.get(e.step) ?? []), e.elapsedMs]);
      }
    }
  }
  return [...bySteps].map(([step, ms]) => `${step} ${summarize(ms)?.median.toFixed(0)} ms`).join(', ');
}

export async function benchRepush(ctx: BenchContext): Promise<void> {
  const { stack, plan } = ctx;
  const repush: number[] = [];
  const bytes: number[] = [];
  const served: number[] = [];
  const sshTrue: number[] = [];
  for (let rep = 0; rep < plan.repushReps; rep++) {
    const status = await ctx.api.json<{
      liveSlot: string; liveReleaseId: string; slots: { slot: string; releaseId: string | null }[]; releases: { releaseId: string; manifest: { sha: string } }[];
    }>('GET', `/apps/${APP}`);
    const known = status.slots.find((s) => s.slot !== status.liveSlot)?.releaseId;
    // `deploy push --sha` takes the commit; packing it again gives the same release id.
    const knownCommit = status.releases.find((r) => r.releaseId === known)?.manifest.sha;
    if (!known || !knownCommit) throw new Error('re-push needs a release in the standby slot');
    const ssh = await runTimed(sshArgv(stack, 'true'), { timeoutMs: 30_000 });
    if (ssh.code !== 0) throw new Error(`ssh host true failed: ${ssh.stderr}`);
    sshTrue.push(ssh.ms);
    let skippedAt: number | null = null;
    let sent: number | null = null;
    const timed = await timeUntilServed(`${stack.publicUrl}/`, status.liveReleaseId, known, () => deployCli(stack, ['push', '--no-wait', '--sha', knownCommit], {
      onLine: (line) => {
        if (line.stream !== 'stdout' || skippedAt !== null) return;
        try {
          const value = JSON.parse(line.text) as { type?: string; uploadedBytes?: number };
          if (value.type === 'info' && typeof value.uploadedBytes === 'number') {
            skippedAt = line.at;
            sent = value.uploadedBytes;
          }
        } catch { /* not JSON */ }
      },
    }));
    requireCliOk(timed.run, 're-push');
    if (skippedAt === null || sent === null) throw new Error(`re-push printed no upload line:\n${timed.run.stdout.slice(-2000)}`);
    repush.push((skippedAt as number) - timed.run.startedAt);
    bytes.push(sent);
    served.push(timed.servedMs);
    await ctx.api.waitUnlocked(APP);
  }
  ctx.figures.push(makeFigure({
    id: 'upload.repush', section: '1. Upload', title: 're-push of a known SHA: upload skipped after (ms)', unit: 'ms',
    slipway: { label: 'deploy push (CLI)', samples: repush }, baseline: { label: 'ssh host true', samples: sshTrue },
    notes: [`whole re-push until the SHA is served: ${served.map((v) => v.toFixed(0)).join('/')} ms (start + health gate + switch, no upload)`],
  }));
  ctx.figures.push(makeFigure({
    id: 'upload.repush.bytes', section: '1. Upload', title: 're-push of a known SHA: bytes uploaded', unit: 'B',
    slipway: { label: 'deploy push (CLI)', samples: bytes }, goal: { kind: 'zero' },
  }));
}

export async function benchPushAndRollback(ctx: BenchContext): Promise<void> {
  const { stack, cap, plan } = ctx;
  const push = { slipway: [] as number[], cap: [] as number[], slipwayGap: [] as number[], capGap: [] as number[], slipwayMiss: [] as number[], capMiss: [] as number[], runs: [] as TimedRun[], cli: [] as number[] };
  const back = { slipway: [] as number[], cap: [] as number[], slipwayGap: [] as number[], capGap: [] as number[], slipwayMiss: [] as number[], capMiss: [] as number[], runs: [] as TimedRun[], cli: [] as number[] };
  for (let rep = 0; rep < plan.rolloutReps; rep++) {
    const before = await liveRelease(`${stack.publicUrl}/`);
    const capBefore = await liveRelease(cap.url);
    const sha = await stack.repo.commit({ 'message.txt': `bench push ${rep} at ${new Date().toISOString()}\n`, FAIL_HEALTH_AFTER_MS: null }, `bench: push ${rep}`);
    ctx.log(`push/rollback ${rep + 1}/${plan.rolloutReps}: ${sha.slice(0, 12)}`);

    const slipwayPush = async () => {
      const t = await timeUntilServed(`${stack.publicUrl}/`, before, sha, () => deployCli(stack, ['push', '--no-wait']));
      requireCliOk(t.run, 'deploy push');
      push.slipway.push(t.servedMs);
      push.slipwayGap.push(t.transition.maxGapMs);
      push.slipwayMiss.push(t.transition.misses);
      push.runs.push(t.run);
      push.cli.push(t.run.ms);
      // --no-wait returns at the switch; the watch window still holds the lock.
      await ctx.api.waitUnlocked(APP);
    };
    const capDeploy = async () => {
      const t = await timeUntilServed(cap.url, capBefore, sha, () => cap.deploy());
      push.cap.push(t.servedMs);
      push.capGap.push(t.transition.maxGapMs);
      push.capMiss.push(t.transition.misses);
    };
    if (rep % 2 === 0) { await slipwayPush(); await capDeploy(); } else { await capDeploy(); await slipwayPush(); }

    const slipwayRollback = async () => {
      if (!before) return;
      const t = await timeUntilServed(`${stack.publicUrl}/`, sha, before, () => deployCli(stack, ['rollback', '--reason', 'bench']));
      requireCliOk(t.run, 'deploy rollback');
      back.slipway.push(t.servedMs);
      back.slipwayGap.push(t.transition.maxGapMs);
      back.slipwayMiss.push(t.transition.misses);
      back.runs.push(t.run);
      back.cli.push(t.run.ms);
      await ctx.api.waitUnlocked(APP);
    };
    const capRollback = async () => {
      if (!capBefore) return;
      const t = await timeUntilServed(cap.url, sha, capBefore, () => cap.rollback());
      back.cap.push(t.servedMs);
      back.capGap.push(t.transition.maxGapMs);
      back.capMiss.push(t.transition.misses);
    };
    if (rep % 2 === 0) { await capRollback(); await slipwayRollback(); } else { await slipwayRollback(); await capRollback(); }
  }
  const section2 = '2. Push';
  ctx.figures.push(makeFigure({
    id: 'push.served', section: section2, title: 'push → new SHA served (ms)', unit: 'ms',
    slipway: { label: 'deploy push --no-wait', samples: push.slipway }, baseline: { label: 'cap deploy', samples: push.cap },
    goal: { kind: 'ratioAtMost', value: 0.5 },
    notes: [
      `Slipway steps (median): ${stepMedians(push.runs)}; CLI process ${summarize(push.cli)?.median.toFixed(0)} ms`,
      `probes answered by neither SHA: Slipway ${push.slipwayMiss.join('/')}, Capistrano ${push.capMiss.join('/')}`,
    ],
  }));
  ctx.figures.push(makeFigure({
    id: 'push.gap', section: section2, title: 'push: longest gap with neither SHA answering (ms)', unit: 'ms',
    slipway: { label: 'deploy push --no-wait', samples: push.slipwayGap }, baseline: { label: 'cap deploy', samples: push.capGap },
    goal: { kind: 'zero' },
  }));
  const section3 = '3. Rollback';
  ctx.figures.push(makeFigure({
    id: 'rollback.served', section: section3, title: 'rollback → old SHA served (ms)', unit: 'ms',
    slipway: { label: 'deploy rollback', samples: back.slipway }, baseline: { label: 'cap deploy:rollback', samples: back.cap },
    goal: { kind: 'ratioAtMost', value: 0.35 },
    notes: [
      `Slipway steps (median): ${stepMedians(back.runs)}; CLI process ${summarize(back.cli)?.median.toFixed(0)} ms (the previous slot is kept warm: keepPreviousWarm)`,
      `probes answered by neither SHA: Slipway ${back.slipwayMiss.join('/')}, Capistrano ${back.capMiss.join('/')}`,
    ],
  }));
  ctx.figures.push(makeFigure({
    id: 'rollback.gap', section: section3, title: 'rollback: longest gap with neither SHA answering (ms)', unit: 'ms',
    slipway: { label: 'deploy rollback', samples: back.slipwayGap }, baseline: { label: 'cap deploy:rollback', samples: back.capGap },
    goal: { kind: 'zero' },
  }));
}

/** The failed watch check → old SHA served; the figure is made once the bare switch baseline exists. */
export async function benchSwapBack(ctx: BenchContext): Promise<number[]> {
  const { stack, plan } = ctx;
  const latencies: number[] = [];
  for (let rep = 0; rep < plan.swapBackReps; rep++) {
    const before = await liveRelease(`${stack.publicUrl}/`);
    if (!before) throw new Error('swap-back needs a live release');
    // Healthy long enough to pass the gate and go live, then its health check fails.
    const bad = await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: '1000\n', 'message.txt': `bench bad ${rep}\n` }, `bench: release that fails after going live ${rep}`);
    ctx.log(`swap-back ${rep + 1}/${plan.swapBackReps}: ${bad.slice(0, 12)}`);
    const poller = new ReleasePoller(`${stack.publicUrl}/`, { intervalMs: 2 }).start();
    let run: TimedRun;
    try {
      run = await deployCli(stack, ['push']);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await poller.stop();
    }
    if (run.code !== 4) {
      ctx.notes.push(`swap-back rep ${rep + 1}: deploy push exited ${run.code} instead of 4 (rolled back); rep not counted`);
      await ctx.api.waitUnlocked(APP);
      continue;
    }
    const events = jsonLines(run).map((l) => l.value as unknown as DeploymentEvent).filter((e) => e.type === 'event');
    const verdict = events.find((e) => e.step === 'watching' && e.status !== 'started' && e.status !== 'info' && (e.message ?? '').startsWith('failed'))
      ?? events.find((e) => e.step === 'swap_back' && e.status === 'started');
    if (!verdict) throw new Error(`no failed watch verdict in the push output:\n${run.stdout.slice(-2000)}`);
    const failedAt = Date.parse(verdict.at);
    const old = poller.samples.filter((s) => s.sentAt >= failedAt && s.status === 200 && s.release === before).sort((a, b) => a.doneAt - b.doneAt)[0];
    if (!old) throw new Error('the old SHA was never served after the failed check');
    latencies.push(old.doneAt - failedAt);
    await ctx.api.waitUnlocked(APP);
  }
  return latencies;
}
