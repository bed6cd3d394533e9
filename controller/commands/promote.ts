import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AppStatus, PromotionInfo, PromotionRecordRequest, ReleaseSpecView } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { shortSha } from '../../contract/names.js';
import type { Target } from '../environments.js';
import { leaveOutUnreachable, oneLine, PhaseClock, rollOutFleet } from '../fleet/push.js';
import { readFleet } from '../fleet/reconcile.js';
import { openFleet, unreachableError } from '../fleet/session.js';
import { tarballRelease } from '../fleet/tarball-release.js';
import { hostName, type FleetTarget } from '../fleet/target.js';
import { EXIT, type ExitCode } from '../errors.js';
import { createAnnotatedTag, hasCommit, logSubjects, repoRoot } from '../git.js';
import { formatMs, type Output } from '../output.js';
import { approvalStep, type ApprovalStep, gitTagName, hostLabel } from '../promotion.js';
import { openAgentSession, type AgentSession } from '../session.js';
import { formatSpecDiff } from './diff.js';
import { obtainArtifact } from './promote-artifact.js';
import { openSource, type Resolved, type SourceSide } from './promote-source.js';
import { followDeployment } from './follow.js';
import { deploymentRequest, report, reserveLock, sameOverrides, targetFields, uploadHeaders, uploadPath } from './push.js';

export interface PromoteOptions {
  /** Release id or prefix, commit, tag; undefined: the source's live release. */
  ref?: string;
  force: boolean;
  reason?: string;
  yes: boolean;
  cwd: string;
  detach: boolean;
  /** Whether stdin is a terminal to ask for approval on. */
  interactive: boolean;
  /** Asks the question on the terminal; true when answered yes. */
  confirm: (question: string) => Promise<boolean>;
  /** A fleet as target: go on without hosts not reached before any switch (named in the fleet record as skipped). */
  skipUnreachable?: boolean;
}

/**
 * `deploy promote`: moves a release that passed the source environment to the target, byte for
 * byte: the source's gate → approval → the tarball (packed again here when that gives the same
 * sha256, else fetched from the source and verified) → upload unless the target has it → the
 * target's rollout, recorded as a promotion on both sides. Either side may be a fleet: a source
 * fleet vouches for a release only when every host serves it and it passed on every host; a target
 * fleet gets it by the fleet rollout (controller/fleet/push.ts), gate and approval asked once.
 */
export async function promote(source: FleetTarget, target: FleetTarget, options: PromoteOptions, out: Output): Promise<ExitCode> {
  const startedAt = Date.now();
  if (options.force && !options.reason) {
    throw new SlipwayError('usage', '--force needs --reason: a forced promotion is recorded, with why, on both sides', { hint: 'deploy promote --force --reason "..."' });
  }
  const targetAddresses = new Set(target.hosts.map(hostLabel));
  const shared = source.hosts.find((h) => targetAddresses.has(hostLabel(h)));
  if (source.env === target.env && source.app === target.app && shared) {
    throw new SlipwayError('usage', `--from and --to name the same place (${target.app} on ${hostLabel(shared)})`, { hint: 'promote from one environment to another' });
  }
  if (options.detach && target.hosts.length > 1) {
    throw new SlipwayError('usage', `--no-wait does not apply to a fleet (${target.env ?? 'the target'} has ${target.hosts.length} hosts): the controller drives the batches`, { hint: 'drop --no-wait' });
  }
  const repo = await repoRoot(options.cwd).catch(() => null);
  const side = await openSource(source, target, options, repo);
  try {
    if (target.hosts.length === 1) return await promoteToHost(side, target.hosts[0]!, options, repo, out, startedAt);
    return await promoteToFleet(side, target, options, repo, out, startedAt);
  } finally {
    await side.close();
  }
}

/** The first lines of a promotion: what goes where, and the source's gate; the gate in words (what records carry). */
function announce(side: SourceSide, targetApp: string, targetEnv: string | null, where: string, out: Output): string {
  const { resolved } = side;
  const { releaseId, verdict } = resolved;
  out.info(`→ promote ${side.host.app} [${side.host.env ?? '-'}] ${shortSha(releaseId)}${resolved.tag ? ` (tag ${resolved.tag})` : ''} to ${targetApp} [${targetEnv ?? '-'}] on ${where}`,
    { releaseId, from: side.host.env, to: targetEnv, tag: resolved.tag });
  const gateLine = verdict.passed ? verdict.message : `${verdict.reason}: ${verdict.message}`;
  out.info(`  gate of ${side.host.env ?? 'the source'}: ${gateLine}`, { gate: verdict });
  return oneLine(gateLine, 1000);
}

/** Records one side's record of this promotion (POST /apps/:app/promotions). */
function recordPromotion(session: AgentSession, app: string, side: SourceSide, targetEnv: string | null, gate: string,
  body: Omit<PromotionRecordRequest, 'releaseId' | 'fromEnv' | 'toEnv' | 'sha' | 'gate'>): Promise<unknown> {
  return session.agent.json('POST', `/apps/${app}/promotions`, {
    releaseId: side.resolved.releaseId, fromEnv: side.host.env, toEnv: targetEnv, sha: side.resolved.manifest.sha, gate, ...body, otherHost: oneLine(body.otherHost, 300),
  } satisfies PromotionRecordRequest);
}

/** Why the gate (or the target's promotion.from) refuses, or null when it lets the promotion through. */
function refusalOf(side: SourceSide, target: Pick<Target, 'env' | 'promotion'>): string | null {
  const wrongSource = target.promotion !== null && side.host.env !== target.promotion.from;
  if (wrongSource) return `${target.env} promotes from ${target.promotion!.from}, not ${side.host.env}`;
  return side.resolved.verdict.passed ? null : side.resolved.verdict.message;
}

function refusedError(side: SourceSide, targetName: string, why: string): SlipwayError {
  const { verdict } = side.resolved;
  return new SlipwayError('promotion_refused', `promotion of ${shortSha(side.resolved.releaseId)} to ${targetName} refused: ${why}`, {
    hint: gateHint(verdict.reason, side.host.env),
    details: [`gate: ${verdict.reason}`, ...(verdict.deploymentId !== null ? [`source deployment: ${verdict.deploymentId}`] : [])],
  });
}

/** A promotion to one host: its lock, the artifact, the deployment followed as a push's. */
async function promoteToHost(side: SourceSide, target: Target, options: PromoteOptions, repo: string | null, out: Output, startedAt: number): Promise<ExitCode> {
  const { resolved } = side;
  const { releaseId } = resolved;
  const label = shortSha(releaseId);
  const gate = announce(side, target.app, target.env, hostLabel(target), out);
  const targetSession = await openAgentSession(target);
  try {
    const record = (session: AgentSession, app: string, body: Omit<PromotionRecordRequest, 'releaseId' | 'fromEnv' | 'toEnv' | 'sha' | 'gate'>) =>
      recordPromotion(session, app, side, target.env, gate, body);
    const refusal = refusalOf(side, target);
    if (refusal !== null && !options.force) {
      await record(targetSession, target.app, { side: 'target', event: 'refused', otherHost: side.label, reason: refusal }).catch(() => undefined);
      throw refusedError(side, target.env ?? target.app, refusal);
    }

    const targetStatus = await targetSession.agent.get<AppStatus>(`/apps/${target.app}`);
    if (targetStatus.liveReleaseId === releaseId) {
      out.info(`${label} is already live on ${target.env ?? target.app}: nothing to do`, { outcome: 'unchanged' });
      return EXIT.ok;
    }
    await approve(target, targetSession, side, targetStatus, repo, options, out);
    const forced = refusal !== null && options.force;
    const lock = await reserveLock(targetSession.agent, target.app, releaseId, { wait: false, waitTimeoutMs: 0 }, out);
    let lockHandedOver = false;
    try {
      // Recorded once the target's lock is held: a promotion another rollout kept out leaves no record.
      if (forced) {
        out.info(`  forced past the gate: ${options.reason}`, { forced: true, reason: options.reason });
        await record(side.session, side.host.app, { side: 'source', event: 'forced', otherHost: hostLabel(target), reason: options.reason ?? null });
      }
      await record(targetSession, target.app, { side: 'target', event: forced ? 'forced' : 'promoted', otherHost: side.label, reason: options.reason ?? null });
      const shipped = await shipArtifact(side, targetSession, target, repo, out);
      const promotion: PromotionInfo = { from: side.host.env, sourceHost: oneLine(side.label, 300), forced, reason: options.reason ?? null };
      const followed = await followDeployment(targetSession.agent, `/apps/${target.app}/deployments`,
        { ...deploymentRequest(releaseId, lock.lockId, undefined, targetFields(target, resolved.tag)), promotion }, out, {
          detachAfterSwitch: options.detach,
          onAccepted: () => { lockHandedOver = true; },
        });
      const code = report(followed, out, { uploadMs: shipped.uploadMs, uploadedBytes: shipped.uploadedBytes, totalMs: Date.now() - startedAt });
      if (code === EXIT.ok && target.gitTag && repo) await tagCommit(repo, target, resolved, out);
      return code;
    } finally {
      if (!lockHandedOver) await targetSession.agent.delete(`/apps/${target.app}/lock?lockId=${lock.lockId}`).catch(() => undefined);
    }
  } finally {
    await targetSession.close();
  }
}

/** How long the fleet's reading taken before approval may be when the rollout plans from it (else it is read again). */
const READ_FRESH_MS = 10_000;

/**
 * A promotion to a fleet: every host reached (or nothing is done; --skip-unreachable goes on without
 * the hosts not reached, said before the approval and recorded as skipped), the gate and the approval once,
 * the promotion recorded once on the target (its primary: run-once work, so one notification),
 * then the fleet rollout with every host's deployment carrying `promotion`: reconcile-first, fleet
 * lock, the verified tarball uploaded to each host that lacks it, batches, revert-all on failure,
 * the fleet record (kind promote).
 */
async function promoteToFleet(side: SourceSide, target: FleetTarget, options: PromoteOptions, repo: string | null, out: Output, startedAt: number): Promise<ExitCode> {
  const { resolved } = side;
  const { releaseId, verdict } = resolved;
  const name = target.env ?? target.app;
  const gate = announce(side, target.app, target.env, `${target.hosts.length} host(s): ${target.hosts.map(hostName).join(', ')}`, out);
  const session = await openFleet(target);
  try {
    const refused = `promotion to ${name} refused, nothing changed`;
    if (session.members.length === 0) throw unreachableError(session.unreachable, refused);
    const skipped = leaveOutUnreachable(session.unreachable, options.skipUnreachable === true, refused, out);
    const primary = session.member(target.rollout.primary) ?? session.members[0]!;
    const reading = readFleet(session, target);
    reading.catch(() => undefined);
    const record = (body: Omit<PromotionRecordRequest, 'releaseId' | 'fromEnv' | 'toEnv' | 'sha' | 'gate'>) => recordPromotion(primary.session, target.app, side, target.env, gate, body);
    const refusal = refusalOf(side, primary.target);
    if (refusal !== null && !options.force) {
      await record({ side: 'target', event: 'refused', otherHost: side.label, reason: refusal }).catch(() => undefined);
      throw refusedError(side, name, refusal);
    }
    const read = await reading;
    let readAt = Date.now();
    const statusOf = (host: string) => read.snapshots.find((s) => s.name === host)?.status ?? null;
    if (session.members.every((m) => statusOf(m.name)?.liveReleaseId === releaseId && sameOverrides(statusOf(m.name)!, m.target))) {
      out.info(`${shortSha(releaseId)} is already live on every ${skipped.length ? 'reachable ' : ''}host of ${name}${skipped.length ? ` (not reached: ${skipped.join(', ')})` : ''}: nothing to do`,
        { outcome: 'unchanged', skipped });
      return EXIT.ok;
    }
    const primaryStatus = statusOf(primary.name) ?? await primary.session.agent.get<AppStatus>(`/apps/${target.app}`);
    if (await approve(primary.target, primary.session, side, primaryStatus, repo, options, out) === 'prompt') readAt = 0;
    if (!verdict.sha256) throw new SlipwayError('release_not_found', `the source does not have ${shortSha(releaseId)}`, { hint: `deploy releases --env ${side.host.env ?? '<source>'}` });
    const forced = refusal !== null && options.force;
    const promotion: PromotionInfo = { from: side.host.env, sourceHost: oneLine(side.label, 300), forced, reason: options.reason ?? null };
    const release = tarballRelease({ manifest: resolved.manifest, tag: resolved.tag, sha256: verdict.sha256, startedAt, obtain: (dir) => obtainArtifact(side, repo, dir, out) });
    try {
      const code = await rollOutFleet(target, session, release, {
        skipUnreachable: options.skipUnreachable === true, hosts: null, reason: options.reason ?? null, wait: false, waitTimeoutMs: 0, promotion, kind: 'promote',
        // Recorded once the fleet lock is held (a promotion another rollout kept out leaves no record), once per side.
        onLocked: async () => {
          if (forced) {
            out.info(`  forced past the gate: ${options.reason}`, { forced: true, reason: options.reason });
            await record({ side: 'target', event: 'forced', otherHost: side.label, reason: options.reason ?? null });
            await recordPromotion(side.session, side.host.app, side, target.env, gate,
              { side: 'source', event: 'forced', otherHost: `${name}: ${session.members.map((m) => m.name).join(', ')}`, reason: options.reason ?? null });
          } else {
            await record({ side: 'target', event: 'promoted', otherHost: side.label, reason: options.reason ?? null });
          }
        },
      }, skipped, out, new PhaseClock(startedAt), Date.now() - readAt <= READ_FRESH_MS ? Promise.resolve(read) : readFleet(session, target));
      if (code === EXIT.ok && primary.target.gitTag && repo) await tagCommit(repo, primary.target, resolved, out);
      return code;
    } finally {
      await release.prepared.cleanup();
    }
  } finally {
    await session.close();
  }
}

function gateHint(reason: string, sourceEnv: string | null): string {
  const env = sourceEnv ?? '<source>';
  switch (reason) {
    case 'never_deployed': return `deploy it to ${env} first (deploy push --env ${env}), let its watch window pass, then promote`;
    case 'still_watching': return `wait for its watch window on ${env} to end (deploy history --env ${env}), then promote`;
    case 'too_old': return `deploy it to ${env} again (deploy rollback --env ${env} --to <release>, or a fresh push) so it passes there recently`;
    default: return `fix it and pass ${env} with a new release; or, knowing why, deploy promote --force --reason "..." (recorded on both sides)`;
  }
}

/**
 * The target's approval: what changes (live SHA → new SHA, commits between, spec diff), then --yes
 * or a terminal's answer. Of a fleet, asked once, against its primary's live release.
 */
async function approve(
  target: Target, targetSession: AgentSession, side: SourceSide, targetStatus: AppStatus, repo: string | null, options: PromoteOptions, out: Output,
): Promise<ApprovalStep> {
  const { resolved } = side;
  const step = approvalStep({ required: target.requireApproval, yes: options.yes, interactive: options.interactive, env: target.env });
  if (step === 'not_required') return step;
  const live = targetStatus.liveReleaseId;
  const liveSha = live ? (await targetSession.agent.get<{ manifest: ReleaseManifest }>(`/apps/${target.app}/releases/${live}`)).manifest.sha : null;
  const lines = [`${target.env ?? target.app} requires approval:`, `  ${liveSha ? shortSha(liveSha) : '(nothing live)'} → ${shortSha(resolved.manifest.sha)}`];
  if (liveSha && repo && await hasCommit(repo, liveSha) && await hasCommit(repo, resolved.manifest.sha)) {
    const subjects = await logSubjects(repo, liveSha, resolved.manifest.sha, 30);
    lines.push(subjects.length ? '  commits:' : '  commits: none (the new commit is not ahead of the live one)', ...subjects.map((s) => `    ${s}`));
  }
  if (live) {
    const [from, to] = [
      await targetSession.agent.get<ReleaseSpecView>(`/apps/${target.app}/releases/${live}/spec`),
      await side.session.agent.get<ReleaseSpecView>(`/apps/${side.host.app}/releases/${resolved.releaseId}/spec`),
    ];
    lines.push(...formatSpecDiff(from, to).split('\n').map((l) => `  ${l}`));
  }
  out.info(lines.join('\n'), { approval: { liveSha, newSha: resolved.manifest.sha } });
  if (step === 'given') {
    out.info('  approved (--yes)', { approved: 'yes-flag' });
    return step;
  }
  if (!await options.confirm(`Promote ${shortSha(resolved.releaseId)} to ${target.env ?? target.app}? [y/N] `)) {
    throw new SlipwayError('approval_declined', `promotion to ${target.env ?? target.app} not approved`, { hint: 'nothing was uploaded or changed' });
  }
  return step;
}

/**
 * Gets the release onto the target unless it has it (obtainArtifact), then uploads it whole,
 * verified by the agent against the source's sha256.
 */
async function shipArtifact(side: SourceSide, targetSession: AgentSession, target: Target, repo: string | null, out: Output): Promise<{ uploadMs: number | null; uploadedBytes: number }> {
  const { releaseId, verdict } = side.resolved;
  if (await targetSession.agent.find(`/apps/${target.app}/releases/${releaseId}`)) {
    out.info(`  release ${shortSha(releaseId)} is already on the target: nothing uploaded`, { uploadedBytes: 0 });
    return { uploadMs: null, uploadedBytes: 0 };
  }
  if (!verdict.sha256) throw new SlipwayError('release_not_found', `the source does not have ${shortSha(releaseId)}`, { hint: `deploy releases --env ${side.host.env ?? '<source>'}` });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-promote-'));
  try {
    const file = await obtainArtifact(side, repo, dir, out);
    const bytes = (await fs.stat(file)).size;
    const started = Date.now();
    await targetSession.agent.upload(uploadPath(target, releaseId, side.resolved.tag), file, bytes, verdict.sha256,
      ({ sent, total, stalledMs }) => out.progress('upload', sent, total, started, stalledMs), uploadHeaders(target.specOverrides));
    const uploadMs = Date.now() - started;
    out.info(`  uploaded and verified in ${formatMs(uploadMs)} (sha256 ${verdict.sha256.slice(0, 16)}…, same as ${side.host.env ?? 'the source'})`,
      { uploadMs, uploadedBytes: bytes, sha256: verdict.sha256 });
    return { uploadMs, uploadedBytes: bytes };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Tags the promoted commit per the target's gitTag pattern; says how to push it (never pushes). */
async function tagCommit(repo: string, target: Target, resolved: Resolved, out: Output): Promise<void> {
  const name = gitTagName(target.gitTag!, { env: target.env, sha: resolved.manifest.sha, releaseId: resolved.releaseId, at: new Date() });
  try {
    await createAnnotatedTag(repo, name, resolved.manifest.sha, `deployed ${resolved.releaseId} to ${target.env ?? target.app}`);
    out.info(`  tagged ${shortSha(resolved.manifest.sha)} as ${name}; push it with: git push origin ${name}`, { gitTag: name });
  } catch (error) {
    out.info(`  could not tag ${name}: ${(error as Error).message}`, { gitTag: null });
  }
}
