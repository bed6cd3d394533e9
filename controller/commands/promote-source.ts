// The source side of `deploy promote`: the release a reference names there, its gate, the host
// (of a fleet: the hosts) it is taken from.
import type { AppStatus, DeploymentSummary, PromotionVerdict, ReleaseListEntry } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import type { Target } from '../environments.js';
import { readFleet } from '../fleet/reconcile.js';
import { newestRecord } from '../fleet/record.js';
import { openFleet, unreachableError, type FleetMiss } from '../fleet/session.js';
import type { FleetTarget } from '../fleet/target.js';
import { resolveCommit, tagOf } from '../git.js';
import { fleetGate, fleetSourceRelease, hostLabel, pickSourceRelease } from '../promotion.js';
import { openAgentSession, type AgentSession } from '../session.js';
import type { PromoteOptions } from './promote.js';

/** The release a promotion moves, as the source names it: its manifest, the source's gate, its tag. */
export interface Resolved {
  releaseId: string;
  manifest: ReleaseManifest;
  verdict: PromotionVerdict;
  tag: string | null;
}

/** The source of a promotion, resolved: the host the release is taken from, and what the gate said. */
export interface SourceSide {
  /** The host the artifact comes from (of a fleet: its primary, or the first host keeping the tarball). */
  host: Target;
  session: AgentSession;
  resolved: Resolved;
  /** How records and the target's deployments name the source (user@address:port; a fleet's hosts too). */
  label: string;
  close(): Promise<void>;
}

/**
 * Pure: hosts of a source fleet a promotion could not reach: nothing was done anywhere. A source
 * fleet vouches for a release only when every host is asked, so --skip-unreachable (which leaves
 * out hosts of the target) does not apply here.
 */
export function unreachable(misses: readonly FleetMiss[], what: string): SlipwayError {
  return unreachableError(misses, what,
    'a source fleet vouches for a release only when every host is reached (--skip-unreachable leaves out hosts of the target, not of the source): bring the host back and promote again');
}

/**
 * The source side: one host as it is; a fleet only when every host is reached and serves one
 * release (its fleet record's), the release it names passed on every host, and the artifact is
 * taken from the primary (or the first host keeping its tarball).
 */
export async function openSource(source: FleetTarget, target: FleetTarget, options: Pick<PromoteOptions, 'ref'>, repo: string | null): Promise<SourceSide> {
  const maxAgeMs = target.hosts[0]!.promotion && target.hosts[0]!.promotion.from === source.env ? target.hosts[0]!.promotion.maxAgeMs : null;
  if (source.hosts.length === 1) {
    const host = source.hosts[0]!;
    const session = await openAgentSession(host);
    try {
      const resolved = await resolveOnSource(session, host, maxAgeMs, options.ref, repo, null);
      return { host, session, resolved, label: hostLabel(host), close: () => session.close() };
    } catch (error) {
      await session.close();
      throw error;
    }
  }
  const fleet = await openFleet(source);
  try {
    const env = source.env ?? source.app;
    if (fleet.unreachable.length > 0) throw unreachable(fleet.unreachable, `promotion from ${env} refused, nothing changed`);
    const { snapshots, records } = await readFleet(fleet, source);
    const fleetRelease = fleetSourceRelease(source.env, snapshots.map((s) => ({ name: s.name, liveReleaseId: s.status?.liveReleaseId ?? null, error: s.error })),
      newestRecord(records)?.releaseId ?? null);
    const primary = fleet.member(source.rollout.primary) ?? fleet.members[0]!;
    const resolved = await resolveOnSource(primary.session, primary.target, maxAgeMs, options.ref, repo, fleetRelease);
    const others = fleet.members.filter((m) => m !== primary);
    const query = maxAgeMs === null ? '' : `?maxAgeMs=${maxAgeMs}`;
    const verdicts = [{ member: primary, verdict: resolved.verdict }, ...await Promise.all(others.map(async (m) => ({
      member: m, verdict: await m.session.agent.get<PromotionVerdict>(`/apps/${source.app}/releases/${resolved.releaseId}/promotion${query}`),
    })))];
    // The tarball is fetched (when it cannot be packed here) from the primary, or the first host that keeps it.
    const from = verdicts.find((v) => v.verdict.artifactBytes !== null) ?? verdicts[0]!;
    const ordered = [from, ...verdicts.filter((v) => v !== from)];
    const verdict = fleetGate(ordered.map((v) => ({ host: v.member.name, verdict: v.verdict })));
    return {
      host: from.member.target, session: from.member.session, resolved: { ...resolved, verdict },
      label: `${hostLabel(from.member.target)} (${env}: ${fleet.members.map((m) => m.name).join(', ')})`,
      close: () => fleet.close(),
    };
  } catch (error) {
    await fleet.close();
    throw error;
  }
}

/** The release REF names on the source, its manifest, the source's gate for it, and the tag it carries. */
async function resolveOnSource(session: AgentSession, source: Target, maxAgeMs: number | null, ref: string | undefined, repo: string | null,
  fleetRelease: string | null): Promise<Resolved> {
  const app = source.app;
  let releaseId: string;
  let tag: string | null = null;
  if (ref === undefined && fleetRelease !== null) {
    releaseId = fleetRelease;
  } else if (ref === undefined) {
    const status = await session.agent.get<AppStatus>(`/apps/${app}`);
    if (!status.liveReleaseId) {
      throw new SlipwayError('release_not_found', `${app} has no live release on ${source.env ?? 'the source'}`, { hint: 'name the release: deploy promote <release|commit|tag>' });
    }
    releaseId = status.liveReleaseId;
  } else {
    const { releases } = await session.agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${app}/releases`);
    const commit = repo ? await resolveCommit(repo, ref).catch(() => null) : null;
    tag = repo && commit ? await tagOf(repo, ref) : null;
    releaseId = pickSourceRelease(app, source.env, ref, commit, releases);
  }
  const verdict = await session.agent.get<PromotionVerdict>(`/apps/${app}/releases/${releaseId}/promotion${maxAgeMs === null ? '' : `?maxAgeMs=${maxAgeMs}`}`);
  const { manifest } = await session.agent.get<{ manifest: ReleaseManifest }>(`/apps/${app}/releases/${releaseId}`);
  if (tag === null && verdict.deploymentId !== null) {
    // The tag the release was deployed by on the source travels on.
    const deployment = await session.agent.find<DeploymentSummary>(`/apps/${app}/deployments/${verdict.deploymentId}`);
    tag = deployment?.tag ?? null;
  }
  return { releaseId, manifest, verdict, tag };
}
