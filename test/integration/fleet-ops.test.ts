import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startFleetLab, type FleetLab } from '../helpers/fleet-lab.js';
import { readState } from '../helpers/state.js';
import { openDatabase } from '../../agent/state/db.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { EXIT } from '../../controller/errors.js';
import type { FleetView } from '../../controller/fleet/status-view.js';
import type { FleetHistoryEntry } from '../../controller/fleet/history-merge.js';
import type { FleetRecord } from '../../contract/api.js';

/**
 * Fleet operations on three real boxes (issue 15, part fleet-ops), each in its own network
 * namespace: status with drift, history merged by rollout, rollback/switch across the fleet with
 * one flip per host, --hosts, reconcile-first, a partition mid-rollback and a controller killed
 * mid-rollback, a controller killed mid-push and the fleet lock it leaves. One lab for the file; the cases build on each other in order.
 */

/** A partition is declared after about interval × (count + 1). */
const KEEPALIVE = { intervalMs: 1_000, countMax: 2 };
/** Long enough that a test can act while a host's rollout is watching; short enough for CI. */
const WATCH_MS = 3_000;

let lab: FleetLab;
let A = '';
let B = '';

function json<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  return JSON.parse(lines[lines.length - 1]!) as T;
}

async function status(): Promise<{ fleet: FleetView; record: FleetRecord | null }> {
  const result = await lab.deploy(['--json', 'status']);
  expect(result.code, result.stderr + result.stdout).toBe(0);
  return json(result.stdout);
}

/** Every host's live release through its own nginx. */
async function served(): Promise<(string | null)[]> {
  return (await lab.servedAll()).map((s) => s?.release ?? null);
}

/** The newest deployment of host i (its state database, read as an operator would). */
function newestDeployment(i: number) {
  return readState(lab.hosts[i]!.stack.home, lab.app).deployments[0] ?? null;
}

beforeAll(async () => {
  lab = await startFleetLab({
    keepalive: KEEPALIVE,
    rollout: { batch: 1, bake: '2s' },
    stack: { appConfig: { watch: { windowMs: WATCH_MS, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true } } },
  });
  // A partitioned host is given up on at connect after this long (status, reconcile).
  await lab.writeConfig((c) => { for (const h of c.environments[lab.env]!.hosts) h.connectTimeoutMs = 4_000; });
  // Two releases on every host, pushed host by host (single-host configs): B live, A warm in standby.
  const pushAll = async () => {
    const results = await Promise.all(lab.hosts.map((h) => lab.deployTo(h.index, ['push'])));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
  };
  await pushAll();
  A = lab.releaseOf(0, await lab.repo.head());
  await lab.repo.commit({ 'message.txt': 'second release\n' }, 'second release');
  await pushAll();
  B = lab.releaseOf(0, await lab.repo.head());
}, 300_000);

afterAll(async () => {
  await lab?.stop();
});

describe('fleet operations on three hosts', () => {
  it('status: one row per host; without a fleet record the majority is expected', async () => {
    expect(await served()).toEqual([B, B, B]);
    const { fleet, record } = await status();
    expect(record).toBeNull();
    expect(fleet).toMatchObject({ consistent: true, expected: B, expectedFrom: 'majority', drift: [] });
    expect(fleet.hosts.map((h) => [h.name, h.releaseId, h.health, h.lock])).toEqual([['h1', B, 'healthy', null], ['h2', B, 'healthy', null], ['h3', B, 'healthy', null]]);
    const human = await lab.deploy(['status']);
    expect(human.stdout).toMatch(/sample \[production\]: 3 host\(s\) on /);
  });

  it('rollback: every host to the release in its standby slot, one flip each, one rollout in history, the fleet record written', async () => {
    const before = lab.hosts.map((h) => readState(h.stack.home, lab.app).slots);
    const result = await lab.deploy(['rollback', '--reason', 'bad copy']);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await served()).toEqual([A, A, A]);
    for (const [i, h] of lab.hosts.entries()) {
      const d = newestDeployment(i)!;
      expect(d).toMatchObject({ kind: 'rollback', releaseId: A, outcome: 'succeeded', reason: null });
      // One flip: nothing was started, the warm slot's process is the one that ran before.
      const steps = readState(h.stack.home, lab.app).events(d.id).map((e) => e.step);
      expect(steps).not.toContain('starting');
      const slot = before[i]!.find((s) => s.releaseId === A)!;
      expect(readState(h.stack.home, lab.app).app!.liveSlot).toBe(slot.slot);
    }
    const rolloutIds = new Set(lab.hosts.map((_, i) => newestDeployment(i)!.rolloutId));
    expect(rolloutIds.size).toBe(1);
    const { fleet, record } = await status();
    expect(record).toMatchObject({ kind: 'rollback', releaseId: A, outcome: 'succeeded', hosts: ['h1', 'h2', 'h3'], reason: 'bad copy' });
    expect(fleet).toMatchObject({ consistent: true, expected: A, expectedFrom: 'record' });
    const history = json<{ history: FleetHistoryEntry[] }>((await lab.deploy(['--json', 'history', '-n', '5'])).stdout).history;
    expect(history[0]).toMatchObject({ rolloutId: [...rolloutIds][0], kind: 'rollback', releaseId: A, outcome: 'succeeded', missing: [] });
    expect(history[0]!.hosts.map((h) => h.name)).toEqual(['h1', 'h2', 'h3']);
  });

  it('--hosts: one host moved on purpose, recorded in history; status names the drift; the next fleet command reconciles it first', async () => {
    const limited = await lab.deploy(['rollback', '--hosts', 'h3', '--to', B, '--reason', 'canary']);
    expect(limited.code, limited.stderr + limited.stdout).toBe(0);
    expect(await served()).toEqual([A, A, B]);
    const history = json<{ history: FleetHistoryEntry[] }>((await lab.deploy(['--json', 'history', '-n', '5'])).stdout).history;
    expect(history[0]).toMatchObject({ kind: 'rollback', releaseId: B, missing: ['h1', 'h2'], note: '[--hosts h3] canary' });

    const { fleet, record } = await status();
    expect(record).toMatchObject({ releaseId: A, kind: 'rollback' });
    expect(fleet.consistent).toBe(false);
    expect(fleet.hosts.map((h) => h.drift)).toEqual([null, null, 'other_release']);
    expect(fleet.drift[0]).toMatch(/^h3: serves .* \(fleet record\)$/);

    const locks = await lab.deploy(['lock', 'status']);
    expect(locks.stdout.split('\n').filter((l) => /^h[123]\s+unlocked$/.test(l))).toHaveLength(3);
    const reconcile = await lab.deploy(['reconcile']);
    expect(reconcile.code, reconcile.stderr + reconcile.stdout).toBe(0);
    expect(reconcile.stderr).toMatch(/reconcile: reconciling h3 \(.* → .*, one flip\)/);
    expect(await served()).toEqual([A, A, A]);
    expect((await status()).fleet.consistent).toBe(true);
  });

  it('a partition of h2 during a fleet rollback: detected by keepalive, h1 and h3 reverted; after heal the next command reconciles h2', async () => {
    const before = newestDeployment(1)!.id;
    const running = lab.deployInBackground(['rollback', '--to', B]);
    // h2's rollback is running (its agent watches the new release): cut its link now.
    await waitFor(() => {
      const d = newestDeployment(1);
      return d && d.id > before && d.outcome === null && d.state === 'watching';
    }, { timeoutMs: 60_000, intervalMs: 100, description: 'h2 to be watching the fleet rollback' });
    await lab.partition(1);
    const partitionedAt = Date.now();
    const result = await withDeadline(running.done, 120_000, 'the fleet rollback to end');
    expect(result.code, result.stderr + result.stdout).toBe(EXIT.inDoubt);
    expect(result.stderr).toMatch(/fleet may be on two releases/);
    expect(result.stdout).toMatch(/h2\s+.*in_doubt/);
    expect(result.stdout).toMatch(/h1\s+.*succeeded.*reverted to/);
    // h1 and h3 back on A; h2 finished its own window on B, unseen.
    expect((await Promise.all([lab.served(0), lab.served(2)])).map((s) => s?.release)).toEqual([A, A]);
    const detectedMs = Date.now() - partitionedAt;

    const partitioned = await status();
    expect(partitioned.fleet.hosts[1]).toMatchObject({ name: 'h2', reachable: false, drift: 'unreachable' });
    expect(partitioned.record).toMatchObject({ releaseId: A, attemptedReleaseId: B, outcome: 'failed' });

    await lab.heal(1);
    await waitFor(async () => (await lab.served(1))?.release === B, { timeoutMs: 30_000, intervalMs: 200, description: 'h2 to answer again, on B' });
    const healed = await status();
    expect(healed.fleet.hosts[1]).toMatchObject({ reachable: true, releaseId: B, drift: 'other_release' });
    // Status only names it; reconcile (as every fleet rollback or switch does first) brings h2 back.
    const reconciled = await lab.deploy(['reconcile']);
    expect(reconciled.code, reconciled.stderr + reconciled.stdout).toBe(0);
    expect(reconciled.stderr).toMatch(/reconciling h2/);
    expect(await served()).toEqual([A, A, A]);
    console.log(`fleet-ops: partition of h2 mid-rollback: the command ended ${detectedMs} ms after the link went down (keepalive ${KEEPALIVE.intervalMs} ms × ${KEEPALIVE.countMax}, plus h1/h3 reverts)`);
  });

  it('the controller killed (-9) mid-push: h1 ends its batch on its own; status names the drift; the fleet lock it left refuses the next rollout, naming it, until it expires; then the next command reconciles', async () => {
    const sha = await lab.repo.commit({ 'message.txt': 'third release\n' }, 'third release');
    const before = newestDeployment(0)!.id;
    const running = lab.deployInBackground(['push']);
    await waitFor(() => (newestDeployment(0)?.id ?? 0) > before, { timeoutMs: 120_000, intervalMs: 100, description: 'h1 (primary, batch 1) to run the push' });
    process.kill(running.pid, 'SIGKILL');
    await running.done;
    // h1's agent ends its part on its own (its batch window passes); h2 and h3 were never started.
    await waitFor(() => newestDeployment(0)!.outcome !== null, { timeoutMs: 60_000, intervalMs: 200, description: 'h1 to end its part of the push' });
    const C = lab.releaseOf(0, sha);
    expect(await served()).toEqual([C, A, A]);

    const { fleet, record } = await status();
    expect(record).toMatchObject({ releaseId: A });
    expect(fleet).toMatchObject({ consistent: false, expected: A, expectedFrom: 'record' });
    expect(fleet.hosts.map((h) => h.drift)).toEqual(['other_release', null, null]);
    // Every host's lock is still reserved by the dead rollout (a fleet holds each host until it is done).
    for (const h of fleet.hosts) expect(h.lock).toMatch(/\(fleet:[0-9a-f-]+\)$/);

    const refused = await lab.deploy(['push']);
    expect(refused.code, refused.stderr + refused.stdout).toBe(EXIT.failedBeforeSwitch);
    expect(refused.stderr).toMatch(/the fleet is locked: h1: .*locked by \S+ .*for fleet:[0-9a-f-]+/);
    expect(await served()).toEqual([C, A, A]);

    // Time passes: each reservation reaches its expiry (15 min), fast-forwarded in each host's state
    // database as the clock would; the agents' own rule (expiresAt < now: stale) does the rest.
    for (const h of lab.hosts) {
      const db = openDatabase(path.join(h.stack.home, 'agent.db'));
      try {
        db.prepare('UPDATE locks SET expires_at = ? WHERE app = ? AND deployment_id IS NULL').run(new Date(Date.now() - 1_000).toISOString(), lab.app);
      } finally {
        db.close();
      }
    }
    const reconciled = await lab.deploy(['reconcile']);
    expect(reconciled.code, reconciled.stderr + reconciled.stdout).toBe(0);
    expect(reconciled.stderr).toMatch(/reconcile: reconciling h1 \(.* → .*, one flip\)/);
    expect(await served()).toEqual([A, A, A]);
    expect((await status()).fleet.consistent).toBe(true);
  });
});
