import { promises as fs } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleetLab, type FleetLab } from '../helpers/fleet-lab.js';
import { parseEnvFile } from '../../contract/env-file.js';

// deploy env on a fleet of 3 (the netns lab: each box its own sshd, agent and env file): a change
// goes to every host; with one host partitioned it is refused up front and written nowhere, unless
// --skip-unreachable, which writes it on the two others and names the one left out.

const SECRET = 'fleet secret with spaces 41c7';
let lab: FleetLab;

const envOf = async (i: number) => parseEnvFile(await fs.readFile(lab.hosts[i]!.stack.envFile, 'utf8'));

beforeAll(async () => {
  lab = await startFleetLab({ keepalive: { intervalMs: 1_000, countMax: 2 } });
  // A partitioned host is given up on at connect after this long.
  await lab.writeConfig((c) => { for (const h of c.environments[lab.env]!.hosts) h.connectTimeoutMs = 4_000; });
}, 300_000);
afterAll(async () => { await lab?.stop(); });

describe('deploy env on a fleet of 3', () => {
  it('sets on every host; with one partitioned refuses (nothing written) unless --skip-unreachable', async () => {
    const all = await lab.deploy(['env', 'set', 'FLEET_SECRET'], { env: { FLEET_SECRET: SECRET } });
    expect(all.code, all.stderr + all.stdout).toBe(0);
    expect(all.stdout.split('\n').filter((l) => /^h[123]: added FLEET_SECRET$/.test(l))).toHaveLength(3);
    for (const i of [0, 1, 2]) expect(await envOf(i)).toMatchObject({ ok: true, env: { FLEET_SECRET: SECRET } });

    await lab.partition(1);
    try {
      const before = await Promise.all([0, 1, 2].map((i) => fs.readFile(lab.hosts[i]!.stack.envFile)));
      const refused = await lab.deploy(['env', 'set', 'SECOND'], { env: { SECOND: 'second-value-9e0d' } });
      expect(refused.code, refused.stderr).toBe(5);
      expect(refused.stderr).toContain('could not be reached: h2');
      expect(refused.stderr).toContain('nothing was written on any host');
      for (const i of [0, 1, 2]) expect(await fs.readFile(lab.hosts[i]!.stack.envFile)).toEqual(before[i]);

      const skipped = await lab.deploy(['--json', 'env', 'set', '--skip-unreachable', 'SECOND'], { env: { SECOND: 'second-value-9e0d' } });
      expect(skipped.code, skipped.stderr).toBe(0);
      expect(JSON.parse(skipped.stdout.trim().split('\n').at(-1)!)).toMatchObject({ written: ['h1', 'h3'], skipped: ['h2'], failed: [] });
      for (const i of [0, 2]) expect(await envOf(i)).toMatchObject({ env: { FLEET_SECRET: SECRET, SECOND: 'second-value-9e0d' } });
      expect(await fs.readFile(lab.hosts[1]!.stack.envFile)).toEqual(before[1]);
      for (const out of [all, refused, skipped]) expect(out.stdout + out.stderr).not.toMatch(/41c7|9e0d/);
    } finally {
      await lab.heal(1);
    }
  });
});
