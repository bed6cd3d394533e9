import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, APP, type Stack } from '../helpers/stack.js';
import { startPrometheus, type PrometheusServer } from '../helpers/prometheus.js';
import { agentRequest } from '../helpers/box.js';
import { waitFor } from '../helpers/wait.js';
import { releaseOfCommit } from '../helpers/state.js';

// GET /metrics scraped by a real Prometheus server with the agent's token as its credentials
// file; the series are read back through Prometheus' own query API after a push and a swap-back.

describe('Prometheus metrics and DORA figures', () => {
  let stack: Stack;
  let prom: PrometheusServer;
  let goodRelease: string;

  beforeAll(async () => {
    stack = await startStack({ appConfig: { watch: { windowMs: 6000, intervalMs: 200, failuresToRollback: 2, keepPreviousWarm: true } } });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    goodRelease = releaseOfCommit(stack.home, APP, await stack.repo.head());
    // A second commit whose app fails its health check a moment after the switch: swapped back.
    await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: '1500\n' }, 'goes bad after the switch');
    const second = await stack.deploy(['push']);
    expect(second.code, second.stderr + second.stdout).toBe(4);
    prom = await startPrometheus({ host: '127.0.0.1', port: stack.agentPort, credentialsFile: path.join(stack.dir, 'agent.token') });
  });
  afterAll(async () => {
    await prom?.stop();
    await stack?.stop();
  });

  it('refuses /metrics without the token', async () => {
    expect((await agentRequest(stack, 'GET', '/metrics', { token: null })).status).toBe(401);
  });

  it('Prometheus scrapes the agent and sees rollouts, the swap-back, the live release and step durations', async () => {
    const up = await waitFor(async () => (await prom.query('up{job="slipway-agent"}')).find((r) => r.value[1] === '1'),
      { description: 'the agent scraped and up', timeoutMs: 30_000, intervalMs: 500 });
    expect(up.metric.instance).toBe(`127.0.0.1:${stack.agentPort}`);
    const rollouts = await waitFor(async () => {
      const rows = await prom.query(`slipway_rollouts_total{app="${APP}"}`);
      return rows.length >= 2 ? rows : null;
    }, { description: 'rollout counters', timeoutMs: 15_000, intervalMs: 500 });
    const byOutcome = Object.fromEntries(rollouts.map((r) => [`${r.metric.kind}/${r.metric.outcome}`, Number(r.value[1])]));
    expect(byOutcome).toMatchObject({ 'deploy/succeeded': 1, 'deploy/rolled_back': 1 });
    expect(Number((await prom.query(`slipway_swap_backs_total{app="${APP}"}`))[0]!.value[1])).toBe(1);
    const live = await prom.query(`slipway_live_release_info{app="${APP}"}`);
    expect(live.map((r) => r.metric.release)).toEqual([goodRelease]);
    const steps = await prom.query(`slipway_step_duration_seconds_count{app="${APP}",step="healthy"}`);
    expect(Number(steps[0]!.value[1])).toBeGreaterThanOrEqual(2);
    expect(Number((await prom.query(`slipway_lock_held{app="${APP}"}`))[0]!.value[1])).toBe(0);
    const liveSlot = live[0]!.metric.slot;
    const online = await prom.query(`slipway_process_instances_online{app="${APP}",slot="${liveSlot}",process="web"}`);
    expect(online.map((r) => Number(r.value[1]))).toEqual([1]);
    expect(Number((await prom.query(`slipway_dora_change_failure_rate{app="${APP}"}`))[0]!.value[1])).toBe(0.5);
  });

  it('GET /apps/:app/dora answers the DORA figures deploy metrics prints', async () => {
    const answer = await agentRequest(stack, 'GET', `/apps/${APP}/dora?since=7d`);
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({ deployments: 2, changeFailures: { failed: 1, total: 2, rate: 0.5 }, timeToRestore: { count: 1, open: 0 }, leadTime: { count: 1 } });
    const cli = await stack.deploy(['metrics', '--since', '7d']);
    expect(cli.code, cli.stderr + cli.stdout).toBe(0);
    expect(cli.stdout).toMatch(/deployment frequency\s+2 in 7 d/);
    expect(cli.stdout).toMatch(/change failure rate\s+50%/);
  });
});
