import { randomUUID } from 'node:crypto';
import type { AppStatus, DeploymentEvent, FleetRecord, PromotionInfo } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { otherSlot, shortSha, type Slot } from '../../contract/names.js';
import { settleBounded } from '../../lib/bounded.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { formatBytes, formatMs } from '../output.js';
import { localActor } from '../session.js';
import { missingContents, shipRelease, useDelta, type Missing } from '../delta-upload.js';
import { bundleKey } from '../pack.js';
import { planUploads, type RelayCandidate } from './relay-plan.js';
import { relayGroup, type RelayContext } from './relay.js';
import { packForPush, sameOverrides, targetFields, uploadHeaders, uploadPath, type PushOptions, type PushRelease } from '../commands/push.js';
import { runOnHost, type HostRun, type HostRunEnd } from './host-run.js';
import { releaseFleetLock, takeFleetLock, type FleetLock } from './lock.js';
import { fleetVerdict, hostsToRevert, planPush, type Batch, type HostOutcome } from './plan.js';
import { writeFleetRecord } from './record.js';
import { readFleet, reconcileFirst, type FleetReading } from './reconcile.js';
import { takeBaselines, watchSwitched, type SentinelOptions, type Watched } from './sentinel.js';
import { openFleet, unreachableError, type FleetMember, type FleetMiss, type FleetSession, type OpenFleetOptions } from './session.js';
import { hostName, selectHosts, type FleetTarget } from './target.js';

export interface FleetPushOptions extends PushOptions {
  /** Go on without hosts that cannot be reached before any switch (recorded as skipped). */
  skipUnreachable: boolean;
  /** --hosts: only these hosts (needs force and reason: it makes drift on purpose). */
  hosts: string[] | null;
  force: boolean;
  reason: string | null;
}

/**
 * What the rollout itself takes of a command's options: a push passes its FleetPushOptions; a
 * promotion (controller/commands/promote.ts) its own, with `promotion` for every host's deployment.
 */
export interface FleetRolloutOptions extends Pick<FleetPushOptions, 'skipUnreachable' | 'hosts' | 'reason' | 'wait' | 'waitTimeoutMs'> {
  /** Carried by every host's deployment request: each host records the promotion. */
  promotion?: PromotionInfo;
  /** What the fleet record names as its command (default push). */
  kind?: FleetRecord['kind'];
  /** Run once the fleet lock is held, before any upload (a promotion records itself there). */
  onLocked?: () => Promise<void>;
}

/** How old the fleet's reading taken while packing may be when the rollout plans from it. */
const READ_FRESH_MS = 10_000;

/** One host's line of the final table. */
export interface HostReport { host: string; outcome: HostOutcome; deploymentId: number | null; detail: string }

/**
 * `deploy push` on a fleet: pack once, connect to every host (bounded), refuse unless all are
 * reachable (or --skip-unreachable), take the fleet lock, upload in parallel where missing, then
 * switch in batches with a bake after each; any failure aborts the running hosts and reverts every
 * host switched in this rollout by one flip each. A fleet record is written on every host at the end.
 */
export async function fleetPush(fleet: FleetTarget, options: FleetPushOptions, out: Output, openOptions: OpenFleetOptions = {}): Promise<ExitCode> {
  if (options.slot) throw new SlipwayError('usage', '--slot does not apply to a fleet: each host deploys into its own standby slot', { hint: 'drop --slot' });
  if (options.detach) throw new SlipwayError('usage', '--no-wait does not apply to a fleet: the controller drives the batches', { hint: 'drop --no-wait' });
  let selected = fleet;
  let leftOut: string[] = [];
  if (options.hosts) {
    if (!options.force || !options.reason) {
      throw new SlipwayError('usage', `--hosts ${options.hosts.join(',')} limits a push to some hosts of the fleet, which leaves it on different releases on purpose`, {
        hint: 'add --force --reason "<why>" if that is what you want (it is recorded in each host\'s history and fleet record)',
      });
    }
    selected = selectHosts(fleet, options.hosts);
    leftOut = fleet.hosts.map(hostName).filter((n) => !options.hosts!.includes(n));
  }
  const names = selected.hosts.map(hostName);
  // The hosts are connected to, and read (status, lock, fleet record: nothing changed), while the
  // release is packed: the two share no input, and a pack that fails closes the connections unused.
  const startedAt = Date.now();
  const opening = openFleet(selected, openOptions);
  const reading = opening.then((session) => {
    const connectedMs = Date.now() - startedAt;
    return readFleet(session, selected).then((read) => ({ read, connectedMs, readMs: Date.now() - startedAt, readAt: Date.now() }));
  });
  reading.catch(() => undefined);
  let release: PushRelease;
  try {
    release = await packForPush(selected.hosts[0]!, options, out, `${names.length} host(s): ${names.join(', ')}`);
  } catch (error) {
    await opening.then((session) => session.close(), () => undefined);
    throw error;
  }
  const phases = new PhaseClock(release.startedAt);
  phases.mark('pack');
  try {
    const session = await opening;
    phases.mark('connect');
    try {
      // A reading older than READ_FRESH_MS (a long build) is read again: the fleet may have moved since.
      const read = reading.then((r) => {
        phases.note('connectMs', r.connectedMs);
        phases.note('readMs', r.readMs);
        return Date.now() - r.readAt <= READ_FRESH_MS ? r.read : readFleet(session, selected);
      });
      read.catch(() => undefined);
      return await rollOutFleet(selected, session, release, options, leftOut, out, phases, read);
    } finally {
      await session.close();
    }
  } finally {
    await release.prepared.cleanup();
  }
}

/**
 * The fleet rollout of a release already at hand (packed by a push, or a promotion's verified
 * tarball): reconcile-first, plan, fleet lock, upload where missing, batches, revert-all on a
 * failure, fleet record. The caller owns the session and the release.
 */
export async function rollOutFleet(fleet: FleetTarget, session: FleetSession, release: PushRelease, options: FleetRolloutOptions, leftOut: string[], out: Output,
  phases: PhaseClock, reading: Promise<FleetReading>): Promise<ExitCode> {
  const { releaseId } = release.manifest;
  const { app } = fleet;
  const refused = `${options.kind ?? 'push'} refused, nothing changed`;
  const members = session.members;
  if (members.length === 0) throw unreachableError(session.unreachable, refused);
  // A caller that left a host out already (--hosts; a promotion says its skips before the approval) said so.
  const skipped = [...leftOut, ...leaveOutUnreachable(session.unreachable.filter((m) => !leftOut.includes(m.name)), options.skipUnreachable, refused, out)];
  // Reconcile-first: a host an earlier rollout left behind goes back to the fleet's release before
  // anything else, so a failure of this push reverts the whole fleet to one release. A host already
  // on the release being pushed is left alone (the push finds it done). --hosts drifts on purpose.
  const reconciled = options.hosts ? null : await reconcileFirst(session, fleet, out, { alsoFine: releaseId, read: reading });
  phases.mark('reconcile');
  const statuses = new Map<string, AppStatus>();
  // Read while packing; read again when reconcile moved a host (or was not run).
  const read = reconciled && reconciled.moves.length === 0 ? reconciled.snapshots : [];
  for (const snap of read) if (snap.status) statuses.set(snap.name, snap.status);
  await Promise.all(members.filter((m) => !statuses.has(m.name)).map(async (m) => { statuses.set(m.name, await m.session.agent.get<AppStatus>(`/apps/${app}`)); }));
  phases.mark('status');
  const alreadyLive = new Set(members.filter((m) => {
    const s = statuses.get(m.name)!;
    return s.liveReleaseId === releaseId && sameOverrides(s, m.target);
  }).map((m) => m.name));
  const reachable = members.map((m) => m.name);
  const primary = reachable.includes(fleet.rollout.primary) ? fleet.rollout.primary : reachable[0]!;
  const plan = planPush(reachable, { ...fleet.rollout, primary }, alreadyLive);
  const previousRelease = mostCommon(members.filter((m) => !alreadyLive.has(m.name)).map((m) => statuses.get(m.name)!.liveReleaseId));
  const rolloutId = randomUUID();
  const outcomes = new Map<string, HostOutcome>(reachable.map((n) => [n, alreadyLive.has(n) ? 'unchanged' : 'not_started']));
  const details = new Map<string, string>();
  const deploymentIds = new Map<string, number | null>();

  if (plan.batches.length === 0) {
    out.info(`${shortSha(releaseId)} is already live on every reachable host: nothing to do`, { outcome: 'unchanged', rolloutId });
    await recordAndReport({ fleet, members, rolloutId, releaseId, attempted: releaseId, outcome: 'succeeded', skipped, reason: options.reason, kind: options.kind }, out);
    return EXIT.ok;
  }
  out.info(`  rollout ${rolloutId.slice(0, 8)}: ${plan.batches.map((b, i) => `batch ${i + 1} [${b.hosts.join(', ')}]`).join(', ')}`
    + `${plan.unchanged.length ? `; already live on ${plan.unchanged.join(', ')}` : ''}; run-once work on ${plan.runOnceHost ?? 'none (the primary already has it)'}`,
  { rolloutId, batches: plan.batches, unchanged: plan.unchanged, runOnceHost: plan.runOnceHost });

  const lock = await takeFleetLock(members, app, releaseId, rolloutId, options, out);
  phases.mark('lock');
  try {
    await options.onLocked?.();
    await uploadWhereMissing(members, fleet, release, out);
    phases.mark('upload');
    const watch = { intervalMs: release.manifest.spec?.watch.intervalMs ?? 1_000, threshold: release.manifest.spec?.watch.failuresToRollback ?? 3 };
    // Hosts whose part is over and that serve the release (earlier batches, hosts that had it before)
    // are flipped back as soon as a failure is known, beside the running hosts' own swap-back: not
    // once the failing batch has ended (its hosts stop their new slots before they answer).
    const reverting = new Map<string, Promise<void>>();
    const revert = (reason: string) => {
      const toRevert = hostsToRevert(outcomes).filter((h) => !reverting.has(h));
      if (toRevert.length === 0) return;
      out.info(`  reverting ${toRevert.join(', ')} to ${previousRelease ? shortSha(previousRelease) : 'their previous release'} (one flip each)`);
      const flips = revertHosts(toRevert, { members, app, rolloutId, lock, statuses, previousRelease, reason, fleet }, outcomes, details, deploymentIds);
      for (const host of toRevert) reverting.set(host, flips);
    };
    const failedAt = await runBatches(plan.batches, { members, app, releaseId, rolloutId, lock, runOnceHost: plan.runOnceHost, fleet, tag: release.tag, watch, promotion: options.promotion ?? null, onFailure: revert },
      outcomes, details, deploymentIds, out);
    phases.mark('batches');
    if (failedAt !== null) {
      // A host of the failing batch whose window passed before the abort reached it is reverted now.
      await Promise.all(reverting.values());
      revert(failedAt);
      await Promise.all(reverting.values());
      phases.mark('revert');
    }
    const verdict = fleetVerdict(outcomes);
    const fleetRelease = verdict.outcome === 'succeeded' ? releaseId : previousRelease;
    report(hostsOf(outcomes), outcomes, details, deploymentIds, skipped, out);
    if (fleetRelease) {
      await recordAndReport({ fleet, members, rolloutId, releaseId: fleetRelease, attempted: releaseId, outcome: verdict.outcome, skipped, reason: options.reason, kind: options.kind }, out);
    }
    phases.mark('record');
    if (verdict.outcome === 'succeeded') {
      out.info(`${shortSha(releaseId)} is live on ${reachable.length} host(s) in ${formatMs(Date.now() - release.startedAt)}${skipped.length ? `; not on ${skipped.join(', ')} (left out: drift)` : ''}`,
        { outcome: 'succeeded', rolloutId, totalMs: Date.now() - release.startedAt, phasesMs: phases.spans(), skipped });
      return EXIT.ok;
    }
    out.info(`  phases: ${Object.entries(phases.spans()).map(([k, v]) => `${k} ${formatMs(v)}`).join(', ')}`, { phasesMs: phases.spans() });
    out.error(verdictError(verdict, releaseId, failedAt ?? 'a host failed', outcomes));
    return verdict.exitCode;
  } finally {
    const stuck = await releaseFleetLock(members, app, lock);
    if (stuck.length) out.info(`  could not release the lock on ${stuck.join('; ')} (it expires by itself)`);
  }
}

/**
 * The unreachable hosts a fleet rollout goes on without: refused (fleet_unreachable, nothing
 * changed) unless --skip-unreachable; each one skipped is said, and named in the fleet record as
 * skipped (drift by intent: status flags it, the next rollout brings it).
 */
export function leaveOutUnreachable(misses: readonly FleetMiss[], skip: boolean, refused: string, out: Output): string[] {
  if (misses.length === 0) return [];
  if (!skip) throw unreachableError(misses, refused);
  for (const miss of misses) out.info(`  skipping unreachable ${miss.name}: ${errorMessage(miss.error)} (recorded as drift)`, { host: miss.name, skipped: true });
  return misses.map((m) => m.name);
}

function hostsOf(outcomes: ReadonlyMap<string, HostOutcome>): string[] {
  return [...outcomes.keys()];
}

/** Pure: text as one line of at most `max` characters (a recorded reason takes no control characters). */
export function oneLine(text: string, max: number): string {
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/** Pure: the most common non-null value (first seen wins a tie), or null. */
export function mostCommon(values: ReadonlyArray<string | null>): string | null {
  const counts = new Map<string, number>();
  for (const v of values) if (v !== null) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: string | null = null;
  for (const [v, n] of counts) if (best === null || n > counts.get(best)!) best = v;
  return best;
}

/**
 * Ships the release, in parallel (bounded), to every member that lacks it: each host is asked which
 * file contents it lacks and gets only those (a delta upload, controller/delta-upload.ts) or the
 * full tarball, sealed once for all of them. Hosts that lack the same contents are sent the bytes
 * once when one of them has a relay address: it gets them from the controller and the others fetch
 * them from it over the hosts' network (controller/fleet/relay.ts; relay-plan.ts decides).
 */
async function uploadWhereMissing(members: readonly FleetMember[], fleet: FleetTarget, release: PushRelease, out: Output): Promise<void> {
  const { releaseId } = release.manifest;
  const has = await Promise.all(members.map((m) => m.session.agent.find(`/apps/${fleet.app}/releases/${releaseId}`)));
  const missing = members.filter((_, i) => !has[i]);
  const present = members.filter((_, i) => has[i]).map((m) => m.name);
  if (present.length) out.info(`  release ${shortSha(releaseId)} is already on ${present.join(', ')}: not uploaded there`, { uploadedBytes: 0, hosts: present });
  if (missing.length === 0) return;
  const direct = async (m: FleetMember, why: string | null, lacks?: Missing) => {
    if (why) out.info(`  [${m.name}] ${why}: uploading directly`, { host: m.name, relayFallback: why });
    const shipped = await shipRelease({
      agent: m.session.agent, app: fleet.app, uploadPath: uploadPath(m.target, releaseId, release.tag), prepared: release.prepared,
      manifest: release.manifest, headers: uploadHeaders(m.target.specOverrides), prepareMs: release.prepareMs, out: hostOutput(out, m.name),
      ...(lacks !== undefined ? { missing: lacks } : {}),
    });
    out.info(`  [${m.name}] ${shipped.how === 'delta' ? 'delta' : 'full'} upload of ${formatBytes(shipped.uploadedBytes)} verified in ${formatMs(shipped.uploadMs)}`,
      { host: m.name, uploadMs: shipped.uploadMs, uploadedBytes: shipped.uploadedBytes, upload: shipped.how });
    return shipped;
  };
  const failures = new Map<string, unknown>();
  const relayable = missing.length >= 2 && missing.some((m) => m.target.host.relay !== undefined);
  if (!relayable) {
    const settled = await settleBounded(missing, fleet.rollout.concurrency, (m) => direct(m, null));
    settled.forEach((r, i) => { if (r.status === 'rejected') failures.set(missing[i]!.name, r.reason); });
  } else {
    // What each host lacks decides the groups (hosts sent the same bytes), asked once for the upload too.
    const asked = await settleBounded(missing, fleet.rollout.concurrency, (m) => missingContents(m.session.agent, fleet.app, release.prepared));
    const lacks = new Map<string, Missing>();
    const candidates: RelayCandidate[] = [];
    asked.forEach((r, i) => {
      const m = missing[i]!;
      if (r.status === 'rejected') return void failures.set(m.name, r.reason);
      lacks.set(m.name, r.value);
      candidates.push({ name: m.name, relay: m.target.host.relay ?? null, key: useDelta(release.prepared, r.value) ? bundleKey(release.manifest, r.value!) : 'full' });
    });
    const plan = planUploads(candidates, fleet.rollout.primary);
    const byName = new Map(missing.map((m) => [m.name, m]));
    const ctx: RelayContext = { fleet, release, out, missing: lacks, direct: (m, why) => direct(m, why, lacks.get(m.name)), hostOutput: (name) => hostOutput(out, name) };
    const directs = plan.direct.map((name) => byName.get(name)!);
    const [directSettled, groups] = await Promise.all([
      settleBounded(directs, fleet.rollout.concurrency, (m) => direct(m, null, lacks.get(m.name))),
      Promise.all(plan.relayed.map((group) => relayGroup(group, byName, ctx))),
    ]);
    directSettled.forEach((r, i) => { if (r.status === 'rejected') failures.set(directs[i]!.name, r.reason); });
    for (const group of groups) for (const [name, failure] of group) failures.set(name, failure);
  }
  if (failures.size) {
    const failed = missing.filter((m) => failures.has(m.name));
    const first = failures.get(failed[0]!.name);
    throw new SlipwayError(first instanceof SlipwayError ? first.code : 'upload_failed', `upload failed on ${failed.map((m) => m.name).join(', ')}; nothing was switched on any host`, {
      details: failed.map((m) => `${m.name}: ${errorMessage(failures.get(m.name))}`),
      hint: first instanceof SlipwayError && first.hint ? first.hint : 'fix the host named above and push again',
    });
  }
}

interface BatchContext {
  members: readonly FleetMember[]; app: string; releaseId: string; rolloutId: string; lock: FleetLock;
  runOnceHost: string | null; fleet: FleetTarget; tag: string | null;
  /** How the hosts of earlier batches are watched while later ones roll out (the release's watch settings). */
  watch: SentinelOptions;
  /** A promotion's origin, recorded on every host's deployment; null for a push. */
  promotion: PromotionInfo | null;
  /** Called once, at the first failure (before the failing batch ends): reverts the hosts whose part is over. */
  onFailure: (reason: string) => void;
}

/**
 * Runs the batches in order; returns null when every host passed, else why the rollout stopped.
 * Within a batch, the run-once host goes first and the others start once it is past its release
 * phase; the first failure aborts the batch's other hosts (they stop, or swap back by one flip).
 */
async function runBatches(batches: readonly Batch[], ctx: BatchContext, outcomes: Map<string, HostOutcome>, details: Map<string, string>, ids: Map<string, number | null>, out: Output): Promise<string | null> {
  // Hosts of earlier batches, each with the slot it switched to: watched until the rollout ends.
  const switched: Watched[] = [];
  for (const [index, batch] of batches.entries()) {
    out.info(`  batch ${index + 1}/${batches.length}: ${batch.hosts.join(', ')}${batch.last ? ` (full watch window${batch.watchMs === null ? '' : ` of ${formatMs(batch.watchMs)}`})` : ` (bake ${formatMs(batch.watchMs ?? 0)})`}`
      + `${switched.length ? `; still watching ${switched.map((w) => w.host).join(', ')}` : ''}`, { batch: index + 1, hosts: batch.hosts });
    let failure: string | null = null;
    const sentinel = watchSwitched(ctx.members, ctx.app, switched, ctx.watch);
    const runs: HostRun[] = [];
    const ends: Promise<HostRunEnd>[] = [];
    const stopAll = (reason: string, except: string | null) => {
      failure = reason;
      const stopping = runs.filter((other) => other.name !== except);
      for (const other of stopping) other.abort(`rollout ${ctx.rolloutId.slice(0, 8)} stopped: ${reason}`);
      const abortSentAt = new Date().toISOString();
      // The earlier batches' hosts are flipped back from here on: not watched any more.
      sentinel.stop();
      ctx.onFailure(reason);
      if (stopping.length) out.info(`  stopping ${stopping.map((r) => r.name).join(', ')}: ${reason}`, { stopping: stopping.map((r) => r.name), abortSentAt });
    };
    const start = (name: string) => {
      const member = ctx.members.find((m) => m.name === name)!;
      const run = runOnHost(member, ctx.app, `/apps/${ctx.app}/deployments`, deployBody(ctx, member, batch), (host, event) => {
        // A failed window is known from its verdict: the others are stopped now (before the line is
        // printed), not once this host has swapped back and cleaned up (its result comes after the
        // new slot is stopped).
        if (failure === null && failedVerdict(event)) stopAll(`${host}: ${event.message ?? 'its watch window failed'}`, host);
        hostEvent(host, event, out);
      }, { abortable: true });
      runs.push(run);
      ends.push(run.done.then((end) => {
        outcomes.set(end.name, end.outcome);
        ids.set(end.name, end.deploymentId);
        details.set(end.name, endDetail(end));
        if (end.outcome !== 'succeeded' && failure === null) stopAll(`${end.name}: ${endDetail(end)}`, end.name);
        return end;
      }));
      return run;
    };
    void sentinel.failed.then(({ host, reason }) => {
      if (failure !== null) return;
      out.info(`  [${host}] failed after its batch: ${reason}`, { host, watchFailed: reason });
      details.set(host, `failed after its batch: ${reason}`);
      stopAll(`${host}: ${reason}`, null);
    });
    try {
      const first = ctx.runOnceHost !== null && batch.hosts.includes(ctx.runOnceHost) && batch.hosts.length > 1 ? ctx.runOnceHost : null;
      if (first) await start(first).prepared;
      for (const name of batch.hosts) {
        if (name === first) continue;
        if (failure !== null) break;
        start(name);
      }
      const batchEnds = await Promise.all(ends);
      const passed: Watched[] = batchEnds.filter((end) => end.outcome === 'succeeded' && end.result)
        .map((end) => ({ host: end.name, slot: end.result!.slot, releaseId: ctx.releaseId, baseline: null }));
      // Restart counts as each host's own window left them, before a later batch starts: a restart
      // from then on fails the watch (else the sentinel's first round takes them).
      if (!batch.last) await takeBaselines(ctx.members, ctx.app, passed);
      switched.push(...passed);
    } finally {
      sentinel.stop();
    }
    if (failure !== null) return failure;
  }
  return null;
}

function deployBody(ctx: BatchContext, member: FleetMember, batch: Batch) {
  return {
    releaseId: ctx.releaseId, lockId: ctx.lock.get(member.name)!, ...targetFields(member.target, ctx.tag),
    rolloutId: ctx.rolloutId, runOnce: member.name === ctx.runOnceHost, keepPrevious: true, keepLock: true,
    ...(batch.watchMs !== null ? { watchMs: batch.watchMs } : {}),
    ...(ctx.promotion ? { promotion: ctx.promotion } : {}),
  };
}

/** Pure: the event that ends a failed watch window (the agent swaps back next), or a swap-back begun. */
export function failedVerdict(event: Pick<DeploymentEvent, 'step' | 'status' | 'message'>): boolean {
  if (event.step === 'swap_back') return event.status === 'started';
  return event.step === 'watching' && (event.status === 'ok' || event.status === 'failed') && (event.message ?? '').startsWith('failed');
}

function hostEvent(host: string, event: DeploymentEvent, out: Output): void {
  if (event.status === 'started') return;
  out.info(`  [${host}] ${event.step} ${event.status}${event.message ? `: ${event.message}` : ''}`, { host, event });
}

function endDetail(end: HostRunEnd): string {
  if (end.result) return end.result.outcome === 'succeeded' ? `live on ${end.result.liveSlot} (#${end.deploymentId})` : `${end.result.outcome}: ${end.result.reason ?? '?'}`;
  return errorMessage(end.error);
}

interface RevertContext {
  members: readonly FleetMember[]; app: string; rolloutId: string; lock: FleetLock; statuses: ReadonlyMap<string, AppStatus>;
  previousRelease: string | null; reason: string; fleet: FleetTarget;
}

/**
 * Flips each named host back to the slot it served before, in parallel: one switch each (the agent
 * checks the slot still runs its release and answers its health check; no watch window). A host
 * that was already on the release before the rollout goes to its standby slot only if that slot
 * runs the fleet's previous release.
 */
async function revertHosts(hosts: readonly string[], ctx: RevertContext, outcomes: Map<string, HostOutcome>, details: Map<string, string>, ids: Map<string, number | null>): Promise<void> {
  await Promise.all(hosts.map(async (name) => {
    const member = ctx.members.find((m) => m.name === name)!;
    const before = ctx.statuses.get(name)!;
    const slot = revertSlot(outcomes.get(name)!, before, ctx.previousRelease);
    if (slot === null) {
      outcomes.set(name, 'revert_failed');
      details.set(name, `its standby slot does not run ${ctx.previousRelease ? shortSha(ctx.previousRelease) : 'the previous release'}: left as it is`);
      return;
    }
    const run = runOnHost(member, ctx.app, `/apps/${ctx.app}/switch`, {
      slot, lockId: ctx.lock.get(name)!, reason: oneLine(`fleet rollout ${ctx.rolloutId.slice(0, 8)} reverted: ${ctx.reason}`, 300),
      rolloutId: ctx.rolloutId, watchMs: 0, keepPrevious: true, keepLock: true, ...(member.target.env !== null ? { env: member.target.env } : {}),
    }, () => undefined);
    const end = await run.done;
    const ok = end.result?.outcome === 'succeeded';
    outcomes.set(name, ok ? 'reverted' : 'revert_failed');
    ids.set(name, end.deploymentId ?? ids.get(name) ?? null);
    // A host that failed while watched after its batch keeps that reason in front of its revert.
    const why = details.get(name)?.startsWith('failed after its batch') ? `${details.get(name)}; ` : '';
    details.set(name, `${why}${ok ? `reverted to ${slot} (#${end.deploymentId})` : `revert failed: ${endDetail(end)}`}`);
  }));
}

/** Pure: the slot a host goes back to: the one it served before the rollout (or, for an unchanged host, its standby if that runs the previous release). */
export function revertSlot(outcome: HostOutcome, before: Pick<AppStatus, 'liveSlot' | 'slots'>, previousRelease: string | null): Slot | null {
  if (outcome === 'succeeded') return before.liveSlot;
  if (outcome !== 'unchanged' || before.liveSlot === null || previousRelease === null) return null;
  const standby = before.slots.find((s) => s.slot === otherSlot(before.liveSlot!));
  return standby && standby.releaseId === previousRelease && standby.state === 'running' ? standby.slot : null;
}

function report(hosts: readonly string[], outcomes: ReadonlyMap<string, HostOutcome>, details: ReadonlyMap<string, string>, ids: ReadonlyMap<string, number | null>, skipped: readonly string[], out: Output): void {
  const rows: HostReport[] = [
    ...hosts.map((host) => ({ host, outcome: outcomes.get(host)!, deploymentId: ids.get(host) ?? null, detail: details.get(host) ?? '' })),
    ...skipped.map((host) => ({ host, outcome: 'skipped' as const, deploymentId: null, detail: 'left out of this rollout' })),
  ];
  const width = Math.max(4, ...rows.map((r) => r.host.length));
  out.info(`  ${'host'.padEnd(width)}  ${'outcome'.padEnd(19)}  detail`);
  for (const r of rows) out.info(`  ${r.host.padEnd(width)}  ${r.outcome.padEnd(19)}  ${r.detail}`, { fleetHost: r });
}

async function recordAndReport(input: {
  fleet: FleetTarget; members: readonly FleetMember[]; rolloutId: string; releaseId: string; attempted: string;
  outcome: FleetRecord['outcome']; skipped: string[]; reason: string | null; kind: FleetRecord['kind'] | undefined;
}, out: Output): Promise<void> {
  const record: FleetRecord = {
    rolloutId: input.rolloutId, kind: input.kind ?? 'push', releaseId: input.releaseId, attemptedReleaseId: input.attempted, outcome: input.outcome,
    hosts: input.members.map((m) => m.name), skipped: input.skipped, env: input.fleet.env, actor: localActor(), reason: input.reason, at: new Date().toISOString(),
  };
  const failed = await writeFleetRecord(input.members, input.fleet.app, record);
  if (failed.length) out.info(`  could not write the fleet record on ${failed.join('; ')}`);
}

function verdictError(verdict: ReturnType<typeof fleetVerdict>, releaseId: string, why: string, outcomes: ReadonlyMap<string, HostOutcome>): SlipwayError {
  const code = verdict.exitCode === EXIT.rolledBack ? 'fleet_rolled_back' : verdict.exitCode === EXIT.failedBeforeSwitch ? 'rollout_aborted' : 'fleet_failed_after_switch';
  const inDoubt = [...outcomes].filter(([, o]) => o === 'in_doubt').map(([h]) => h);
  const message = verdict.exitCode === EXIT.rolledBack
    ? `${shortSha(releaseId)} was rolled back on every host that switched: ${why}`
    : verdict.exitCode === EXIT.failedBeforeSwitch
      ? `${shortSha(releaseId)} did not go live on any host: ${why}`
      : `${shortSha(releaseId)} failed (${why}) and some hosts could not go back: see the table above`;
  return new SlipwayError(code, message, {
    hint: inDoubt.length
      ? `the link to ${inDoubt.join(', ')} was lost while its rollout ran: it finishes or swaps back on its own; the next command on this environment brings it to the fleet's release`
      : 'see each host\'s history (deploy history) for the failing checks, fix the release and push again',
  });
}

/** Lines of one host's upload, named by the host; no progress bar (several hosts upload at once). */
function hostOutput(out: Output, name: string): Output {
  return {
    info: (message, data) => out.info(message.replace(/^(\s*)/, `$1[${name}] `), { host: name, ...data }),
    progress: () => undefined,
    event: (event) => out.event(event),
    result: (result, extra) => out.result(result, extra),
    data: (value) => out.data(value),
    error: (error) => out.error(error),
  };
}

/** How long each phase of a fleet push took (ms), in order: for --json and the benchmark. */
export class PhaseClock {
  private last: number;
  private readonly done: Array<[string, number]> = [];
  private readonly extra: Array<[string, number]> = [];
  constructor(startedAt: number) { this.last = startedAt; }
  mark(phase: string): void {
    const now = Date.now();
    this.done.push([phase, now - this.last]);
    this.last = now;
  }
  /** A figure that is not a span of the sequence (e.g. the connect that ran beside the pack). */
  note(name: string, ms: number): void { this.extra.push([name, ms]); }
  spans(): Record<string, number> { return Object.fromEntries([...this.done, ...this.extra]); }
}
