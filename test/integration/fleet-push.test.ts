import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleetLab, type FleetLab } from '../helpers/fleet-lab.js';
import { readState } from '../helpers/state.js';
import { EXIT } from '../../controller/errors.js';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import path from 'node:path';

/**
 * `deploy push` on a fleet (issue 15): three boxes, each in its own network namespace with its own
 * sshd, nginx, PM2 and agent (test/helpers/fleet-lab.ts), one environment naming them all. One lab
 * for the file; each case sets the rollout it needs and leaves the fleet on one release.
 */
let lab: FleetLab;

beforeAll(async () => {
  lab = await startFleetLab({ hosts: 3 });
}, 240_000);

afterAll(async () => {
  await lab?.stop();
});

const served = async () => (await lab.servedAll(5_000)).map((s) => s?.release ?? null);
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
