// Item 6: the agent's memory (idle, and after many deployments) against a bare Node process, and
// the latency of GET /apps/:app at a steady 200 requests per second against the agent's own
// /health route (same server, no work): the difference is what the status route costs.
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { Slot } from '../../contract/names.js';
import { APP } from '../../test/helpers/stack.js';
import { requireSucceeded } from './agent-api.js';
import type { BenchContext } from './context.js';
import { pause, rssMb } from './procs.js';
import { makeFigure } from './report.js';
import { percentile, summarize } from './stats.js';

/** A few readings a moment apart; their median. */
export async function steadyRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    const rss = await rssMb(pid);
    if (rss === null) throw new Error(`process ${pid} is gone`);
    readings.push(rss);
    await pause(200);
  }
  return summarize(readings)!.median;
}

async function bareNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)'], { stdio: 'ignore' });
  try {
    await pause(1000);
    return await steadyRss(child.pid!);
  } finally {
    child.kill('SIGKILL');
  }
}

interface RateLatencies {
  /** From the moment each request was sent. */
  sent: number[];
  /** From the moment each was due on the fixed schedule (includes the client's own timer lateness). */
  scheduled: number[];
}

/**
 * GETs `path` on fresh connections (as each controller request arrives on a new SSH channel) on a
 * fixed schedule of `rps`.
 */
function latencyAtRate(port: number, path: string, token: string | null, rps: number, seconds: number): Promise<RateLatencies> {
  const total = Math.round(rps * seconds);
  const latencies: RateLatencies = { sent: [], scheduled: [] };
  let failures = 0;
  return new Promise((resolve, reject) => {
    const start = performance.now() + 20;
    let sent = 0;
    let done = 0;
    const finish = () => {
      done += 1;
      if (done < total) return;
      if (failures > 0) reject(new Error(`${failures} of ${total} GET ${path} failed`));
      else resolve(latencies);
    };
    const fire = () => {
      const sentAt = performance.now();
      // A timer may fire a fraction of a millisecond early: never count from the future.
      const due = Math.min(start + (sent * 1000) / rps, sentAt);
      sent += 1;
      const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 5_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          const now = performance.now();
          if (res.statusCode === 200) {
            latencies.sent.push(now - sentAt);
            latencies.scheduled.push(now - due);
          } else failures += 1;
          finish();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => { failures += 1; finish(); });
      if (sent < total) setTimeout(fire, Math.max(0, start + (sent * 1000) / rps - performance.now()));
    };
    setTimeout(fire, 20);
  });
}

export async function benchFootprint(ctx: BenchContext, idleRss: number): Promise<void> {
  const { stack, plan } = ctx;
  const section = '6. Agent footprint';
  const baseRss = await bareNodeRss();
  ctx.figures.push(makeFigure({
    id: 'footprint.rss.idle', section, title: 'agent RSS, idle (MB)', unit: 'MB',
    slipway: { label: 'slipway-agent', samples: [idleRss] }, baseline: { label: 'bare node process', samples: [baseRss] },
    goal: { kind: 'atMost', value: 80 },
  }));

  ctx.log(`footprint: ${plan.deployments} deployments`);
  const started = Date.now();
  for (let i = 0; i < plan.deployments; i++) {
    const state = await ctx.api.json<{ liveSlot: Slot; slots: { slot: Slot; releaseId: string | null }[] }>('GET', `/apps/${APP}`);
    const standby = state.slots.find((s) => s.slot !== state.liveSlot)!;
    if (!standby.releaseId) throw new Error('the footprint bench needs a release in the standby slot');
    requireSucceeded(await ctx.api.rollout(`/apps/${APP}/deployments`, { releaseId: standby.releaseId, slot: standby.slot }), `deployment ${i + 1}`);
  }
  const perDeployment = (Date.now() - started) / Math.max(1, plan.deployments);
  await pause(1000);
  const afterRss = await steadyRss(stack.agent.pid);
  ctx.figures.push(makeFigure({
    id: 'footprint.rss.deployments', section, title: `agent RSS after ${plan.deployments} deployments (MB)`, unit: 'MB',
    slipway: { label: 'slipway-agent', samples: [afterRss] }, baseline: { label: 'agent idle', samples: [idleRss] },
    goal: { kind: 'atMost', value: 80 },
    notes: [`the deployments (start + health gate + switch, no watch window) took ${perDeployment.toFixed(0)} ms each on average`],
  }));

  const rps = 200;
  ctx.log(`footprint: GET latency at ${rps} rps for ${plan.getSeconds} s each`);
  const health = await latencyAtRate(stack.agentPort, '/health', null, rps, plan.getSeconds);
  const status = await latencyAtRate(stack.agentPort, `/apps/${APP}`, ctx.api.token, rps, plan.getSeconds);
  const p99 = (values: number[]) => percentile([...values].sort((a, b) => a - b), 99);
  ctx.figures.push(makeFigure({
    id: 'footprint.get.p50', section, title: `GET /apps/:app at ${rps} rps: p50 (ms)`, unit: 'ms',
    slipway: { label: 'GET /apps/:app', samples: status.sent }, baseline: { label: 'GET /health', samples: health.sent },
  }));
  ctx.figures.push(makeFigure({
    id: 'footprint.get.p99', section, title: `GET /apps/:app at ${rps} rps: p99 (ms)`, unit: 'ms',
    slipway: { label: 'GET /apps/:app', samples: [p99(status.sent)] }, baseline: { label: 'GET /health', samples: [p99(health.sent)] },
    goal: { kind: 'atMost', value: 5 },
    notes: [`${status.sent.length} requests on fresh connections, timed from when each was sent; timed from when each was due on the schedule instead (the bench's own timer lateness included): p99 ${p99(status.scheduled).toFixed(1)} ms vs ${p99(health.scheduled).toFixed(1)} ms`],
  }));
}
