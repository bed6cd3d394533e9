// Section 9 (issue 15): a fleet of three hosts, each in its own network namespace (test/helpers/
// fleet-lab.ts), against one host set up the same way: push → new release served on every host,
// and the push of a big release (its upload dominates). Both labs run at once on this machine, so
// the three hosts share its cores and the controller's "uplink" (the veths) as a real fleet would
// share a laptop's.
import path from 'node:path';
import { startFleetLab, type FleetLab } from '../../test/helpers/fleet-lab.js';
import { makeFigure } from './report.js';
import type { RealAppsContext } from './real-apps.js';
import { writeRandomFile } from './release-data.js';

/** No watch window: the push ends at the switch, as the rows measure "served", not "settled". */
const WATCH = { windowMs: 0, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true };

/** ms from the CLI's start until every host of the lab serves the release of the commit just made. */
async function pushUntilServed(lab: FleetLab, round: string): Promise<{ servedMs: number; totalMs: number }> {
  const sha = await lab.repo.commit({ 'message.txt': `bench ${round}\n` }, `bench: ${round}`);
  const started = Date.now();
  const running = lab.deploy(['--json', 'push'], { timeoutMs: 600_000 });
  let servedMs = -1;
  let done = false;
  void running.then(() => { done = true; });
  // Polled through each host's nginx while the push runs: the time the last host turned over.
  while (!done || servedMs < 0) {
    const served = await lab.servedAll(2_000);
    const ids = lab.hosts.map((_, i) => { try { return lab.releaseOf(i, sha); } catch { return null; } });
    if (servedMs < 0 && ids.every((id, i) => id !== null && served[i]?.release === id)) servedMs = Date.now() - started;
    if (done && servedMs < 0) break;
  }
  const result = await running;
  if (result.code !== 0) throw new Error(`push (${round}) exited ${result.code}: ${result.stderr.slice(-500)}`);
  if (servedMs < 0) throw new Error(`push (${round}) ended but not every host serves the new release`);
  return { servedMs, totalMs: Date.now() - started };
}

export async function benchFleet(ctx: RealAppsContext): Promise<void> {
  const reps = Math.max(2, ctx.plan.rolloutReps);
  ctx.log('fleet: three hosts and one, each in a network namespace');
  const [fleet, single] = await Promise.all([
    startFleetLab({ hosts: 3, rollout: { batch: '100%', bake: '0s' }, stack: { appConfig: { watch: WATCH } } }),
    startFleetLab({ hosts: 1, stack: { appConfig: { watch: WATCH } } }),
  ]);
  ctx.onCleanup(() => fleet.stop());
  ctx.onCleanup(() => single.stop());
  // Warm-up: both slots of every host hold a release.
  for (const lab of [fleet, single]) for (const round of ['warm-1', 'warm-2']) await pushUntilServed(lab, round);

  const fleetMs: number[] = [];
  const singleMs: number[] = [];
  for (let i = 0; i < reps; i++) {
    fleetMs.push((await pushUntilServed(fleet, `small-${i}`)).servedMs);
    singleMs.push((await pushUntilServed(single, `small-${i}`)).servedMs);
  }
  ctx.figures.push(makeFigure({
    id: 'fleet.push', section: '9. Fleet', title: 'push → new release served on all 3 hosts (batch = all), vs the same push to 1 host (ms)', unit: 'ms',
    slipway: { label: '3 hosts', samples: fleetMs }, baseline: { label: '1 host', samples: singleMs }, goal: { kind: 'ratioAtMost', value: 1.3 },
    notes: ['sample app; each host in its own network namespace on this machine; watch window 0 (the figure stops when the last host serves the release)'],
  }));

  const bigMB = ctx.plan.uploadBigMB;
  const big = async (lab: FleetLab, round: string) => {
    await writeRandomFile(path.join(lab.repo.dir, 'big.bin'), bigMB * 1024 * 1024, `fleet-${round}`);
    return (await pushUntilServed(lab, round)).totalMs;
  };
  const fleetBig = [await big(fleet, 'big-0')];
  const singleBig = [await big(single, 'big-0')];
  ctx.figures.push(makeFigure({
    id: 'fleet.upload', section: '9. Fleet', title: `push of a ${bigMB} MB release to 3 hosts vs to 1 (ms, upload dominates)`, unit: 'ms',
    slipway: { label: '3 hosts', samples: fleetBig }, baseline: { label: '1 host', samples: singleBig }, goal: { kind: 'ratioAtMost', value: 1.5 },
    notes: ['packed once on the controller, uploaded to the hosts in parallel over one SSH connection each: the controller\'s CPU (ssh2 encryption of 3 streams) and the hosts\' unpack share the same 2 cores here'],
  }));
}
