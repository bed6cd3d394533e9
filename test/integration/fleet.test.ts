import { appendFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleetLab, type FleetLab, type FleetConfig } from '../helpers/fleet-lab.js';
import { httpGet, startStack, type Stack } from '../helpers/stack.js';
import { readState } from '../helpers/state.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { EXIT } from '../../controller/errors.js';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import type { FleetView } from '../../controller/fleet/status-view.js';
import type { FleetHistoryEntry } from '../../controller/fleet/history-merge.js';
import type { FleetRecord } from '../../contract/api.js';
import { otherSlot } from '../../contract/names.js';

/**
 * The fleet of issue 15 on three real boxes, each in its own network namespace with its own sshd,
 * nginx, PM2 and agent (test/helpers/fleet-lab.ts), one environment naming them all. ONE lab for
 * every fleet case (starting three boxes is the costly part): first the fleet commands (status with
 * drift, history merged by rollout, rollback/switch one flip per host, --hosts, reconcile-first, a
 * partition and a controller killed mid-rollout), then `deploy push` (batches, idempotent rerun,
 * health and bake failures, a host failing after its batch, unreachable hosts), then `deploy promote`
 * with the fleet as production and one more box as staging (to the fleet, a failure reverting it
 * all, from the fleet as a source). The cases build on each other in order; each leaves the fleet
 * on one release unless it says otherwise.
 */

/** A partition is declared after about interval × (count + 1). */
const KEEPALIVE = { intervalMs: 1_000, countMax: 2 };
/** Long enough that a test can act while a host's rollout is watching; short enough for CI. */
const WATCH_MS = 3_000;

let lab: FleetLab;
/** One box beside the fleet (the host's own network): the staging environment of the promote cases. */
let staging: Stack;
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
const served = async () => (await lab.servedAll(5_000)).map((s) => s?.release ?? null);

/** The newest deployment of host i (its state database, read as an operator would). */
function newestDeployment(i: number) {
  return readState(lab.hosts[i]!.stack.home, lab.app).deployments[0] ?? null;
}

const rollout = (r: Record<string, unknown>) => lab.writeConfig((c) => { c.environments[lab.env]!.rollout = r; });
const fleetRecord = (i: number) => {
  const db = openDatabase(path.join(lab.hosts[i]!.stack.home, 'agent.db'));
  try {
    return new StateStore(db).fleetRecord(lab.app);
  } finally {
    db.close();
  }
};
const push = (args: string[] = []) => lab.deploy(['push', ...args], { timeoutMs: 240_000 });
const commit = (files: Record<string, string | null>, message: string) => lab.repo.commit(files, message);

beforeAll(async () => {
  // Started beside the lab (in parallel): only the promote cases use it.
  const stagingStarting = startStack({ appConfig: { watch: { windowMs: WATCH_MS, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true } } });
  stagingStarting.catch(() => undefined);
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
  staging = await stagingStarting;
}, 300_000);

afterAll(async () => {
  await Promise.all([lab?.stop(), staging?.stop()]);
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

  it('the controller killed (-9) mid-push: h1 ends its batch on its own; status names the drift; the fleet lock it left refuses the next rollout, naming it, until it expires; then the next push reconciles h1 first', async () => {
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
    // The next command is a push of a fourth release: it brings h1 back to the fleet's release first
    // (one flip), and only then rolls out, so a failure would revert the whole fleet to A.
    const sha4 = await lab.repo.commit({ 'message.txt': 'fourth release\n' }, 'fourth release');
    const pushed = await lab.deploy(['push'], { timeoutMs: 240_000 });
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const reconcileAt = pushed.stderr.search(/reconcile: reconciling h1 \(.* → .*, one flip\)/);
    expect(reconcileAt, pushed.stderr).toBeGreaterThanOrEqual(0);
    expect(reconcileAt).toBeLessThan(pushed.stderr.indexOf('batch 1/'));
    const reconcile = readState(lab.hosts[0]!.stack.home, lab.app).deployments[1]!;
    expect(reconcile).toMatchObject({ kind: 'rollback', releaseId: A, outcome: 'succeeded' });
    const D = lab.releaseOf(0, sha4);
    expect(await served()).toEqual([D, D, D]);
    expect((await status()).fleet.consistent).toBe(true);
  });
});

describe('deploy push to a fleet of 3', () => {
  it('batches of 1: the primary first, every host on the release, one rollout id, the fleet record on each host, the locks released', async () => {
    await rollout({ batch: 1, bake: '1s', primary: 'h2' });
    const sha = await commit({ 'message.txt': 'fleet one' }, 'fleet one');
    const result = await push();
    expect(result.code, result.stderr).toBe(EXIT.ok);
    const releases = lab.hosts.map((h) => lab.releaseOf(h.index, sha));
    expect(new Set(releases).size).toBe(1);
    expect(await served()).toEqual([releases[0], releases[0], releases[0]]);
    expect(result.stderr).toMatch(/batch 1 \[h2\], batch 2 \[h1\], batch 3 \[h3\]/);
    const deployments = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments[0]!);
    expect(deployments.map((d) => d.outcome)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(new Set(deployments.map((d) => d.rolloutId)).size).toBe(1);
    expect(deployments[0]!.rolloutId).toMatch(/^[0-9a-f-]{36}$/);
    for (const i of [0, 1, 2]) {
      expect(fleetRecord(i)).toMatchObject({ rolloutId: deployments[0]!.rolloutId, releaseId: releases[0], outcome: 'succeeded', hosts: ['h1', 'h2', 'h3'], skipped: [] });
      expect(readState(lab.hosts[i]!.stack.home, lab.app).lock).toBeUndefined();
    }
  });

  it('batches of 2; a rerun with one host already on the release leaves it alone (idempotent)', async () => {
    await rollout({ batch: 2, bake: '1s' });
    const sha = await commit({ 'message.txt': 'fleet two' }, 'fleet two');
    const first = await push();
    expect(first.code, first.stderr).toBe(EXIT.ok);
    expect(first.stderr).toMatch(/batch 1 \[h1, h2\], batch 2 \[h3\]/);
    const two = lab.releaseOf(0, sha);
    expect(await served()).toEqual([two, two, two]);

    // Host 1 alone gets the next commit (--hosts needs --force --reason), then the fleet push finds it there.
    const sha3 = await commit({ 'message.txt': 'fleet three' }, 'fleet three');
    const refused = await push(['--hosts', 'h1']);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toMatch(/--force --reason/);
    const single = await push(['--hosts', 'h1', '--force', '--reason', 'canary by hand']);
    expect(single.code, single.stderr).toBe(EXIT.ok);
    expect(fleetRecord(0)).toMatchObject({ hosts: ['h1'], skipped: ['h2', 'h3'], reason: 'canary by hand' });
    const before = readState(lab.hosts[0]!.stack.home, lab.app).deployments.length;
    const rerun = await push();
    expect(rerun.code, rerun.stderr).toBe(EXIT.ok);
    expect(rerun.stderr).toMatch(/already live on h1/);
    const three = lab.releaseOf(0, sha3);
    expect(await served()).toEqual([three, three, three]);
    expect(readState(lab.hosts[0]!.stack.home, lab.app).deployments.length).toBe(before);
    expect(fleetRecord(0)).toMatchObject({ releaseId: three, outcome: 'succeeded' });
  });

  it('a health failure on the third host reverts the first two (one flip each) and exits rolled back', async () => {
    await rollout({ batch: 2, bake: '1s' });
    const previous = (await served())[0]!;
    const envFile = lab.hosts[2]!.stack.envFile;
    const original = await readFile(envFile, 'utf8');
    await appendFile(envFile, 'SAMPLE_FAIL_HEALTH=1\n');
    try {
      await commit({ 'message.txt': 'fleet four' }, 'fleet four');
      const result = await push();
      expect(result.code, result.stderr).toBe(EXIT.rolledBack);
      expect(result.stderr).toMatch(/h1\s+reverted/);
      expect(result.stderr).toMatch(/h2\s+reverted/);
      expect(result.stderr).toMatch(/h3\s+failed/);
      expect(await served()).toEqual([previous, previous, previous]);
      // Each revert was one switch to the warm previous slot, recorded under the rollout's id.
      for (const i of [0, 1]) {
        const [revert, deploy] = readState(lab.hosts[i]!.stack.home, lab.app).deployments;
        expect(revert).toMatchObject({ kind: 'switch', outcome: 'succeeded', releaseId: previous, rolloutId: deploy!.rolloutId });
      }
      expect(fleetRecord(1)).toMatchObject({ releaseId: previous, outcome: 'rolled_back', hosts: ['h1', 'h2', 'h3'] });
    } finally {
      await writeFile(envFile, original, { mode: 0o600 });
    }
  });

  it('a check failing during the bake of batch 1 stops the rollout before batch 2', async () => {
    await rollout({ batch: 1, bake: '20s' });
    const previous = (await served())[0]!;
    const before = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments.length);
    // Healthy at the gate, unhealthy 3 s after start: the bake's health check catches it.
    await commit({ 'message.txt': 'fleet five', FAIL_HEALTH_AFTER_MS: '3000' }, 'fleet five');
    const result = await push();
    expect(result.code, result.stderr).toBe(EXIT.rolledBack);
    expect(result.stderr).toMatch(/h1\s+swapped_back/);
    expect(result.stderr).toMatch(/h2\s+not_started/);
    expect(result.stderr).toMatch(/h3\s+not_started/);
    expect(await served()).toEqual([previous, previous, previous]);
    const after = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments.length);
    expect(after).toEqual([before[0]! + 1, before[1], before[2]]);
    await commit({ FAIL_HEALTH_AFTER_MS: null }, 'healthy again');
  });

  it('a host of batch 1 failing during the final window (after its own bake passed) stops the rollout and reverts the whole fleet', async () => {
    await rollout({ batch: 2, bake: '1s', window: '60s' });
    const previous = (await served())[0]!;
    const before = newestDeployment(2)!.id;
    await commit({ 'message.txt': 'fleet six' }, 'fleet six');
    const running = lab.deployInBackground(['push']);
    // Batch 1 (h1, h2) passed its bake; h3, the last batch, is in its full window: h1's process dies now.
    await waitFor(() => {
      const d = newestDeployment(2);
      return d && d.id > before && d.outcome === null && d.state === 'watching';
    }, { timeoutMs: 120_000, intervalMs: 100, description: 'h3 (the last batch) to be in its full window' });
    expect(newestDeployment(0)).toMatchObject({ outcome: 'succeeded' });
    const pid = lab.liveSlotPid(0);
    expect(pid).not.toBeNull();
    process.kill(pid!, 'SIGKILL');
    const result = await withDeadline(running.done, 120_000, 'the push to end');
    expect(result.code, result.stderr).toBe(EXIT.rolledBack);
    expect(result.stderr).toMatch(/\[h1\] failed after its batch: .*restarted/);
    expect(result.stderr).toMatch(/h1\s+reverted\s+failed after its batch: .*; reverted to/);
    expect(result.stderr).toMatch(/h2\s+reverted/);
    expect(result.stderr).toMatch(/h3\s+swapped_back/);
    expect(await served()).toEqual([previous, previous, previous]);
    expect(fleetRecord(2)).toMatchObject({ releaseId: previous, outcome: 'rolled_back' });
  });

  it('a host unreachable before any switch refuses the push (nothing changed); --skip-unreachable goes on and records it', async () => {
    await lab.writeConfig((c) => {
      c.environments[lab.env]!.rollout = { batch: '100%', bake: '1s' };
      c.environments[lab.env]!.hosts[2]!.connectTimeoutMs = 1000;
    });
    const previous = (await served())[0]!;
    const before = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments.length);
    await lab.partition(2);
    try {
      const refused = await push();
      expect(refused.code, refused.stderr).toBe(EXIT.unreachable);
      expect(refused.stderr).toMatch(/push refused, nothing changed: 1 host\(s\) could not be reached: h3/);
      expect(lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments.length)).toEqual(before);
      expect((await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release)).toEqual([previous, previous]);

      const skipped = await push(['--skip-unreachable']);
      expect(skipped.code, skipped.stderr).toBe(EXIT.ok);
      expect(skipped.stderr).toMatch(/skipping unreachable h3/);
      const next = fleetRecord(0)!;
      expect(next).toMatchObject({ outcome: 'succeeded', hosts: ['h1', 'h2'], skipped: ['h3'] });
      expect((await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release)).toEqual([next.releaseId, next.releaseId]);
    } finally {
      await lab.heal(2);
    }
    expect((await lab.served(2, 5_000))?.release).toBe(previous);
  });
});

describe('the upload-once relay', () => {
  /** The controller's 32-byte random values (the relay keys among them), recorded by a preload: the test can then look for them. */
  const spy = async () => {
    const file = path.join(lab.dir, `random-${Date.now()}.log`);
    const preload = path.join(lab.dir, 'random-spy.cjs');
    await writeFile(preload, `const c = require('node:crypto'); const fs = require('node:fs'); const orig = c.randomBytes;
      c.randomBytes = function (n, ...rest) { const b = orig.call(c, n, ...rest); if (n === 32 && Buffer.isBuffer(b)) fs.appendFileSync(process.env.RANDOM_SPY_FILE, b.toString('hex') + '\\n'); return b; };
      require('node:module').syncBuiltinESMExports();`);
    return { env: { NODE_OPTIONS: `--require ${preload}`, RANDOM_SPY_FILE: file }, keys: async () => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean) };
  };
  /** Each host's last --json line saying how it got the release, in host order. */
  const uploads = (stdout: string) => {
    const last = new Map<string, { host: string; upload: string; from?: string; uploadedBytes: number }>();
    for (const line of stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)) {
      if (typeof line.host !== 'string' || typeof line.upload !== 'string' || line.upload === 'fallback') continue;
      last.set(line.host, { host: line.host, upload: line.upload, ...(typeof line.from === 'string' ? { from: line.from } : {}), uploadedBytes: line.uploadedBytes as number });
    }
    return [...last.values()].sort((a, b) => a.host.localeCompare(b.host));
  };
  /** A file of random bytes (base64, so it does not compress much): the release the relay carries. */
  const bigFile = (bytes: number) => randomBytes(bytes).toString('base64');
  const setRelay = (address: (i: number) => string | null) => lab.writeConfig((c) => {
    c.environments[lab.env]!.rollout = { batch: '100%', bake: '1s', primary: 'h1' };
    c.environments[lab.env]!.hosts.forEach((h, i) => {
      const a = address(i);
      if (a === null) delete h.relay;
      else h.relay = a;
    });
  });

  afterAll(async () => {
    await setRelay(() => null);
  });

  it('a push sends the bytes once (to the primary), the other two fetch them from it; every host serves the release; the key is never printed', async () => {
    await setRelay((i) => lab.hosts[i]!.address);
    const sha = await commit({ 'relay.bin': bigFile(1_500_000) }, 'relayed release');
    const { env, keys } = await spy();
    const sentBefore = await lab.lan.uplinkTxBytes();
    const result = await lab.deploy(['--json', 'push'], { env, timeoutMs: 240_000 });
    const sent = (await lab.lan.uplinkTxBytes()) - sentBefore;
    expect(result.code, result.stderr + result.stdout).toBe(EXIT.ok);
    const [h1, ...peers] = uploads(result.stdout);
    expect(h1).toMatchObject({ host: 'h1', upload: expect.stringMatching(/^(delta|full)$/) });
    expect(peers).toEqual([{ host: 'h2', upload: 'relay', from: 'h1', uploadedBytes: 0 }, { host: 'h3', upload: 'relay', from: 'h1', uploadedBytes: 0 }]);
    expect(result.stdout).toMatch(/\[h2\] fetched from h1 over the relay: [0-9.]+ MB verified in/);
    // The uplink carried one copy (and the SSH sessions' chatter), not three.
    expect(h1!.uploadedBytes).toBeGreaterThan(1_000_000);
    expect(sent).toBeLessThan(2 * h1!.uploadedBytes);
    const release = lab.releaseOf(0, sha);
    expect(lab.hosts.map((h) => lab.releaseOf(h.index, sha))).toEqual([release, release, release]);
    expect(await served()).toEqual([release, release, release]);
    // The session is over: nothing listens on h1's relay port, and the kept bundle is gone.
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(7391, lab.hosts[0]!.address);
      socket.once('connect', () => { socket.destroy(); resolve('connected'); });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(await readdir(path.join(lab.hosts[0]!.stack.home, 'relay'))).toEqual([]);
    const made = await keys();
    expect(made.length).toBeGreaterThan(0);
    const logs = lab.hosts.map((h) => h.stack.agent.log()).join('\n');
    for (const key of made) {
      expect(result.stdout + result.stderr).not.toContain(key);
      expect(logs).not.toContain(key);
    }
  });

  it('a relay that cannot work falls back to direct uploads, one line why, and the push succeeds: peers that cannot reach the address; a port squatter on the uploader', async () => {
    // 127.0.0.1 is h1's own (the agent listens there), but from h2 and h3 it is their own loopback: nothing listens.
    await setRelay((i) => (i === 0 ? '127.0.0.1' : lab.hosts[i]!.address));
    const sha = await commit({ 'relay.bin': bigFile(300_000) }, 'relay unreachable');
    const unreachable = await lab.deploy(['push'], { timeoutMs: 240_000 });
    expect(unreachable.code, unreachable.stderr).toBe(EXIT.ok);
    expect(unreachable.stderr).toMatch(/\[h2\] the relay fetch from h1 failed \(relay_unreachable: .*\): uploading directly/);
    expect(unreachable.stderr).toMatch(/\[h3\] the relay fetch from h1 failed \(relay_unreachable: .*\): uploading directly/);
    expect(unreachable.stderr).not.toMatch(/over the relay/);
    const first = lab.releaseOf(0, sha);
    expect(await served()).toEqual([first, first, first]);

    // Something else holds h1's relay port: the session cannot open, both peers get direct uploads.
    await setRelay((i) => lab.hosts[i]!.address);
    const h1 = lab.hosts[0]!;
    const squat = `require('net').createServer(() => undefined).listen(7391, ${JSON.stringify(h1.address)}, () => console.log('up'))`;
    const [cmd, ...args] = h1.netns.wrap([process.execPath, '-e', squat]);
    const squatter = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let said = '';
    squatter.stdout.on('data', (d: Buffer) => { said += d.toString(); });
    try {
      await waitFor(() => said.includes('up') || null, { timeoutMs: 10_000, description: 'the squatter listening on h1\'s relay port' });
      const sha2 = await commit({ 'relay.bin': bigFile(300_000) }, 'relay port busy');
      const busy = await lab.deploy(['push'], { timeoutMs: 240_000 });
      expect(busy.code, busy.stderr).toBe(EXIT.ok);
      expect(busy.stderr).toMatch(/\[h2\] h1 could not open the relay on [0-9.]+:7391: .*: uploading directly/);
      expect(busy.stderr).toMatch(/\[h3\] h1 could not open the relay/);
      const second = lab.releaseOf(0, sha2);
      expect(await served()).toEqual([second, second, second]);
    } finally {
      squatter.kill('SIGKILL');
    }
  });

  it('a delta the uploader refuses mid-way (a base file corrupted on h1) is followed by the full upload; the peers fetching the pipelined delta end on the release too, and the push succeeds', async () => {
    await setRelay((i) => lab.hosts[i]!.address);
    const h1 = lab.hosts[0]!;
    const releases = path.join(h1.stack.home, 'releases', lab.app);
    const live = (await served())[0]!;
    // Every release on h1 holding this content (they share the inode): h1's only copy goes bad, the peers' stay good.
    const good = await readFile(path.join(releases, live, 'package.json'));
    const bad = Buffer.from(good);
    bad[20] = bad[20] === 0x79 ? 0x7a : 0x79;
    const victims: string[] = [];
    for (const id of await readdir(releases)) {
      const file = path.join(releases, id, 'package.json');
      if ((await readFile(file).catch(() => null))?.equals(good)) victims.push(file);
    }
    expect(victims.length).toBeGreaterThan(0);
    for (const file of victims) await writeFile(file, bad);
    try {
      const sha = await commit({ 'message.txt': 'delta refused on the uploader\n' }, 'delta refused on the uploader');
      const keptOnH1 = () => readdir(path.join(h1.stack.home, 'relay')).catch(() => [] as string[]);
      const keptBefore = await keptOnH1();
      const result = await lab.deploy(['--json', 'push'], { timeoutMs: 240_000 });
      const output = result.stderr + result.stdout;
      expect(result.code, output).toBe(EXIT.ok);
      const lines = result.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      // h1 was sent the delta first (the session serves it), refused it, then got the whole release.
      expect(lines.find((l) => l.host === 'h1' && l.upload === 'fallback' && l.reason === 'delta_base_mismatch'), output).toBeTruthy();
      const [first, ...peers] = uploads(result.stdout);
      expect(first, output).toMatchObject({ host: 'h1', upload: 'full' });
      // The peers have good bases: each either assembled the relayed delta itself, or (its fetch cut when h1's
      // ingest ended) got a direct upload with one line why. Either way it is on the release, verified.
      for (const peer of peers) {
        if (peer.upload === 'relay') expect(peer, output).toMatchObject({ from: 'h1', uploadedBytes: 0 });
        else expect(output).toMatch(new RegExp(`\\[${peer.host}\\] the relay fetch from h1 failed \\(relay_[a-z_]+: .*\\): uploading directly`));
      }
      expect(peers.map((p) => p.host)).toEqual(['h2', 'h3']);
      const release = lab.releaseOf(0, sha);
      expect(lab.hosts.map((h) => lab.releaseOf(h.index, sha))).toEqual([release, release, release]);
      expect(await served()).toEqual([release, release, release]);
      expect(await readFile(path.join(releases, release, 'package.json'))).toEqual(good);
      // The full upload after the refused delta is not kept for the relay (no session would serve it).
      expect((await keptOnH1()).filter((f) => !keptBefore.includes(f)), 'nothing kept on h1 by this push').toEqual([]);
    } finally {
      for (const file of victims) await writeFile(file, good);
    }
  });
});

describe('deploy promote with the fleet as production', () => {
  /** What staging's nginx serves. */
  const stagingServes = async () => {
    const answer = await httpGet(`${staging.publicUrl}/`, { timeoutMs: 5_000 });
    return answer.status === 200 ? (JSON.parse(answer.body) as { release?: string }).release ?? null : null;
  };
  const promotionsOn = (i: number) => {
    const db = openDatabase(path.join(lab.hosts[i]!.stack.home, 'agent.db'));
    try {
      return new StateStore(db).promotions(lab.app);
    } finally {
      db.close();
    }
  };
  const promote = (args: string[]) => lab.deploy(['promote', ...args], { timeoutMs: 240_000 });
  let S = '';

  beforeAll(async () => {
    await lab.writeConfig((c) => {
      promotionFromStaging(c);
    });
  });

  it('promote to the fleet: the release staging verified reaches every host (same sha256), gate and approval once, every host\'s deployment records the promotion', async () => {
    const sha = await commit({ 'message.txt': 'promoted to the fleet\n' }, 'promoted to the fleet');
    const pushed = await lab.deploy(['--env', 'staging', 'push'], { timeoutMs: 120_000 });
    expect(pushed.code, pushed.stderr).toBe(EXIT.ok);
    S = releaseOfCommitOn(staging, sha);
    expect(await stagingServes()).toBe(S);

    const refused = await promote(['--to', 'production']);
    expect(refused.code, refused.stderr).toBe(EXIT.usage);
    expect(refused.stderr).toContain('--yes');

    const started = Date.now();
    const result = await promote(['--to', 'production', '--yes']);
    const promoteMs = Date.now() - started;
    expect(result.code, result.stderr + result.stdout).toBe(EXIT.ok);
    const said = result.stderr + result.stdout;
    console.log(`[figures] promote staging → 3-host production: ${promoteMs} ms (batch 2, bake 1 s, window ${WATCH_MS} ms)`);
    expect(said.match(/gate of staging:/g)).toHaveLength(1);
    expect(said.match(/production requires approval/g)).toHaveLength(1);
    expect(said).toMatch(/batch 1 \[h1, h2\], batch 2 \[h3\]/);
    expect(await served()).toEqual([S, S, S]);

    const stagedSha256 = readState(staging.home, lab.app).releases.find((r) => r.releaseId === S)!.sha256;
    const deployments = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments[0]!);
    for (const [i, h] of lab.hosts.entries()) {
      expect(readState(h.stack.home, lab.app).releases.find((r) => r.releaseId === S)!.sha256).toBe(stagedSha256);
      expect(deployments[i]).toMatchObject({ kind: 'deploy', releaseId: S, outcome: 'succeeded', env: 'production', promotion: { from: 'staging', forced: false, reason: null } });
      expect(fleetRecord(i)).toMatchObject({ kind: 'promote', releaseId: S, outcome: 'succeeded', hosts: ['h1', 'h2', 'h3'] });
    }
    expect(new Set(deployments.map((d) => d.rolloutId)).size).toBe(1);
    // The promotion is recorded (and notified) once, on the primary; the other hosts' deployments carry it.
    expect(promotionsOn(0)).toMatchObject([{ side: 'target', event: 'promoted', releaseId: S, fromEnv: 'staging', toEnv: 'production' }]);
    expect([promotionsOn(1), promotionsOn(2)]).toEqual([[], []]);

    const history = json<{ history: FleetHistoryEntry[] }>((await lab.deploy(['--json', 'history', '-n', '3'])).stdout).history;
    expect(history[0]).toMatchObject({ rolloutId: deployments[0]!.rolloutId, releaseId: S, outcome: 'succeeded', missing: [], promotion: { from: 'staging', forced: false } });
    expect((await lab.deploy(['history', '-n', '1'])).stdout).toMatch(/promoted from staging \(/);
    expect((await status()).fleet).toMatchObject({ consistent: true, expected: S });

    const again = await promote(['--to', 'production', '--yes']);
    expect(again.code, again.stderr).toBe(EXIT.ok);
    expect(again.stderr + again.stdout).toContain('already live on every host of production');
  });

  it('a promotion whose rollout fails on one host reverts every host, and the fleet record says so', async () => {
    const envFile = lab.hosts[2]!.stack.envFile;
    const original = await readFile(envFile, 'utf8');
    await appendFile(envFile, 'SAMPLE_FAIL_HEALTH=1\n');
    try {
      const sha = await commit({ 'message.txt': 'fails on h3\n' }, 'fails on h3');
      expect((await lab.deploy(['--env', 'staging', 'push'], { timeoutMs: 120_000 })).code).toBe(EXIT.ok);
      const T = releaseOfCommitOn(staging, sha);
      const result = await promote(['--to', 'production', '--yes']);
      expect(result.code, result.stderr).toBe(EXIT.rolledBack);
      expect(result.stderr).toMatch(/h1\s+reverted/);
      expect(result.stderr).toMatch(/h2\s+reverted/);
      expect(result.stderr).toMatch(/h3\s+failed/);
      expect(await served()).toEqual([S, S, S]);
      expect(fleetRecord(0)).toMatchObject({ kind: 'promote', releaseId: S, attemptedReleaseId: T, outcome: 'rolled_back' });
      expect(readState(lab.hosts[0]!.stack.home, lab.app).deployments[1]).toMatchObject({ releaseId: T, promotion: { from: 'staging' } });
    } finally {
      await writeFile(envFile, original, { mode: 0o600 });
    }
  });

  it('from the fleet as a source: refused while its hosts serve two releases (naming them); after reconcile, its release goes to staging', async () => {
    // h1 to its warm standby (the release the failed promotion left there): drift on purpose.
    const live = readState(lab.hosts[0]!.stack.home, lab.app).app!.liveSlot!;
    const drift = await lab.deploy(['switch', otherSlot(live), '--hosts', 'h1', '--reason', 'drift on purpose']);
    expect(drift.code, drift.stderr).toBe(EXIT.ok);
    const h1 = (await lab.served(0))?.release;
    expect(h1).not.toBe(S);

    const refused = await promote(['--from', 'production', '--to', 'staging']);
    expect(refused.code, refused.stderr).toBe(EXIT.failedBeforeSwitch);
    expect(refused.stderr).toContain(`production is not on one release, so it cannot vouch for one: h1: serves ${h1} (its fleet record: ${S})`);
    expect(refused.stderr).toContain('deploy reconcile --env production');

    expect((await lab.deploy(['reconcile'])).code).toBe(EXIT.ok);
    expect(await served()).toEqual([S, S, S]);
    const promoted = await promote(['--from', 'production', '--to', 'staging']);
    expect(promoted.code, promoted.stderr + promoted.stdout).toBe(EXIT.ok);
    expect(promoted.stderr + promoted.stdout).toMatch(/gate of production: .*passed on every host \(h1, h2, h3\)/);
    expect(await stagingServes()).toBe(S);
    expect(readState(staging.home, lab.app).deployments[0]).toMatchObject({ releaseId: S, env: 'staging', promotion: { from: 'production', forced: false } });
    expect(readState(staging.home, lab.app).deployments[0]!.promotion!.sourceHost).toMatch(/\(production: h1, h2, h3\)$/);

    // Staging rolls back from S (marking it): its gate now refuses S for production, recorded (and
    // notified) once, on the fleet's primary; the fleet's history lists the refusal.
    expect((await lab.deploy(['--env', 'staging', 'rollback', '--reason', 'bad after all'])).code).toBe(EXIT.ok);
    const gateRefused = await promote([S, '--to', 'production', '--yes']);
    expect(gateRefused.code, gateRefused.stderr).toBe(EXIT.failedBeforeSwitch);
    expect(gateRefused.stderr).toMatch(/promotion of \S+ to production refused: .*rolled back/);
    expect(promotionsOn(0)[0]).toMatchObject({ side: 'target', event: 'refused', releaseId: S });
    expect([promotionsOn(1), promotionsOn(2)]).toEqual([[], []]);
    expect((await lab.deploy(['history', '-n', '3'])).stdout).toMatch(/promotions:\n {2}promotion of \S+ from staging \(.*\) refused/);
    expect(await served()).toEqual([S, S, S]);
  });
});

/**
 * `deploy promote --skip-unreachable` to the fleet (the same semantics as `deploy push
 * --skip-unreachable`): on its own staging setup (so it also runs alone, `-t 'skip-unreachable'`).
 */
describe('deploy promote to the fleet with a host unreachable', () => {
  beforeAll(async () => {
    await lab.writeConfig((c) => {
      promotionFromStaging(c);
      c.environments[lab.env]!.hosts[2]!.connectTimeoutMs = 1000;
    });
  });

  it('refused without --skip-unreachable (nothing changed); with it the reachable hosts get the release and h3 is named skipped (rollback too); after heal the next promote brings h3', async () => {
    const sha = await commit({ 'message.txt': 'promoted past a partition\n' }, 'promoted past a partition');
    expect((await lab.deploy(['--env', 'staging', 'push'], { timeoutMs: 120_000 })).code).toBe(EXIT.ok);
    const P = releaseOfCommitOn(staging, sha);
    const promote = (args: string[] = []) => lab.deploy(['promote', '--to', 'production', '--yes', ...args], { timeoutMs: 240_000 });
    const previous = (await served())[2]!;
    const records = () => lab.hosts.map((_, i) => fleetRecord(i));
    const deploymentsEach = () => lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments.length);

    await lab.partition(2);
    try {
      const [recordsBefore, deploymentsBefore] = [records(), deploymentsEach()];
      const refused = await promote();
      expect(refused.code, refused.stderr).toBe(EXIT.unreachable);
      expect(refused.stderr).toMatch(/promotion to production refused, nothing changed: 1 host\(s\) could not be reached: h3/);
      expect(refused.stderr).toContain('--skip-unreachable');
      expect([records(), deploymentsEach()]).toEqual([recordsBefore, deploymentsBefore]);

      const skipped = await promote(['--skip-unreachable']);
      expect(skipped.code, skipped.stderr + skipped.stdout).toBe(EXIT.ok);
      expect(skipped.stderr).toMatch(/skipping unreachable h3: .*\(recorded as drift\)/);
      expect(skipped.stderr).toMatch(/h3\s+skipped\s+left out of this rollout/);
      expect(skipped.stderr).toMatch(/is live on 2 host\(s\) in .*; not on h3/);
      expect((await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release)).toEqual([P, P]);
      for (const i of [0, 1]) expect(fleetRecord(i)).toMatchObject({ kind: 'promote', releaseId: P, outcome: 'succeeded', hosts: ['h1', 'h2'], skipped: ['h3'] });
      const history = json<{ history: FleetHistoryEntry[]; unreachable: string[] }>((await lab.deploy(['--json', 'history', '-n', '1'])).stdout);
      expect(history.history[0]).toMatchObject({ releaseId: P, outcome: 'succeeded', missing: ['h3'], promotion: { from: 'staging' } });
      expect(history.unreachable).toEqual(['h3']);

      // rollback (and switch) take the flag too: refused without it, nothing changed; with it h1 and h2
      // go back and forth (one flip each), h3 skipped in each fleet record.
      const beforeRollback = deploymentsEach();
      const rollbackRefused = await lab.deploy(['rollback']);
      expect(rollbackRefused.code, rollbackRefused.stderr).toBe(EXIT.unreachable);
      expect(rollbackRefused.stderr).toMatch(/rollback refused, nothing changed: 1 host\(s\) could not be reached: h3/);
      expect(deploymentsEach()).toEqual(beforeRollback);
      const back = await lab.deploy(['rollback', '--skip-unreachable']);
      expect(back.code, back.stderr + back.stdout).toBe(EXIT.ok);
      expect(back.stdout).toMatch(/h3\s+skipped: unreachable/);
      expect(fleetRecord(0)).toMatchObject({ kind: 'rollback', outcome: 'succeeded', hosts: ['h1', 'h2'], skipped: ['h3'] });
      expect(fleetRecord(0)!.releaseId).not.toBe(P);
      const forth = await lab.deploy(['rollback', '--skip-unreachable']);
      expect(forth.code, forth.stderr + forth.stdout).toBe(EXIT.ok);
      expect(fleetRecord(1)).toMatchObject({ kind: 'rollback', releaseId: P, hosts: ['h1', 'h2'], skipped: ['h3'] });
      expect((await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release)).toEqual([P, P]);
      // switch: the same; h1 and h2 to their standby slot (the release P replaced) and back, h3 skipped each time.
      const live = readState(lab.hosts[0]!.stack.home, lab.app).app!.liveSlot!;
      const beforeSwitch = [records(), deploymentsEach()];
      const switchRefused = await lab.deploy(['switch', otherSlot(live)]);
      expect(switchRefused.code, switchRefused.stderr).toBe(EXIT.unreachable);
      expect(switchRefused.stderr).toMatch(/switch refused, nothing changed: 1 host\(s\) could not be reached: h3/);
      expect(switchRefused.stderr).toContain('--skip-unreachable');
      expect([records(), deploymentsEach()]).toEqual(beforeSwitch);
      const switched = await lab.deploy(['switch', otherSlot(live), '--skip-unreachable']);
      expect(switched.code, switched.stderr + switched.stdout).toBe(EXIT.ok);
      expect(switched.stderr).toMatch(/skipping unreachable h3: .*\(recorded as drift\)/);
      expect(switched.stdout).toMatch(/h3\s+skipped: unreachable/);
      const standby = (await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release);
      expect(standby[0]).not.toBe(P);
      expect(standby[1]).toBe(standby[0]);
      for (const i of [0, 1]) expect(fleetRecord(i)).toMatchObject({ kind: 'switch', releaseId: standby[0], outcome: 'succeeded', hosts: ['h1', 'h2'], skipped: ['h3'] });
      const switchedBack = await lab.deploy(['switch', live, '--skip-unreachable']);
      expect(switchedBack.code, switchedBack.stderr + switchedBack.stdout).toBe(EXIT.ok);
      expect(fleetRecord(0)).toMatchObject({ kind: 'switch', releaseId: P, outcome: 'succeeded', hosts: ['h1', 'h2'], skipped: ['h3'] });
      expect((await lab.servedAll(5_000)).slice(0, 2).map((s) => s?.release)).toEqual([P, P]);
      // The read commands report h3 rather than fail; lock release says h3 may keep its lock (exit 5).
      const locks = await lab.deploy(['lock', 'release']);
      expect(locks.code, locks.stderr).toBe(EXIT.unreachable);
      expect(locks.stdout).toMatch(/h1\s+there was no lock\nh2\s+there was no lock\nh3\s+not released: unreachable/);
    } finally {
      await lab.heal(2);
    }
    // Healed, h3 still serves what it did: status names the drift against the fleet's release.
    expect((await lab.served(2, 5_000))?.release).toBe(previous);
    const drifted = (await status()).fleet;
    expect(drifted).toMatchObject({ expected: P, consistent: false });
    expect(drifted.hosts[2]).toMatchObject({ name: 'h3', releaseId: previous, drift: 'other_release' });
    // Reconcile does not drag h3 to a release it does not have (a flip cannot bring it): it names it.
    const reconciled = await lab.deploy(['reconcile']);
    expect(reconciled.code, reconciled.stderr).toBe(EXIT.ok);
    expect(reconciled.stdout).toMatch(/left out of the rollout that brought it, not moved: h3 \(deploy push or deploy promote brings them\)/);
    expect((await lab.served(2, 5_000))?.release).toBe(previous);

    const again = await promote();
    expect(again.code, again.stderr + again.stdout).toBe(EXIT.ok);
    expect(again.stderr).toMatch(/already live on h1, h2/);
    expect(await served()).toEqual([P, P, P]);
    expect(fleetRecord(2)).toMatchObject({ kind: 'promote', releaseId: P, hosts: ['h1', 'h2', 'h3'], skipped: [] });
  });
});

function releaseOfCommitOn(stack: Stack, sha: string): string {
  return readState(stack.home, lab.app).releases.filter((r) => r.manifest.sha === sha).map((r) => r.releaseId)[0]!;
}

/** Production promoted from a one-box staging (batch 2, 1 s bake, approval asked): the promote cases' config. */
function promotionFromStaging(c: FleetConfig): void {
  const production = c.environments[lab.env]!;
  production.rollout = { batch: 2, bake: '1s' };
  production.requireApproval = true;
  production.promotion = { from: 'staging', maxAge: '1d' };
  c.environments.staging = {
    hosts: [{ address: staging.sshd.host, port: staging.sshd.port, user: staging.sshd.user, identityFile: staging.sshd.clientKeyPath, knownHostsFile: staging.sshd.knownHostsPath }],
    agent: { port: staging.agentPort, tokenFile: path.join(staging.dir, 'agent.token') },
  };
}
