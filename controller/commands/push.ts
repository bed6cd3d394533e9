import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { AppStatus, LockInfo } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { shortSha, type Slot } from '../../contract/names.js';
import { VERSION } from '../../contract/version.js';
import type { AgentClient } from '../agent-client.js';
import type { Target } from '../environments.js';
import { encodeSpecOverrides, mergeSpecOverrides, overrideProblemLines, SPEC_OVERRIDES_HEADER, type SpecOverrides } from '../../contract/spec-overrides.js';
import { canonicalJson, SPEC_FILE } from '../../contract/spec.js';
import { EXIT, exitCodeOfResult, type ExitCode } from '../errors.js';
import { commitInfo, currentBranch, hasTrackedChanges, repoRoot, resolveCommit, snapshotWorkTree, tagOf } from '../git.js';
import { buildManifest, type ReleaseExtras } from '../manifest.js';
import { loadSpec, type LoadedSpec } from '../build/spec.js';
import { InstallCache, installCacheRoot } from '../build/install-cache.js';
import { buildRelease, type BuiltTree } from '../build/run.js';
import { describePlatform } from '../build/platform.js';
import type { Output } from '../output.js';
import { formatBytes, formatMs } from '../output.js';
import { prepareRelease, type PreparedRelease } from '../pack.js';
import { openAgentSession } from '../session.js';
import { followDeployment, type FollowOutcome } from './follow.js';

export interface PushOptions {
  slot?: Slot;
  sha: string;
  allowDirty: boolean;
  cwd: string;
  /** Wait for another rollout's lock instead of failing. */
  wait: boolean;
  waitTimeoutMs: number;
  /** Return once traffic has moved; the agent still runs the watch window. */
  detach: boolean;
}

/** A release packed for a push: its manifest, its files ready to seal, and what the summary says. */
export interface PushRelease { manifest: ReleaseManifest; prepared: PreparedRelease; startedAt: number; prepareMs: number; tag: string | null }

/** `deploy push`: pack the commit, ship it unless the host has it, roll it out, report. */
export async function push(config: Target, options: PushOptions, out: Output): Promise<ExitCode> {
  const release = await packForPush(config, options, out, `${config.host.user}@${config.host.address}:${config.host.port}`);
  try {
    return await rollOut(config, options, out, release);
  } finally {
    await release.prepared.cleanup();
  }
}

/**
 * Resolves the commit, checks the spec and the environment's overrides, builds and packs it: all
 * before any connection is made, so a bad spec or a failing build never reaches a host. Shared by a
 * single-host push and a fleet push (packed once for every host). The caller cleans `prepared` up.
 */
export async function packForPush(config: Target, options: PushOptions, out: Output, destination: string): Promise<PushRelease> {
  const startedAt = Date.now();
  const repo = await repoRoot(options.cwd);
  const sha = await resolveCommit(repo, options.sha);
  let dirtySnapshot: string | null = null;
  if (options.sha === 'HEAD' && await hasTrackedChanges(repo)) {
    if (!options.allowDirty) {
      throw new SlipwayError('dirty_tree', `${repo} has uncommitted changes, so HEAD (${shortSha(sha)}) is not what would be deployed`, {
        hint: 'commit or stash them, or pass --allow-dirty to deploy the work tree as a release tagged "dirty"',
      });
    }
    dirtySnapshot = await snapshotWorkTree(repo);
  }
  const branch = options.sha === 'HEAD' ? await currentBranch(repo) : null;
  const tag = await tagOf(repo, options.sha);
  const info = await commitInfo(repo, sha);
  const app = config.app;
  const treeish = dirtySnapshot ?? sha;
  const label = `${shortSha(sha)}${dirtySnapshot ? ' (dirty)' : ''}`;
  // The spec is read and checked, and the build run, before anything is packed or any connection
  // is made: a bad spec or a failing build never reaches the host.
  const loaded = await loadSpec(repo, treeish, label);
  if (loaded) checkOverridesFit(config, loaded, label);
  const prepareStarted = Date.now();
  const built = loaded?.spec.build?.on === 'controller'
    ? await buildRelease({ repo, treeish, label, build: loaded.spec.build, commitTime: info.commitTime, env: process.env, progress: buildProgress(out),
        installCache: new InstallCache(installCacheRoot(process.env, os.homedir()), app) })
    : null;
  // Packed before anything else: the release id covers the files, not only the commit.
  let prepared: PreparedRelease;
  try {
    if (built) out.info(`  built ${label} in ${formatMs(built.totalMs)} on ${describePlatform(built.platform)}`, { buildMs: built.totalMs, platform: built.platform });
    prepared = await prepareRelease({ repo, treeish, include: config.include, mtime: new Date(info.commitTime), ...(built ? { builtDir: built.dir } : {}) });
  } finally {
    await built?.cleanup();
  }
  const prepareMs = Date.now() - prepareStarted;
  try {
    // The artifact names the project, not the environment's box app: the same release everywhere.
    const manifest = buildManifest({ app: config.project, sha, dirtySnapshot, branch, ...info }, prepared.contentDigest, VERSION, releaseExtras(loaded, built));
    const where = config.env === null ? '' : ` [${config.env}]`;
    out.info(`→ ${app}${where} ${shortSha(manifest.releaseId)}${dirtySnapshot ? ' (dirty)' : ''}${branch ? ` on ${branch}` : ''}${tag ? ` (tag ${tag})` : ''} to ${destination}`,
      { app, releaseId: manifest.releaseId, sha, host: destination, tag, specDigest: manifest.specDigest });
    return { manifest, prepared, startedAt, prepareMs, tag };
  } catch (error) {
    await prepared.cleanup();
    throw error;
  }
}

/** Pure: refuses (spec_invalid) an environment's overrides that do not fit the release's spec, before anything is built or packed. */
export function checkOverridesFit(config: Pick<Target, 'env' | 'specOverrides'>, loaded: LoadedSpec, label: string): void {
  if (!config.specOverrides) return;
  const merged = mergeSpecOverrides(loaded.spec, config.specOverrides);
  if (merged.ok) return;
  const source = `environments.${config.env ?? '?'}.spec`;
  throw new SlipwayError('spec_invalid', `${SPEC_FILE} in ${label} with ${source} has ${merged.problems.length} problem(s); nothing was built or uploaded`, {
    details: overrideProblemLines(merged.problems, source, SPEC_FILE),
    hint: `fix ${source} in deploy.config.json (or ${SPEC_FILE})`,
  });
}

/** Pure: the manifest's v3 fields: the spec and how the release was built. */
export function releaseExtras(loaded: LoadedSpec | null, built: Pick<BuiltTree, 'platform' | 'steps'> | null): ReleaseExtras {
  const on = loaded?.spec.build?.on;
  return {
    spec: loaded?.spec ?? null,
    specDigest: loaded?.digest ?? null,
    build: on === 'controller' && built ? { on, platform: built.platform, steps: built.steps }
      : on === 'host' ? { on, platform: null, steps: [] } : null,
  };
}

/** Build progress as output lines: each step, and each line its program prints, under its directory. */
function buildProgress(out: Output) {
  return {
    step: (message: string, data: Record<string, unknown>) => out.info(message, { build: data }),
    line: (step: { dir: string }, text: string) => out.info(`  build: [${step.dir}] | ${text}`, { build: { dir: step.dir, output: text } }),
  };
}

/** Uploads the release unless the host has it, then runs the rollout and reports it. */
async function rollOut(
  config: Target, options: PushOptions, out: Output,
  release: PushRelease,
): Promise<ExitCode> {
  const { releaseId } = release.manifest;
  const { app } = config;
  const session = await openAgentSession(config);
  try {
    const status = await session.agent.get<AppStatus>(`/apps/${app}`);
    if (status.liveReleaseId === releaseId && options.slot === undefined && sameOverrides(status, config)) {
      out.info(`${shortSha(releaseId)} is already live on ${status.liveSlot}: nothing to do`, { outcome: 'unchanged' });
      return EXIT.ok;
    }

    // The lock is held from before the upload to the end of the watch window.
    const lock = await reserveLock(session.agent, app, releaseId, options, out);
    let lockHandedOver = false;
    try {
      let uploadMs: number | null = null;
      let uploadedBytes = 0;
      const existing = await session.agent.find(`/apps/${app}/releases/${releaseId}`);
      if (existing) {
        out.info(`  release ${shortSha(releaseId)} is already on the host: nothing uploaded`, { uploadedBytes: 0 });
      } else {
        const sealStarted = Date.now();
        const packed = await release.prepared.seal(release.manifest);
        const packMs = release.prepareMs + Date.now() - sealStarted;
        out.info(`  packed ${formatBytes(packed.bytes)} in ${formatMs(packMs)} (sha256 ${packed.sha256.slice(0, 16)}…)`);
        const uploadStarted = Date.now();
        await session.agent.upload(uploadPath(config, releaseId, release.tag), packed.file, packed.bytes, packed.sha256,
          ({ sent, total, stalledMs }) => out.progress('upload', sent, total, uploadStarted, stalledMs), uploadHeaders(config.specOverrides));
        uploadMs = Date.now() - uploadStarted;
        uploadedBytes = packed.bytes;
        out.info(`  uploaded and verified in ${formatMs(uploadMs)}`, { uploadMs, uploadedBytes });
      }
      // The agent alone picks the standby slot (from its state when the rollout starts, not from a
      // status read before a --wait), unless the user named one.
      const followed = await followDeployment(session.agent, `/apps/${app}/deployments`, deploymentRequest(releaseId, lock.lockId, options.slot, targetFields(config, release.tag)), out, {
        detachAfterSwitch: options.detach,
        // From its first line on, the rollout owns the lock and releases it when it ends.
        onAccepted: () => { lockHandedOver = true; },
      });
      return report(followed, out, { uploadMs, uploadedBytes, totalMs: Date.now() - release.startedAt });
    } finally {
      if (!lockHandedOver) await session.agent.delete(`/apps/${app}/lock?lockId=${lock.lockId}`).catch(() => undefined);
    }
  } finally {
    await session.close();
  }
}

/** Pure: whether the host runs the app with the environment's overrides as configured (always, without environments). */
export function sameOverrides(status: Pick<AppStatus, 'env' | 'specOverrides'>, config: Pick<Target, 'env' | 'specOverrides'>): boolean {
  if (config.env === null) return true;
  return status.env === config.env && canonicalJson(status.specOverrides ?? {}) === canonicalJson(config.specOverrides ?? {});
}

/** What a deployment request says of its target: the environment, its spec overrides, the tag. */
export interface TargetFields { env?: string; specOverrides?: SpecOverrides; tag?: string }

/** Pure: the target fields of a request; none without environments and tag (what older agents take). */
export function targetFields(config: Pick<Target, 'env' | 'specOverrides'>, tag: string | null): TargetFields {
  return {
    ...(config.env !== null ? { env: config.env, specOverrides: config.specOverrides ?? {} } : {}),
    ...(tag ? { tag } : {}),
  };
}

/** Pure: the body of a deployment request; a slot only when the user asked for one. */
export function deploymentRequest(releaseId: string, lockId: string, slot: Slot | undefined, fields: TargetFields = {}):
  { releaseId: string; lockId: string; slot?: Slot } & TargetFields {
  return { releaseId, lockId, ...(slot ? { slot } : {}), ...fields };
}

/** Pure: where a release is uploaded: the box app's URL; the project (manifest.app), env and tag in the query when environments are used. */
export function uploadPath(config: Pick<Target, 'app' | 'project' | 'env'>, releaseId: string, tag: string | null): string {
  const base = `/apps/${config.app}/releases/${releaseId}`;
  if (config.env === null && config.project === config.app) return base;
  const query = new URLSearchParams({ project: config.project, ...(config.env !== null ? { env: config.env } : {}), ...(tag ? { tag } : {}) });
  return `${base}?${query.toString()}`;
}

/** Pure: the upload's extra headers: the overrides the agent's policy check applies before storing. */
export function uploadHeaders(overrides: SpecOverrides | null): Record<string, string> {
  const encoded = encodeSpecOverrides(overrides);
  return encoded === null ? {} : { [SPEC_OVERRIDES_HEADER]: encoded };
}

export async function reserveLock(agent: AgentClient, app: string, releaseId: string, options: Pick<PushOptions, 'wait' | 'waitTimeoutMs'>, out: Output): Promise<LockInfo> {
  const deadline = Date.now() + options.waitTimeoutMs;
  let announced = false;
  for (;;) {
    try {
      return (await agent.json<{ lock: LockInfo }>('POST', `/apps/${app}/lock`, { releaseId })).lock;
    } catch (error) {
      if (!(error instanceof SlipwayError) || error.code !== 'app_locked' || !options.wait || Date.now() > deadline) throw error;
      if (!announced) out.info(`  waiting: ${error.message}`);
      announced = true;
      await delay(1000);
    }
  }
}

export function report(followed: FollowOutcome, out: Output, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): ExitCode {
  if (followed.kind === 'detached') {
    out.info(`switched; the agent keeps watching deployment ${followed.deploymentId} (deploy history shows its outcome)`, { outcome: 'detached', deploymentId: followed.deploymentId });
    return EXIT.ok;
  }
  out.result(followed.result, extra);
  return exitCodeOfResult(followed.result);
}
