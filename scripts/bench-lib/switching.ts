// Items 4 and 5: the agent's switch (POST /apps/:app/switch, and rollbacks) against a bare nginx
// flip + reload, first unloaded for latency, then under wrk for what clients lose.
import type { Slot } from '../../contract/names.js';
import { APP } from '../../test/helpers/stack.js';
import { requireSucceeded } from './agent-api.js';
import { deployCli, requireCliOk, type BenchContext } from './context.js';
import { BARE_RELEASES } from './bare-nginx.js';
import { ReleasePoller, epochMs } from './poller.js';
import { pause, startWrk } from './procs.js';
import { makeFigure } from './report.js';
import { analyzeTransition, type Transition } from './stats.js';

const POLL_MS = 2;

interface AppState { liveSlot: Slot; liveReleaseId: string; slots: { slot: Slot; releaseId: string | null; state: string }[] }

async function appState(ctx: BenchContext): Promise<AppState> {
  return ctx.api.json<AppState>('GET', `/apps/${APP}`);
}

async function measure(url: string, from: string, to: string, act: () => Promise<number>): Promise<Transition & { firstMs: number }> {
  const poller = new ReleasePoller(url, { intervalMs: POLL_MS }).start();
  try {
    // A few probes before the action prove the old release answers at the start.
    await poller.waitFor((s) => s.release === from, 0, 5_000, `release ${from.slice(0, 12)} before the switch`);
    const started = await act();
    const served = await poller.waitForRelease(to, started, 15_000);
    const end = Math.max(served.doneAt, epochMs()) + 200;
    await poller.waitFor((s) => s.sentAt > end, end, 2_000, 'probes after the switch').catch(() => undefined);
    const t = analyzeTransition(poller.samples, { from: started, to: end, oldRelease: from, newRelease: to });
    if (t.firstMs === null) throw new Error(`release ${to.slice(0, 12)} never answered`);
    return { ...t, firstMs: t.firstMs };
  } finally {
    await poller.stop();
  }
}

/** The next agent switch (or rollback) to the standby slot; run() resolves with when it was sent, once it succeeded. */
async function agentSwitch(ctx: BenchContext, kind: 'switch' | 'rollback'): Promise<{ from: string; to: string; run: () => Promise<number> }> {
  const state = await appState(ctx);
  const target = state.slots.find((s) => s.slot !== state.liveSlot)!;
  if (!target.releaseId || target.state !== 'running') throw new Error(`standby slot ${target.slot} is ${target.state}; the switch bench needs both slots running`);
  return {
    from: state.liveReleaseId,
    to: target.releaseId,
    run: async () => {
      const sentAt = epochMs();
      const rollout = kind === 'switch'
        ? await ctx.api.rollout(`/apps/${APP}/switch`, { slot: target.slot })
        : await ctx.api.rollout(`/apps/${APP}/rollback`, { reason: 'bench' });
      requireSucceeded(rollout, `${kind} to ${target.slot}`);
      return sentAt;
    },
  };
}

export async function benchSwitchLatency(ctx: BenchContext): Promise<void> {
  const { stack, bare, plan } = ctx;
  const slipwayFirst: number[] = [];
  const slipwaySettled: number[] = [];
  const bareFirst: number[] = [];
  const bareSettled: number[] = [];
  const misses: number[] = [];
  const bareReload: number[] = [];
  for (let rep = 0; rep < plan.switchReps; rep++) {
    const runAgent = async () => {
      const sw = await agentSwitch(ctx, 'switch');
      // run() resolves once the switch is proven; the first new answer was recorded before that.
      const t = await measure(`${stack.publicUrl}/`, sw.from, sw.to, () => sw.run());
      slipwayFirst.push(t.firstMs);
      if (t.settledMs !== null) slipwaySettled.push(t.settledMs);
      misses.push(t.misses);
    };
    const runBare = async () => {
      const from = bare.live;
      const to: Slot = from === 'blue' ? 'green' : 'blue';
      const t = await measure(bare.url, BARE_RELEASES[from], BARE_RELEASES[to], async () => {
        const flip = await bare.flip(to);
        bareReload.push(flip.reloadMs);
        return flip.writtenAt;
      });
      bareFirst.push(t.firstMs);
      if (t.settledMs !== null) bareSettled.push(t.settledMs);
    };
    if (rep % 2 === 0) { await runAgent(); await runBare(); } else { await runBare(); await runAgent(); }
  }
  ctx.shared.bareSwitchMs.push(...bareFirst);
  const section = '4. Switch latency';
  ctx.figures.push(makeFigure({
    id: 'switch.first', section, title: 'switch → new release answers (ms)', unit: 'ms',
    slipway: { label: 'POST /apps/:app/switch', samples: slipwayFirst }, baseline: { label: 'nginx flip + reload', samples: bareFirst },
    goal: { kind: 'ratioAtMost', value: 1.5 },
    notes: [`bare \`nginx -s reload\` command itself: ${bareReload.map((v) => v.toFixed(1)).join('/')} ms; probes answered by neither release during Slipway switches: ${misses.join('/')}`],
  }));
  ctx.figures.push(makeFigure({
    id: 'switch.settled', section, title: 'switch → only the new release answers (ms)', unit: 'ms',
    slipway: { label: 'POST /apps/:app/switch', samples: slipwaySettled }, baseline: { label: 'nginx flip + reload', samples: bareSettled },
    notes: ['until no probe reaches an old nginx worker any more (the old workers stop accepting a little after the new ones start)'],
  }));
}

interface LoadTotals { requests: number; durationS: number; non2xx: number; socket: { connect: number; read: number; write: number; timeout: number }; flips: number; flipMs: number }

function emptyTotals(): LoadTotals {
  return { requests: 0, durationS: 0, non2xx: 0, socket: { connect: 0, read: 0, write: 0, timeout: 0 }, flips: 0, flipMs: 0 };
}

/**
 * wrk -t2 -c50 against `url` while `count` flips run, one every `periodMs` at most; adds wrk's
 * totals to `into`. Each block is its own wrk run, so Slipway and bare blocks can alternate.
 */
async function loadBlock(url: string, count: number, periodMs: number, flip: () => Promise<unknown>, into: LoadTotals): Promise<void> {
  const wrk = startWrk(url, { threads: 2, connections: 50, maxSeconds: 300 });
  let result;
  try {
    await pause(500);
    const started = Date.now();
    for (let i = 0; i < count; i++) {
      const t = Date.now();
      await flip();
      await pause(Math.max(0, periodMs - (Date.now() - t)));
    }
    into.flipMs += Date.now() - started;
    into.flips += count;
    await pause(500);
  } finally {
    result = await wrk.stop();
  }
  into.requests += result.requests;
  into.durationS += result.durationS;
  into.non2xx += result.non2xx;
  for (const k of ['connect', 'read', 'write', 'timeout'] as const) into.socket[k] += result.socketErrors[k];
}

const socketTotal = (t: LoadTotals) => t.socket.connect + t.socket.read + t.socket.write + t.socket.timeout;

export async function benchZeroDowntime(ctx: BenchContext): Promise<void> {
  const { stack, bare, plan } = ctx;
  const section = '5. Zero downtime under wrk';
  // Socket errors swing several-fold with the box's load from one wrk run to the next, so the
  // flips go in blocks that alternate between Slipway and the bare baseline.
  const blockSize = 5;
  for (const [kind, total] of [['switch', plan.loadSwitches], ['rollback', plan.loadRollbacks]] as const) {
    const slipway = emptyTotals();
    const baseline = emptyTotals();
    let period = 300;
    for (let done = 0, block = 0; done < total; done += blockSize, block++) {
      const n = Math.min(blockSize, total - done);
      ctx.log(`wrk: ${kind} ${done + 1}–${done + n} of ${total}, then as many bare reloads`);
      const runSlipway = async () => {
        await loadBlock(`${stack.publicUrl}/`, n, period, async () => (await agentSwitch(ctx, kind)).run(), slipway);
        // The bare reloads are paced like the agent's flips.
        period = Math.max(period, slipway.flipMs / slipway.flips);
      };
      const runBare = () => loadBlock(bare.url, n, period, () => bare.flip(bare.live === 'blue' ? 'green' : 'blue'), baseline);
      if (block % 2 === 0) { await runSlipway(); await runBare(); } else { await runBare(); await runSlipway(); }
    }
    const describe = (t: LoadTotals) => `${t.requests} requests in ${t.durationS.toFixed(1)} s, ${(socketTotal(t) / Math.max(1, t.flips)).toFixed(1)} socket errors per flip (connect ${t.socket.connect}, read ${t.socket.read}, write ${t.socket.write}, timeout ${t.socket.timeout})`;
    const name = `${total} ${kind}${total === 1 ? '' : kind === 'switch' ? 'es' : 's'}`;
    const bareLabel = `${total} bare reloads`;
    ctx.figures.push(makeFigure({
      id: `wrk.${kind}.non2xx`, section, title: `non-2xx responses during ${name}`, unit: 'count',
      slipway: { samples: [slipway.non2xx] }, baseline: { label: bareLabel, samples: [baseline.non2xx] }, goal: { kind: 'zero' },
    }));
    ctx.figures.push(makeFigure({
      id: `wrk.${kind}.socket`, section, title: `socket errors during ${name}`, unit: 'count',
      slipway: { samples: [socketTotal(slipway)] }, baseline: { label: bareLabel, samples: [socketTotal(baseline)] },
      goal: { kind: 'notAboveBaseline' },
      notes: [`Slipway: ${describe(slipway)}; bare: ${describe(baseline)}; one flip every ${period.toFixed(0)} ms at most`],
    }));
    ctx.figures.push(makeFigure({
      id: `wrk.${kind}.requests`, section, title: `requests served during ${name}`, unit: 'req',
      slipway: { samples: [slipway.requests] }, baseline: { label: bareLabel, samples: [baseline.requests] },
    }));
  }
}

/**
 * Issue 16: `deploy push` of a new release (same routes, same ports) under wrk. The include names
 * no release any more, so a push only flips the switch flag: no `nginx -t`, no reload, no worker
 * replaced. The baseline is what every push did before: a flip plus an nginx reload (the bare
 * nginx, paced like the pushes). Alternating blocks, as for the switches.
 */
export async function benchPushesUnderWrk(ctx: BenchContext): Promise<void> {
  const { stack, bare, plan } = ctx;
  const section = '5. Zero downtime under wrk';
  const total = plan.loadPushes;
  const blockSize = 5;
  const slipway = emptyTotals();
  const baseline = emptyTotals();
  let period = 300;
  let pushed = 0;
  let workersReplaced = 0;
  const push = async () => {
    pushed += 1;
    await stack.repo.commit({ 'message.txt': `bench push under wrk ${pushed}\n` }, `bench: push ${pushed} under wrk`);
    const workers = stack.nginx.workerPids();
    requireCliOk(await deployCli(stack, ['push', '--no-wait']), `push ${pushed} under wrk`);
    await ctx.api.waitUnlocked(APP);
    const now = stack.nginx.workerPids();
    workersReplaced += workers.filter((pid) => !now.includes(pid)).length;
  };
  for (let done = 0, block = 0; done < total; done += blockSize, block++) {
    const n = Math.min(blockSize, total - done);
    ctx.log(`wrk: push ${done + 1}–${done + n} of ${total}, then as many bare reloads`);
    const runSlipway = async () => {
      await loadBlock(`${stack.publicUrl}/`, n, period, push, slipway);
      period = Math.max(period, slipway.flipMs / slipway.flips);
    };
    const runBare = () => loadBlock(bare.url, n, period, () => bare.flip(bare.live === 'blue' ? 'green' : 'blue'), baseline);
    if (block % 2 === 0) { await runSlipway(); await runBare(); } else { await runBare(); await runSlipway(); }
  }
  const describe = (t: LoadTotals) => `${t.requests} requests in ${t.durationS.toFixed(1)} s, ${(socketTotal(t) / Math.max(1, t.flips)).toFixed(1)} socket errors per push/reload (connect ${t.socket.connect}, read ${t.socket.read}, write ${t.socket.write}, timeout ${t.socket.timeout})`;
  const bareLabel = `${total} bare reloads (each push before issue 16)`;
  ctx.figures.push(makeFigure({
    id: 'wrk.push.non2xx', section, title: `non-2xx responses during ${total} pushes`, unit: 'count',
    slipway: { label: 'deploy push (CLI)', samples: [slipway.non2xx] }, baseline: { label: bareLabel, samples: [baseline.non2xx] }, goal: { kind: 'zero' },
  }));
  ctx.figures.push(makeFigure({
    id: 'wrk.push.socket', section, title: `socket errors during ${total} pushes`, unit: 'count',
    slipway: { label: 'deploy push (CLI)', samples: [socketTotal(slipway)] }, baseline: { label: bareLabel, samples: [socketTotal(baseline)] },
    goal: { kind: 'zero' },
    notes: [`Slipway: ${describe(slipway)}; nginx workers replaced during the pushes: ${workersReplaced}; bare: ${describe(baseline)}; one push/reload every ${period.toFixed(0)} ms at most`],
  }));
}
