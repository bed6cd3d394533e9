import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppStatus, DeploymentStreamLine, LockInfo } from '../../contract/api.js';
import { procEnviron, procStat } from '../../agent/procfs.js';
import { agentRequest, liveView, stateFingerprint } from '../helpers/box.js';
import { isAlive } from '../helpers/nginx.js';
import { APP, httpGet, startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { waitFor } from '../helpers/wait.js';

/**
 * SIGKILL of PM2's God daemon between deploys, against the real stack: the apps live on as
 * orphans, nginx keeps serving them, and the agent must notice at once, say so, start a new
 * daemon and move both slots back under it without a failed request, then deploy normally.
 */

interface Poller { stop(): Promise<{ total: number; failures: string[]; releases: Set<string> }> }

/** GETs through nginx one after another, each on a fresh connection, until stopped. */
function pollThroughNginx(stack: Stack): Poller {
  let running = true;
  const failures: string[] = [];
  const releases = new Set<string>();
  let total = 0;
  const loop = (async () => {
    while (running) {
      total += 1;
      try {
        const answer = await httpGet(`${stack.publicUrl}/`, { timeoutMs: 5_000 });
        if (answer.status < 200 || answer.status > 299) failures.push(`HTTP ${answer.status} from ${String(answer.headers['x-slipway-slot'])}`);
        else releases.add((JSON.parse(answer.body) as { release: string }).release);
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { total, failures, releases };
    },
  };
}

async function appStatus(stack: Stack): Promise<{ status: AppStatus; ms: number }> {
  const started = Date.now();
  const answer = await agentRequest(stack, 'GET', `/apps/${APP}`);
  expect(answer.status, answer.text).toBe(200);
  return { status: answer.json as unknown as AppStatus, ms: Date.now() - started };
}

function slotPids(status: AppStatus): number[] {
  return status.slots.map((s) => s.process?.pid).filter((pid): pid is number => typeof pid === 'number');
}

/** SIGKILL of the God daemon; returns its pid once it is gone. */
async function killDaemon(stack: Stack): Promise<number> {
  const daemon = stack.pm2.daemonPid()!;
  expect(isAlive(daemon)).toBe(true);
  process.kill(daemon, 'SIGKILL');
  await waitFor(() => !isAlive(daemon), { description: `PM2 daemon ${daemon} to die` });
  return daemon;
}

async function push(stack: Stack, message: string): Promise<string> {
  const sha = await stack.repo.commit({ 'message.txt': `${message}\n` }, message);
  const result = await stack.deploy(['push']);
  expect(result.code, result.stderr + result.stdout).toBe(0);
  return releaseOfCommit(stack.home, APP, sha);
}

/** Both slots run under the current daemon (not the orphans), nothing is left over, `release` serves. */
async function expectRehomed(stack: Stack, orphans: number[], release: string): Promise<void> {
  const { status } = await appStatus(stack);
  for (const pid of orphans) expect(isAlive(pid), `orphan ${pid} is gone`).toBe(false);
  const daemon = stack.pm2.daemonPid()!;
  expect(isAlive(daemon)).toBe(true);
  for (const slot of status.slots) {
    expect(slot.state, slot.slot).toBe('running');
    expect(slot.process?.status, slot.slot).toBe('online');
    expect(orphans).not.toContain(slot.process!.pid);
    expect(procStat(slot.process!.pid!)?.ppid, `${slot.slot} is a child of the PM2 daemon`).toBe(daemon);
  }
  expect(status.pm2?.state).toBe('up');
  expect((await liveView(stack)).release).toBe(release);
  const state = readState(stack.home, APP);
  expect(state.slots.map((s) => s.state)).toEqual(['running', 'running']);
  expect(state.lock).toBeUndefined();
}

describe('the PM2 daemon dies between deploys', () => {
  let stack: Stack;
  /** Every app pid the tests saw, killed by pid at the end if it is still ours and alive. */
  const seen = new Set<number>();

  beforeAll(async () => {
    stack = await startStack();
    await push(stack, 'first');
    await push(stack, 'second');
  });

  afterAll(async () => {
    for (const pid of seen) {
      if (isAlive(pid) && procEnviron(pid)?.get('PM2_HOME') === stack.pm2.pm2Home) process.kill(pid, 'SIGKILL');
    }
    await stack?.stop();
  });

  /** The live release and both slots' pids (the orphans to be) before an outage. */
  async function beforeOutage(): Promise<{ live: string; orphans: number[] }> {
    const before = (await appStatus(stack)).status;
    const orphans = slotPids(before);
    expect(orphans).toHaveLength(2);
    orphans.forEach((pid) => seen.add(pid));
    return { live: before.liveReleaseId!, orphans };
  }

  /** Traffic was served throughout, by `live` only; both slots run under the new daemon. */
  async function expectServedThroughout(poller: Poller, orphans: number[], live: string): Promise<void> {
    const traffic = await poller.stop();
    expect(traffic.failures).toEqual([]);
    expect(traffic.total).toBeGreaterThan(10);
    expect([...traffic.releases]).toEqual([live]);
    await expectRehomed(stack, orphans, live);
    slotPids((await appStatus(stack)).status).forEach((pid) => seen.add(pid));
  }

  it('status says PM2 is down within a second; the slots move back under a new daemon with no failed request; a push works', async () => {
    const { live, orphans } = await beforeOutage();
    const poller = pollThroughNginx(stack);
    await killDaemon(stack);
    const { status, ms } = await appStatus(stack);
    expect(ms).toBeLessThan(1_000);
    expect(['down', 'recovering']).toContain(status.pm2?.state);
    expect(status.pm2?.message).toMatch(/PM2 daemon/);

    // Every status answer during the outage is as quick (the slot probes' cache expires within it).
    const timings: number[] = [ms];
    await waitFor(async () => {
      const polled = await appStatus(stack);
      timings.push(polled.ms);
      return polled.status.pm2?.state === 'up';
    }, { timeoutMs: 90_000, intervalMs: 100, description: 'the PM2 daemon to be up and the slots re-homed' });
    expect(Math.max(...timings)).toBeLessThan(1_000);
    await expectServedThroughout(poller, orphans, live);

    const next = await push(stack, 'third');
    expect((await liveView(stack)).release).toBe(next);
  });

  it('an agent restarted while the daemon is dead re-homes the orphans at start, the same way', async () => {
    const { live, orphans } = await beforeOutage();
    const poller = pollThroughNginx(stack);
    await stack.agent.stop();
    await killDaemon(stack);
    await stack.restartAgent();
    await expectServedThroughout(poller, orphans, live);
    expect(stack.agent.log()).toContain('reconciling PM2');

    const next = await push(stack, 'fourth');
    expect((await liveView(stack)).release).toBe(next);
  });

  it('deploy push --wait right after the daemon died waits for the slots to be re-homed, then deploys', async () => {
    const { live, orphans } = await beforeOutage();
    const poller = pollThroughNginx(stack);
    await killDaemon(stack);
    const sha = await stack.repo.commit({ 'message.txt': 'during the outage\n' }, 'during the outage');
    const result = await stack.deploy(['push', '--wait']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const release = releaseOfCommit(stack.home, APP, sha);
    const traffic = await poller.stop();
    expect(traffic.failures).toEqual([]);
    expect([...traffic.releases].sort()).toEqual([live, release].sort());
    await expectRehomed(stack, orphans, release);
    slotPids((await appStatus(stack)).status).forEach((pid) => seen.add(pid));
  });

  it('a rollout that meets the dead daemon fails at once with pm2_daemon_down and leaves SQLite as it was', async () => {
    // Only the rollout's own PM2 call may notice the dead daemon here.
    await writeFile(stack.agentConfigPath, JSON.stringify({
      ...stack.agentConfig, pm2: { ...(stack.agentConfig.pm2 as object), watchdogIntervalMs: 60_000 },
    }, null, 2));
    await stack.restartAgent();
    const { live, orphans } = await beforeOutage();
    const standby = (await appStatus(stack)).status.slots.find((s) => !s.live)!;
    const fingerprint = stateFingerprint(stack);

    const lock = (await agentRequest(stack, 'POST', `/apps/${APP}/lock`, { json: { releaseId: standby.releaseId } })).json as unknown as { lock: LockInfo };
    await killDaemon(stack);
    const started = Date.now();
    const answer = await agentRequest(stack, 'POST', `/apps/${APP}/deployments`, { json: { releaseId: standby.releaseId, lockId: lock.lock.lockId } });
    const elapsed = Date.now() - started;
    const lines = answer.text.trim().split('\n').map((line) => JSON.parse(line) as DeploymentStreamLine);
    const result = lines.at(-1)!;
    expect(result.type).toBe('result');
    if (result.type !== 'result') return;
    expect(result).toMatchObject({ outcome: 'failed', phase: 'before_switch', error: { error: 'pm2_daemon_down' } });
    expect(result.error?.hint).toContain('deploy status');
    expect(elapsed).toBeLessThan(5_000);
    const after = stateFingerprint(stack);
    expect(after.slots).toEqual(fingerprint.slots);
    expect(after.releases).toEqual(fingerprint.releases);
    expect(readState(stack.home, APP).slots.map((s) => s.state)).not.toContain('starting');

    // The failed call woke the watchdog, which waited for the rollout's lock, then re-homed.
    await waitFor(async () => (await appStatus(stack)).status.pm2?.state === 'up', { timeoutMs: 90_000, description: 'the slots to be re-homed' });
    await expectRehomed(stack, orphans, live);
  });
});
