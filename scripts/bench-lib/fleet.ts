// Section 9 (issue 15): a fleet of three hosts, each in its own network namespace (test/helpers/
// fleet-lab.ts), against one host set up the same way: push → new release served on every host,
// and the push of a big release (its upload dominates). Both labs run at once on this machine, so
// the three hosts share its cores and the controller's "uplink" (the veths) as a real fleet would
// share a laptop's.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startFleetLab, type FleetLab } from '../../test/helpers/fleet-lab.js';
import { readState } from '../../test/helpers/state.js';
import { makeFigure } from './report.js';
import type { RealAppsContext } from './real-apps.js';
import { writeRandomFile } from './release-data.js';
import { lastIngestTimings } from './upload.js';

/** No watch window: the push ends at the switch, as the rows measure "served", not "settled". */
const WATCH = { windowMs: 0, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true };

interface PushTiming {
  servedMs: number;
  totalMs: number;
  /** The fleet push's own phases (pack, connect, reconcile, status, lock, upload, batches, record); {} for one host. */
  phasesMs: Record<string, number>;
  /** Upload ms as the CLI reports it (one host: its result line). */
  uploadMs: number | null;
  /** Per host: ms from the CLI's start to its agent's first event, and to its switch proven. */
  hosts: { firstEventMs: number; switchedMs: number }[];
  /** Of the upload (controller/delta-upload.ts): the slowest host's wait for its bundle, and its send (transfer + the agent's ingest). */
  shipMs: { bundle: number; send: number } | null;
  /** With the relay: the uploader's upload (bundle, uplink transfer, its ingest), and the slowest peer's fetch (transfer between hosts + its ingest; pipelined: it starts as the upload starts). */
  relayMs: { upload: number; fetch: number } | null;
  /** Bytes the controller sent over the lab's uplink during the push (its bridge's tx counter). */
  uplinkBytes: number;
  /** The CLI's own total (from its pack's start to its last line), null if not printed: the rest of totalMs is the process's start and exit. */
  cliMs: number | null;
}

/** Pure: the timings a push's --json lines carry (the fleet's phases, the single push's result, each host's events). */
export function pushTimings(stdout: string, startedAt: number): Pick<PushTiming, 'phasesMs' | 'uploadMs' | 'hosts' | 'shipMs' | 'relayMs' | 'cliMs'> {
  let phasesMs: Record<string, number> = {};
  let uploadMs: number | null = null;
  let cliMs: number | null = null;
  const ship = { bundle: -1, send: -1 };
  const relay = { upload: -1, fetch: -1 };
  const byHost = new Map<string, { first: number; switched: number }>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const value = JSON.parse(line) as Record<string, unknown>;
    if (value.phasesMs) phasesMs = value.phasesMs as Record<string, number>;
    if (value.type === 'result' && typeof value.uploadMs === 'number') uploadMs = value.uploadMs;
    if (typeof value.totalMs === 'number') cliMs = value.totalMs;
    const delta = value.delta as { bundleMs?: number } | undefined;
    if (typeof delta?.bundleMs === 'number') ship.bundle = Math.max(ship.bundle, delta.bundleMs);
    if (typeof value.sendMs === 'number') ship.send = Math.max(ship.send, value.sendMs);
    if (Array.isArray(value.relayTo) && typeof value.uploadMs === 'number') relay.upload = value.uploadMs;
    if (value.upload === 'relay' && typeof value.uploadMs === 'number') relay.fetch = Math.max(relay.fetch, value.uploadMs);
    const event = (value.type === 'event' ? value : value.event) as { step?: string; status?: string; at?: string } | undefined;
    if (!event?.at) continue;
    const host = typeof value.host === 'string' ? value.host : 'single';
    const at = Date.parse(event.at) - startedAt;
    const seen = byHost.get(host) ?? { first: at, switched: -1 };
    seen.first = Math.min(seen.first, at);
    if (event.step === 'switching' && event.status === 'ok') seen.switched = at;
    byHost.set(host, seen);
  }
  const shipMs = ship.send < 0 ? null : { bundle: Math.max(0, ship.bundle), send: ship.send };
  const relayMs = relay.upload < 0 ? null : { upload: relay.upload, fetch: Math.max(0, relay.fetch) };
  return { phasesMs, uploadMs, shipMs, relayMs, cliMs, hosts: [...byHost.values()].map((h) => ({ firstEventMs: h.first, switchedMs: h.switched })) };
}

/** ms from the CLI's start until every host of the lab serves the release of the commit just made. */
async function pushUntilServed(lab: FleetLab, round: string): Promise<PushTiming> {
  const sha = await lab.repo.commit({ 'message.txt': `bench ${round}\n` }, `bench: ${round}`);
  const sentBefore = await lab.lan.uplinkTxBytes();
  const started = Date.now();
  const running = lab.deploy(['--json', 'push'], { timeoutMs: 600_000 });
  let servedMs = -1;
  let done = false;
  void running.then(() => { done = true; });
  // Polled through each host's nginx while the push runs: the time the last host turned over. A
  // release id begins with its commit's 12 first hex digits (contract/release-content.ts), so the
  // loop reads no host's SQLite (three hosts' reads, back to back, took the cores the push runs
  // on); each host is checked against its recorded release of the commit once the push is over.
  const prefix = `${sha.slice(0, 12)}-`;
  const servedBy: (string | null)[] = lab.hosts.map(() => null);
  while (servedMs < 0) {
    const pending = lab.hosts.map((_, i) => i).filter((i) => servedBy[i] === null);
    const served = await Promise.all(pending.map((i) => lab.served(i, 2_000)));
    pending.forEach((i, k) => { if (served[k]?.release.startsWith(prefix)) servedBy[i] = served[k]!.release; });
    if (servedBy.every((id) => id !== null)) servedMs = Date.now() - started;
    else if (done) break;
  }
  const result = await running;
  if (result.code !== 0) throw new Error(`push (${round}) exited ${result.code}: ${result.stderr.slice(-500)}`);
  if (servedMs < 0) throw new Error(`push (${round}) ended but not every host serves the new release`);
  const totalMs = Date.now() - started;
  lab.hosts.forEach((h, i) => {
    if (servedBy[i] !== lab.releaseOf(i, sha)) throw new Error(`push (${round}): ${h.name} served ${servedBy[i]}, not its release of ${sha}`);
  });
  return { servedMs, totalMs, uplinkBytes: (await lab.lan.uplinkTxBytes()) - sentBefore, ...pushTimings(result.stdout, started) };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
};

/** Pure: one note line: each phase's median over the reps, and each host's agent part. */
export function phaseNote(label: string, runs: readonly PushTiming[]): string {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.phasesMs)))];
  const phases = names.map((n) => `${n} ${median(runs.map((r) => r.phasesMs[n] ?? 0))}`).join(', ');
  const firstEvent = median(runs.map((r) => Math.max(...r.hosts.map((h) => h.firstEventMs))));
  const switched = median(runs.map((r) => Math.max(...r.hosts.map((h) => h.switchedMs))));
  const spread = median(runs.map((r) => Math.max(...r.hosts.map((h) => h.switchedMs)) - Math.min(...r.hosts.map((h) => h.switchedMs))));
  const upload = (runs.some((r) => r.uploadMs !== null) ? `, upload ${median(runs.map((r) => r.uploadMs ?? 0))}` : '')
    + (runs.some((r) => r.shipMs !== null) ? ` (of it: bundle ${median(runs.map((r) => r.shipMs?.bundle ?? 0))}, send + ingest ${median(runs.map((r) => r.shipMs?.send ?? 0))} for the slowest host)` : '')
    + (runs.some((r) => r.relayMs !== null) ? `; relay: upload to the uploader ${median(runs.map((r) => r.relayMs?.upload ?? 0))} and, beside it (pipelined), the slowest peer's fetch ${median(runs.map((r) => r.relayMs?.fetch ?? 0))}` : '')
    + `; uplink ${(median(runs.map((r) => r.uplinkBytes)) / 1e6).toFixed(1)} MB sent`;
  const outside = runs.every((r) => r.cliMs !== null) ? `; the CLI process's start and exit (exit - its own total) ${median(runs.map((r) => r.totalMs - r.cliMs!))}` : '';
  return `${label} (medians, ms): served ${median(runs.map((r) => r.servedMs))}${phases ? `; phases ${phases}` : ''}${upload}; last host's first agent event at ${firstEvent}, last switch proven at ${switched} (spread between hosts ${spread})${outside}`;
}

/**
 * One failure after going live, timed from the failing host's failed watch verdict (its agent's
 * event) until every host of the lab serves the release from before the push: the live slot's
 * process of `failing` is killed while its window runs (PM2 restarts it; the restart count fails
 * the watch). On one host that is its swap-back; on a fleet (batch = all) the failing host swaps
 * back, the controller aborts the others' windows and they swap back too.
 */
interface RevertTiming {
  /** From the failed verdict to the first poll (begun after it) that saw every host on the old release. */
  polledMs: number;
  /** From the failed verdict to the last host's own proof of the old release (its swap_back, or its revert switch, ok). */
  provenMs: number;
  /** From the failed verdict to the last other host's "abort asked" (null: no other host was aborted). */
  abortReachedMs: number | null;
  /** On the aborted hosts, the longest from "abort asked" to its swap-back begun (wake-up, verdict, the previous slot's health check). */
  abortToSwapMs: number | null;
  /** The failing host's own verdict → its swap-back proven, in this run (on 3 hosts: beside the others' on the same cores). */
  failingOwnMs: number;
  /** Each step's time from the failed verdict (ms), by name: the controller's abort sent, and per host its abort received, window ended, swap-back begun and proven, first poll seen back. */
  marks: Record<string, number>;
}

/** Pure: one host's steps of a revert from its events, as ms after `failedAt` ("abort", "window end", "swap begun", "swap proven", "new slot stopped"). */
export function revertMarks(events: readonly { step: string; status: string; message: string | null; at: string }[], failedAt: number): Record<string, number> {
  const marks: Record<string, number> = {};
  const at = (e: { at: string } | undefined) => (e ? Date.parse(e.at) - failedAt : undefined);
  const put = (name: string, value: number | undefined) => { if (value !== undefined) marks[name] = value; };
  put('abort', at(events.find((e) => e.step === 'abort')));
  put('window end', at(events.find((e) => e.step === 'watching' && e.status !== 'started' && e.status !== 'info' && (e.message ?? '').startsWith('failed'))));
  put('swap begun', at(events.find((e) => e.step === 'swap_back' && e.status === 'started')));
  put('swap proven', at(events.find((e) => e.step === 'swap_back' && e.status === 'ok')));
  // After the swap-back, the new slot is stopped (PM2): on one machine, beside the other hosts' swap-backs.
  put('new slot stopped', at(events.find((e) => e.step === 'compensate' && (e.message ?? '').startsWith('stop '))));
  return marks;
}

/** Pure: when an agent's log shows the first abort request coming in after `since` (its "incoming request" line), or null. */
export function abortRequestAt(log: string, since: number): number | null {
  for (const line of log.split('\n')) {
    if (!line.includes('/abort') || !line.includes('incoming request')) continue;
    const entry = JSON.parse(line) as { time?: number; msg?: string; req?: { url?: string } };
    if (entry.msg === 'incoming request' && entry.req?.url?.endsWith('/abort') && typeof entry.time === 'number' && entry.time >= since) return entry.time;
  }
  return null;
}

/** Pure: when the controller sent its aborts (the --json line of the stop), or null. */
export function abortSentAt(stdout: string): number | null {
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const value = JSON.parse(line) as { abortSentAt?: string };
    if (typeof value.abortSentAt === 'string') return Date.parse(value.abortSentAt);
  }
  return null;
}

/** Pure: each mark's median over the runs, in the order of that median ("name median (min–max)"). */
export function marksNote(runs: readonly Record<string, number>[]): string {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r)))];
  const rows = names.map((n) => {
    const values = runs.map((r) => r[n]).filter((v): v is number => v !== undefined);
    return { n, median: median(values), min: Math.min(...values), max: Math.max(...values) };
  }).sort((a, b) => a.median - b.median);
  return rows.map((r) => `${r.n} ${r.median} (${r.min}–${r.max})`).join(', ');
}

/** Pure: when a host's deployments (of one push) last proved the old release served again: a swap-back's or a revert switch's ok event; null if none. */
export function provenBackAt(deployments: readonly { kind: string; events: readonly { step: string; status: string; at: string }[] }[]): number | null {
  const times = deployments.flatMap((d) => d.events
    .filter((e) => e.status === 'ok' && (e.step === 'swap_back' || (d.kind === 'switch' && e.step === 'switching')))
    .map((e) => Date.parse(e.at)));
  return times.length ? Math.max(...times) : null;
}

async function revertOnce(lab: FleetLab, failing: number, round: string, args: string[]): Promise<RevertTiming> {
  const before = (await lab.servedAll(2_000)).map((s) => s?.release ?? null);
  if (before.some((r) => r === null || r !== before[0])) throw new Error(`revert (${round}): the lab does not serve one release: ${before.join(', ')}`);
  const home = lab.hosts[failing]!.stack.home;
  const lastIds = lab.hosts.map((h) => readState(h.stack.home, lab.app).deployments[0]?.id ?? 0);
  const lastId = lastIds[failing]!;
  await lab.repo.commit({ 'message.txt': `bench revert ${round}\n` }, `bench: revert ${round}`);
  const running = lab.deploy(['--json', 'push', ...args], { timeoutMs: 600_000 });
  let exited = false;
  void running.then(() => { exited = true; });
  // Every host switched and in its window (so a host seen on the old release from now on has gone
  // back, not yet to come forward): kill the failing host's new slot process.
  for (;;) {
    const watching = lab.hosts.every((h, i) => {
      const d = readState(h.stack.home, lab.app).deployments[0];
      return d !== undefined && d.id > lastIds[i]! && d.state === 'watching' && d.outcome === null;
    });
    if (watching) break;
    if (exited) throw new Error(`revert (${round}): the push ended before every host watched`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const pid = lab.liveSlotPid(failing);
  if (pid === null) throw new Error(`revert (${round}): no live slot process on ${lab.hosts[failing]!.name}`);
  process.kill(pid, 'SIGKILL');
  // Each host polled through its nginx until it serves the old release again; a host seen back is
  // not asked again. (Polling every host back to back until the push ends took the cores the
  // agents swap back on, three times as much on the fleet as on one host.)
  const seenBack: ({ sentAt: number; doneAt: number } | null)[] = lab.hosts.map(() => null);
  const killedAt = Date.now();
  while (seenBack.some((x) => x === null)) {
    const sentAt = Date.now();
    const pending = lab.hosts.map((_, i) => i).filter((i) => seenBack[i] === null);
    const served = await Promise.all(pending.map((i) => lab.served(i, 2_000)));
    const doneAt = Date.now();
    pending.forEach((i, k) => { if (served[k]?.release === before[0]) seenBack[i] = { sentAt, doneAt }; });
    if (Date.now() - killedAt > 180_000) throw new Error(`revert (${round}): not back on the old release`);
  }
  const result = await running;
  if (result.code !== 4) throw new Error(`revert (${round}): push exited ${result.code}, not 4 (rolled back): ${result.stderr.slice(-500)}`);
  const deployment = readState(home, lab.app).deployments.find((d) => d.id > lastId && d.kind === 'deploy')!;
  // The window's step ends with its verdict ("failed: ..."), as in the single-host swap-back row.
  const verdict = readState(home, lab.app).events(deployment.id)
    .find((e) => e.step === 'watching' && e.status !== 'started' && e.status !== 'info' && (e.message ?? '').startsWith('failed'));
  if (!verdict) throw new Error(`revert (${round}): no failed watch verdict on ${lab.hosts[failing]!.name}`);
  const failedAt = Date.parse(verdict.at);
  // The last host's first poll that saw it back; every one of them began after the verdict.
  const seen = seenBack.filter((x): x is { sentAt: number; doneAt: number } => x !== null);
  if (seen.some((x) => x.sentAt < failedAt)) throw new Error(`revert (${round}): a host served the old release before the verdict`);
  const back = { doneAt: Math.max(...seen.map((x) => x.doneAt)) };
  // The agents' own records: each host's proof of the old release, and when the abort reached the others.
  const proven: number[] = [];
  const aborts: number[] = [];
  const wakes: number[] = [];
  let failingOwn = -1;
  const marks: Record<string, number> = {};
  const sent = abortSentAt(result.stdout);
  if (sent !== null) marks['controller abort sent'] = sent - failedAt;
  lab.hosts.forEach((h, i) => {
    const state = readState(h.stack.home, lab.app);
    const mine = state.deployments.filter((d) => d.id > lastIds[i]!).map((d) => ({ kind: d.kind, events: state.events(d.id) }));
    const label = i === failing ? `${h.name} (failing)` : h.name;
    for (const [name, ms] of Object.entries(revertMarks(mine.flatMap((d) => d.events), failedAt))) marks[`${label} ${name}`] = ms;
    marks[`${label} polled back`] = seenBack[i]!.doneAt - failedAt;
    const abortIn = abortRequestAt(readFileSync(path.join(h.stack.dir, 'agent.log'), 'utf8'), killedAt);
    if (abortIn !== null) marks[`${label} abort request in`] = abortIn - failedAt;
    const at = provenBackAt(mine);
    if (at !== null) proven.push(at);
    if (i === failing && at !== null) failingOwn = at - failedAt;
    const events = mine.flatMap((d) => d.events);
    const asked = events.find((e) => e.step === 'abort');
    if (i !== failing && asked) {
      aborts.push(Date.parse(asked.at));
      const swap = events.find((e) => e.step === 'swap_back' && e.status === 'started');
      if (swap) wakes.push(Date.parse(swap.at) - Date.parse(asked.at));
    }
  });
  if (proven.length === 0) throw new Error(`revert (${round}): no host recorded a swap-back or revert`);
  return {
    polledMs: back.doneAt - failedAt,
    provenMs: Math.max(...proven) - failedAt,
    abortReachedMs: aborts.length ? Math.max(...aborts) - failedAt : null,
    abortToSwapMs: wakes.length ? Math.max(...wakes) : null,
    failingOwnMs: failingOwn,
    marks,
  };
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

  const wants = (row: 'push' | 'revert' | 'upload' | 'uplink') => !ctx.rows || ctx.rows.has(`fleet.${row}`);
  if (wants('push')) await pushRow(ctx, fleet, single, reps);
  if (wants('revert')) await revertRow(ctx, fleet, single);
  if (wants('upload')) await uploadRow(ctx, fleet, single);
  if (wants('uplink')) await uplinkRow(ctx, fleet, single);
}

async function pushRow(ctx: RealAppsContext, fleet: FleetLab, single: FleetLab, reps: number): Promise<void> {
  const fleetRuns: PushTiming[] = [];
  const singleRuns: PushTiming[] = [];
  for (let i = 0; i < reps; i++) {
    fleetRuns.push(await pushUntilServed(fleet, `small-${i}`));
    singleRuns.push(await pushUntilServed(single, `small-${i}`));
  }
  ctx.figures.push(makeFigure({
    id: 'fleet.push', section: '9. Fleet', title: 'push → new release served on all 3 hosts (batch = all), vs the same push to 1 host (ms)', unit: 'ms',
    slipway: { label: '3 hosts', samples: fleetRuns.map((r) => r.servedMs) }, baseline: { label: '1 host', samples: singleRuns.map((r) => r.servedMs) }, goal: { kind: 'ratioAtMost', value: 1.3 },
    notes: [
      'sample app; each host in its own network namespace on this machine; watch window 0 (the figure stops when the last host serves the release)',
      phaseNote('3 hosts', fleetRuns), phaseNote('1 host', singleRuns),
    ],
  }));

}

async function revertRow(ctx: RealAppsContext, fleet: FleetLab, single: FleetLab): Promise<void> {
  // Fleet revert vs one host's swap-back: a window long enough to fail in (the fleet's rollout.window;
  // the single host goes through the fleet path with --hosts, its only host, to get the same window).
  const WINDOW = '30s';
  await fleet.writeConfig((c) => { c.environments[fleet.env]!.rollout = { batch: '100%', bake: '0s', window: WINDOW }; });
  await single.writeConfig((c) => { c.environments[single.env]!.rollout = { batch: 1, bake: '0s', window: WINDOW }; });
  const fleetRevert: RevertTiming[] = [];
  const singleRevert: RevertTiming[] = [];
  for (let i = 0; i < Math.max(2, ctx.plan.swapBackReps); i++) {
    fleetRevert.push(await revertOnce(fleet, 2, `fleet-${i}`, []));
    singleRevert.push(await revertOnce(single, 0, `single-${i}`, ['--hosts', single.hosts[0]!.name, '--force', '--reason', 'bench: a window on one host']));
  }
  const list = (values: readonly (number | null)[]) => values.map((v) => v ?? '-').join(', ');
  ctx.figures.push(makeFigure({
    id: 'fleet.revert', section: '9. Fleet', title: 'fleet revert: failure detected → every host serving the old release (3 hosts, batch = all), vs one host\'s swap-back (ms)', unit: 'ms',
    slipway: { label: '3 hosts', samples: fleetRevert.map((r) => r.polledMs) }, baseline: { label: '1 host swap-back', samples: singleRevert.map((r) => r.polledMs) }, goal: { kind: 'ratioAtMost', value: 2 },
    notes: [
      'the live process of h3 (of the one host) killed once every host is in its window: from its failed watch verdict (agent event) until the last host answers a poll through its nginx with the old release (each host polled back to back until it does, then no more); the other two hosts swap back when the controller aborts their windows',
      `the same from the agents' own records (the last host's swap-back or revert proven through its nginx), ms: 3 hosts ${list(fleetRevert.map((r) => r.provenMs))}; 1 host ${list(singleRevert.map((r) => r.provenMs))}`,
      `verdict → the abort recorded on the last of the other two hosts (failing agent → controller → agents), ms: ${list(fleetRevert.map((r) => r.abortReachedMs))}`
        + `; then abort → its swap-back begun (wake-up, verdict, the previous slot's health check), longest of the two, ms: ${list(fleetRevert.map((r) => r.abortToSwapMs))}`,
      `the failing host's own swap-back (verdict → proven) in the same runs, ms: 3 hosts ${list(fleetRevert.map((r) => r.failingOwnMs))}; 1 host ${list(singleRevert.map((r) => r.failingOwnMs))} (three agents swap back at once on this machine's 2 cores)`,
      `timeline, ms after the failed verdict, median (min–max), 3 hosts: ${marksNote(fleetRevert.map((r) => r.marks))}`,
      `timeline, 1 host: ${marksNote(singleRevert.map((r) => r.marks))}`,
    ],
  }));
  await fleet.writeConfig((c) => { c.environments[fleet.env]!.rollout = { batch: '100%', bake: '0s' }; });
}

/** The 100 MB row: paired rounds (3 hosts, then 1), each a new random file nothing of which is on any host yet. */
async function uploadRow(ctx: RealAppsContext, fleet: FleetLab, single: FleetLab): Promise<void> {
  const bigMB = ctx.plan.uploadBigMB;
  // Each host's agent logs its ingest steps (receive, unpackTail, verify, sync, publish).
  const ingestSteps: Record<'fleet' | 'single', string[]> = { fleet: [], single: [] };
  const bigRun = async (lab: FleetLab, round: string) => {
    await writeRandomFile(path.join(lab.repo.dir, 'big.bin'), bigMB * 1024 * 1024, `fleet-${round}`);
    const timing = await pushUntilServed(lab, round);
    const steps = lab.hosts.map((h) => {
      const ms = lastIngestTimings(path.join(h.stack.dir, 'agent.log'));
      return `${h.name} ${ms ? Object.entries(ms).map(([k, v]) => `${k} ${v}`).join(' ') : 'not logged'}`;
    });
    ingestSteps[lab === fleet ? 'fleet' : 'single'].push(`${round}: ${steps.join('; ')}`);
    return timing;
  };
  // Paired rounds (3 hosts, then 1), each a new random file: nothing of it is on any host yet.
  const fleetBigRuns: PushTiming[] = [];
  const singleBigRuns: PushTiming[] = [];
  for (let i = 0; i < Math.max(1, ctx.plan.repushReps); i++) {
    fleetBigRuns.push(await bigRun(fleet, `big-${i}`));
    singleBigRuns.push(await bigRun(single, `big-${i}`));
  }
  ctx.figures.push(makeFigure({
    id: 'fleet.upload', section: '9. Fleet', title: `push of a ${bigMB} MB release to 3 hosts vs to 1 (ms, upload dominates)`, unit: 'ms',
    slipway: { label: '3 hosts', samples: fleetBigRuns.map((r) => r.totalMs) }, baseline: { label: '1 host', samples: singleBigRuns.map((r) => r.totalMs) }, goal: { kind: 'ratioAtMost', value: 1.5 },
    notes: [
      'random data: the hosts hold the previous release, so each is sent a delta bundle of the new file (100 MB, stored not deflated), cut once on the controller and uploaded to the hosts in parallel over one SSH connection each: the controller\'s CPU (ssh2 encryption of 3 streams) and the 3 hosts\' unpack + hash share the same 2 cores here',
      phaseNote('3 hosts', fleetBigRuns), phaseNote('1 host', singleBigRuns),
      `agents' ingest steps (ms), 3 hosts: ${ingestSteps.fleet.join(' | ')}`,
      `agent's ingest steps (ms), 1 host: ${ingestSteps.single.join(' | ')}`,
    ],
  }));
}

/**
 * What the uplink row shapes the controller's link to (Mbit/s, all hosts together). 200 Mbit/s
 * (25 MB/s) is a good office or CI runner's upstream to a cloud region, and far below what this
 * machine's SSH pipeline does unshaped (~115 MB/s for one stream): the link, not the lab's 2 cores,
 * is then what a push of a big release waits for, as on real hosts.
 */
const UPLINK_MBIT = 200;

/**
 * The 100 MB push under a shaped, shared uplink (the LAN bridge's tbf, test/helpers/netns.ts): to 3
 * hosts sending 3 copies (direct), to 3 hosts sending one copy (the relay: the primary gets it, the
 * other two fetch it from the primary over the hosts' LAN, unshaped), and to 1 host; paired rounds.
 */
async function uplinkRow(ctx: RealAppsContext, fleet: FleetLab, single: FleetLab): Promise<void> {
  const bigMB = ctx.plan.uploadBigMB;
  const relayOn = (on: boolean) => fleet.writeConfig((c) => {
    c.environments[fleet.env]!.hosts.forEach((h, i) => {
      if (on) h.relay = fleet.hosts[i]!.address;
      else delete h.relay;
    });
  });
  const ingest: Record<'direct' | 'relay' | 'single', string[]> = { direct: [], relay: [], single: [] };
  const bigRun = async (lab: FleetLab, round: string, kind: 'direct' | 'relay' | 'single') => {
    await writeRandomFile(path.join(lab.repo.dir, 'big.bin'), bigMB * 1024 * 1024, `uplink-${round}`);
    const timing = await pushUntilServed(lab, round);
    ingest[kind].push(`${round}: ${lab.hosts.map((h) => {
      const ms = lastIngestTimings(path.join(h.stack.dir, 'agent.log'));
      return `${h.name} ${ms ? Object.entries(ms).map(([k, v]) => `${k} ${v}`).join(' ') : 'not logged'}`;
    }).join('; ')}`);
    return timing;
  };
  const direct: PushTiming[] = [];
  const relayed: PushTiming[] = [];
  const one: PushTiming[] = [];
  await fleet.lan.shape(UPLINK_MBIT);
  await single.lan.shape(UPLINK_MBIT);
  try {
    for (let i = 0; i < Math.max(1, ctx.plan.repushReps); i++) {
      await relayOn(false);
      direct.push(await bigRun(fleet, `uplink-direct-${i}`, 'direct'));
      await relayOn(true);
      relayed.push(await bigRun(fleet, `uplink-relay-${i}`, 'relay'));
      one.push(await bigRun(single, `uplink-single-${i}`, 'single'));
    }
  } finally {
    await relayOn(false);
    await fleet.lan.shape(null);
    await single.lan.shape(null);
  }
  const common = `the controller's uplink shaped to ${UPLINK_MBIT} Mbit/s (tbf on the lab's LAN bridge: one queue for all hosts; host-to-host traffic is bridged between ports, unshaped); a new ${bigMB} MB random file per round (a delta bundle of ~${bigMB} MB per host that lacks it); paired rounds: 3 hosts direct, 3 hosts relay, 1 host`;
  const oneNote = phaseNote('1 host', one);
  ctx.figures.push(makeFigure({
    id: 'fleet.uplink.direct', section: '9. Fleet', title: `push of a ${bigMB} MB release over a shared ${UPLINK_MBIT} Mbit/s uplink: 3 hosts, 3 copies sent (direct) vs 1 host (ms)`, unit: 'ms',
    slipway: { label: '3 hosts direct', samples: direct.map((r) => r.totalMs) }, baseline: { label: '1 host', samples: one.map((r) => r.totalMs) }, goal: { kind: 'ratioAtMost', value: 1.5 },
    notes: [common, phaseNote('3 hosts direct', direct), oneNote, `agents' ingest steps (ms), 3 hosts direct: ${ingest.direct.join(' | ')}`, `1 host: ${ingest.single.join(' | ')}`],
  }));
  ctx.figures.push(makeFigure({
    id: 'fleet.uplink.relay', section: '9. Fleet', title: `push of a ${bigMB} MB release over a shared ${UPLINK_MBIT} Mbit/s uplink: 3 hosts, 1 copy sent (relay) vs 1 host (ms)`, unit: 'ms',
    slipway: { label: '3 hosts relay', samples: relayed.map((r) => r.totalMs) }, baseline: { label: '1 host', samples: one.map((r) => r.totalMs) }, goal: { kind: 'ratioAtMost', value: 1.5 },
    notes: [common, phaseNote('3 hosts relay', relayed), oneNote,
      `agents' ingest steps (ms), 3 hosts relay (the peers' receive is their fetch from the primary): ${ingest.relay.join(' | ')}`],
  }));
}
