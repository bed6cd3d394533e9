import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type {
  AppStatus, DeploymentSummary, PromotionInfo, PromotionRecordRequest, PromotionVerdict, ReleaseListEntry, ReleaseSpecView,
} from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { shortSha } from '../../contract/names.js';
import type { Target } from '../environments.js';
import { EXIT, type ExitCode } from '../errors.js';
import { createAnnotatedTag, hasCommit, logSubjects, repoRoot, resolveCommit, tagOf } from '../git.js';
import { formatBytes, formatMs, type Output } from '../output.js';
import { prepareRelease } from '../pack.js';
import { approvalStep, gitTagName, hostLabel, pickSourceRelease } from '../promotion.js';
import { openAgentSession, type AgentSession } from '../session.js';
import { formatSpecDiff } from './diff.js';
import { followDeployment } from './follow.js';
import { deploymentRequest, report, reserveLock, targetFields, uploadHeaders, uploadPath } from './push.js';

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
}

interface Resolved {
  releaseId: string;
  manifest: ReleaseManifest;
  verdict: PromotionVerdict;
  tag: string | null;
}

/**
 * `deploy promote`: moves a release that passed the source environment to the target, byte for
 * byte: the source's gate → approval → the tarball (packed again here when that gives the same
 * sha256, else fetched from the source and verified) → upload unless the target has it → the
 * target's rollout, recorded as a promotion on both sides.
 */
export async function promote(source: Target, target: Target, options: PromoteOptions, out: Output): Promise<ExitCode> {
  const startedAt = Date.now();
  if (options.force && !options.reason) {
    throw new SlipwayError('usage', '--force needs --reason: a forced promotion is recorded, with why, on both sides', { hint: 'deploy promote --force --reason "..."' });
  }
  if (source.env === target.env && source.host.address === target.host.address && source.host.port === target.host.port && source.app === target.app) {
    throw new SlipwayError('usage', `--from and --to name the same place (${target.app} on ${hostLabel(target)})`, { hint: 'promote from one environment to another' });
  }
  const repo = await repoRoot(options.cwd).catch(() => null);
  const sourceSession = await openAgentSession(source);
  try {
    const resolved = await resolveOnSource(sourceSession, source, target, options, repo);
    const { releaseId, verdict } = resolved;
    const label = shortSha(releaseId);
    out.info(`→ promote ${source.app} [${source.env ?? '-'}] ${label}${resolved.tag ? ` (tag ${resolved.tag})` : ''} to ${target.app} [${target.env ?? '-'}] on ${hostLabel(target)}`,
      { releaseId, from: source.env, to: target.env, tag: resolved.tag });
    const gateLine = verdict.passed ? verdict.message : `${verdict.reason}: ${verdict.message}`;
    out.info(`  gate of ${source.env ?? 'the source'}: ${gateLine}`, { gate: verdict });
    const wrongSource = target.promotion !== null && source.env !== target.promotion.from;

    const targetSession = await openAgentSession(target);
    try {
      const record = (session: AgentSession, app: string, body: Omit<PromotionRecordRequest, 'releaseId' | 'fromEnv' | 'toEnv' | 'sha' | 'gate'>) =>
        session.agent.json('POST', `/apps/${app}/promotions`, {
          releaseId, fromEnv: source.env, toEnv: target.env, sha: resolved.manifest.sha, gate: gateLine, ...body,
        } satisfies PromotionRecordRequest);
      const refusal = !verdict.passed || wrongSource;
      if (refusal && !options.force) {
        const why = wrongSource ? `${target.env} promotes from ${target.promotion!.from}, not ${source.env}` : verdict.message;
        await record(targetSession, target.app, { side: 'target', event: 'refused', otherHost: hostLabel(source), reason: why }).catch(() => undefined);
        throw new SlipwayError('promotion_refused', `promotion of ${label} to ${target.env ?? target.app} refused: ${why}`, {
          hint: gateHint(verdict.reason, source.env),
          details: [`gate: ${verdict.reason}`, ...(verdict.deploymentId !== null ? [`source deployment: ${verdict.deploymentId}`] : [])],
        });
      }

      const targetStatus = await targetSession.agent.get<AppStatus>(`/apps/${target.app}`);
      if (targetStatus.liveReleaseId === releaseId) {
        out.info(`${label} is already live on ${target.env ?? target.app}: nothing to do`, { outcome: 'unchanged' });
        return EXIT.ok;
      }
      await approve(target, targetSession, sourceSession, source, resolved, targetStatus, repo, options, out);
      const forced = refusal && options.force;
      const lock = await reserveLock(targetSession.agent, target.app, releaseId, { wait: false, waitTimeoutMs: 0 }, out);
      let lockHandedOver = false;
      try {
        // Recorded once the target's lock is held: a promotion another rollout kept out leaves no record.
        if (forced) {
          out.info(`  forced past the gate: ${options.reason}`, { forced: true, reason: options.reason });
          await record(sourceSession, source.app, { side: 'source', event: 'forced', otherHost: hostLabel(target), reason: options.reason ?? null });
        }
        await record(targetSession, target.app, { side: 'target', event: forced ? 'forced' : 'promoted', otherHost: hostLabel(source), reason: options.reason ?? null });
        const shipped = await shipArtifact(sourceSession, targetSession, source, target, resolved, repo, out);
        const promotion: PromotionInfo = { from: source.env, sourceHost: hostLabel(source), forced, reason: options.reason ?? null };
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
  } finally {
    await sourceSession.close();
  }
}

/** The release REF names on the source, its manifest, the source's gate for it, and the tag it carries. */
async function resolveOnSource(session: AgentSession, source: Target, target: Target, options: PromoteOptions, repo: string | null): Promise<Resolved> {
  const app = source.app;
  let releaseId: string;
  let tag: string | null = null;
  if (options.ref === undefined) {
    const status = await session.agent.get<AppStatus>(`/apps/${app}`);
    if (!status.liveReleaseId) {
      throw new SlipwayError('release_not_found', `${app} has no live release on ${source.env ?? 'the source'}`, { hint: 'name the release: deploy promote <release|commit|tag>' });
    }
    releaseId = status.liveReleaseId;
  } else {
    const { releases } = await session.agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${app}/releases`);
    const commit = repo ? await resolveCommit(repo, options.ref).catch(() => null) : null;
    tag = repo && commit ? await tagOf(repo, options.ref) : null;
    releaseId = pickSourceRelease(app, source.env, options.ref, commit, releases);
  }
  const maxAgeMs = target.promotion && target.promotion.from === source.env ? target.promotion.maxAgeMs : null;
  const verdict = await session.agent.get<PromotionVerdict>(`/apps/${app}/releases/${releaseId}/promotion${maxAgeMs === null ? '' : `?maxAgeMs=${maxAgeMs}`}`);
  const { manifest } = await session.agent.get<{ manifest: ReleaseManifest }>(`/apps/${app}/releases/${releaseId}`);
  if (tag === null && verdict.deploymentId !== null) {
    // The tag the release was deployed by on the source travels on.
    const deployment = await session.agent.find<DeploymentSummary>(`/apps/${app}/deployments/${verdict.deploymentId}`);
    tag = deployment?.tag ?? null;
  }
  return { releaseId, manifest, verdict, tag };
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

/** The target's approval: what changes (live SHA → new SHA, commits between, spec diff), then --yes or a terminal's answer. */
async function approve(
  target: Target, targetSession: AgentSession, sourceSession: AgentSession, source: Target, resolved: Resolved,
  targetStatus: AppStatus, repo: string | null, options: PromoteOptions, out: Output,
): Promise<void> {
  const step = approvalStep({ required: target.requireApproval, yes: options.yes, interactive: options.interactive, env: target.env });
  if (step === 'not_required') return;
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
      await sourceSession.agent.get<ReleaseSpecView>(`/apps/${source.app}/releases/${resolved.releaseId}/spec`),
    ];
    lines.push(...formatSpecDiff(from, to).split('\n').map((l) => `  ${l}`));
  }
  out.info(lines.join('\n'), { approval: { liveSha, newSha: resolved.manifest.sha } });
  if (step === 'given') {
    out.info('  approved (--yes)', { approved: 'yes-flag' });
    return;
  }
  if (!await options.confirm(`Promote ${shortSha(resolved.releaseId)} to ${target.env ?? target.app}? [y/N] `)) {
    throw new SlipwayError('approval_declined', `promotion to ${target.env ?? target.app} not approved`, { hint: 'nothing was uploaded or changed' });
  }
}

/**
 * Gets the release onto the target unless it has it: packed here when the commit is at hand and
 * packing it gives the sha256 the source verified (no transfer from the source), else fetched from
 * the source's kept tarball and verified; then uploaded.
 */
async function shipArtifact(
  sourceSession: AgentSession, targetSession: AgentSession, source: Target, target: Target, resolved: Resolved, repo: string | null, out: Output,
): Promise<{ uploadMs: number | null; uploadedBytes: number }> {
  const { releaseId, manifest, verdict } = resolved;
  if (await targetSession.agent.find(`/apps/${target.app}/releases/${releaseId}`)) {
    out.info(`  release ${shortSha(releaseId)} is already on the target: nothing uploaded`, { uploadedBytes: 0 });
    return { uploadMs: null, uploadedBytes: 0 };
  }
  if (!verdict.sha256) throw new SlipwayError('release_not_found', `the source does not have ${shortSha(releaseId)}`, { hint: 'deploy releases --env <source>' });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-promote-'));
  try {
    let file = await packAgain(repo, source, manifest, verdict.sha256, dir, out);
    if (!file) {
      if (verdict.artifactBytes === null) {
        throw new SlipwayError('artifact_missing', `${shortSha(releaseId)} cannot be packed here to the same bytes, and ${source.env ?? 'the source'} keeps no tarball of it`, {
          hint: `push it again to ${source.env ?? 'the source'} (its agent now keeps the tarball), or promote from a checkout that has commit ${manifest.shortSha}`,
        });
      }
      const started = Date.now();
      file = path.join(dir, `${releaseId}.tar.gz`);
      const got = await sourceSession.agent.download(`/apps/${source.app}/releases/${releaseId}/artifact`, file, verdict.sha256);
      out.info(`  fetched ${formatBytes(got.bytes)} from ${source.env ?? 'the source'} in ${formatMs(Date.now() - started)} (sha256 ${got.sha256.slice(0, 16)}…, verified)`,
        { artifact: 'fetched', bytes: got.bytes, sha256: got.sha256 });
    }
    const bytes = (await fs.stat(file)).size;
    const started = Date.now();
    await targetSession.agent.upload(uploadPath(target, releaseId, resolved.tag), file, bytes, verdict.sha256,
      ({ sent, total, stalledMs }) => out.progress('upload', sent, total, started, stalledMs), uploadHeaders(target.specOverrides));
    const uploadMs = Date.now() - started;
    out.info(`  uploaded and verified in ${formatMs(uploadMs)} (sha256 ${verdict.sha256.slice(0, 16)}…, same as ${source.env ?? 'the source'})`,
      { uploadMs, uploadedBytes: bytes, sha256: verdict.sha256 });
    return { uploadMs, uploadedBytes: bytes };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The tarball packed again from the local commit, when that is possible and gives exactly the
 * source's bytes; null otherwise (no repository or commit here, a dirty or controller-built
 * release, or other bytes: another controller version, other build output).
 */
async function packAgain(repo: string | null, source: Target, manifest: ReleaseManifest, sha256: string, dir: string, out: Output): Promise<string | null> {
  if (!repo || manifest.dirty || manifest.build?.on === 'controller' || !await hasCommit(repo, manifest.sha)) return null;
  const started = Date.now();
  const prepared = await prepareRelease({ repo, treeish: manifest.sha, include: source.include, mtime: new Date(manifest.commitTime) }).catch(() => null);
  if (!prepared) return null;
  try {
    if (prepared.contentDigest !== manifest.contentDigest) {
      out.info('  packing here gives other files than the source has (build output?): fetching its tarball', { artifact: 'differs' });
      return null;
    }
    const packed = await prepared.seal(manifest);
    if (packed.sha256 !== sha256) {
      out.info('  packing here gives other bytes than the source has: fetching its tarball', { artifact: 'differs', localSha256: packed.sha256 });
      return null;
    }
    const file = path.join(dir, path.basename(packed.file));
    await fs.rename(packed.file, file);
    out.info(`  packed ${formatBytes(packed.bytes)} here in ${formatMs(Date.now() - started)}: sha256 ${sha256.slice(0, 16)}…, the same as the source's (nothing fetched)`,
      { artifact: 'packed', sha256 });
    return file;
  } finally {
    await prepared.cleanup();
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
