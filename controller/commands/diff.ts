import type { AppStatus, ReleaseListEntry, ReleaseSpecView } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { specDiff } from '../../contract/spec-diff.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';

/** What `deploy diff` names a release by: its id, a prefix of it or of its commit (7+ characters), or "live". */
export const LIVE_REF = 'live';

/**
 * Pure: the release a reference names among those the host has: an exact id wins, else a unique
 * prefix of one release id or commit SHA (the rule of `deploy rollback --to`).
 */
export function pickRelease(app: string, ref: string, releases: Pick<ReleaseListEntry, 'releaseId' | 'sha' | 'state'>[]): string {
  if (releases.some((r) => r.releaseId === ref)) return ref;
  const matches = releases.filter((r) => r.releaseId.startsWith(ref) || r.sha.startsWith(ref));
  if (matches.length === 1) return matches[0]!.releaseId;
  if (!matches.length) throw new SlipwayError('release_not_found', `no release of ${app} on the host matches ${ref}`, { hint: 'deploy releases lists what the host has' });
  throw new SlipwayError('release_ref_ambiguous', `${ref} matches ${matches.length} releases of ${app}`, {
    hint: 'give more characters of the one you mean (deploy releases lists them)', details: matches.map((r) => `${r.releaseId} (${r.state})`),
  });
}

/** Pure: the human view of what changed in the spec from one release to the next. */
export function formatSpecDiff(from: ReleaseSpecView, to: ReleaseSpecView): string {
  const name = (v: ReleaseSpecView) => shortSha(v.releaseId);
  const head = `spec of ${name(from)} → ${name(to)}`;
  const notes = [from, to].filter((v) => v.spec === null).map((v) => `  (${name(v)} has no deploy.spec.json: it ran on the agent's app config)`);
  if (from.specDigest !== null && from.specDigest === to.specDigest) return `${head}: unchanged (digest ${from.specDigest.slice(0, 12)})`;
  const lines = specDiff(from.spec, to.spec);
  if (!lines.length) return [`${head}: unchanged`, ...notes].join('\n');
  return [`${head}:`, ...notes, ...lines.map((line) => `  ${line}`)].join('\n');
}

/** `deploy diff <from> [to]`: what changed in the app spec between two releases (to: the live one by default). */
export async function diff(config: ControllerConfig, refs: { from: string; to: string }, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const app = config.app;
    const { releases } = await session.agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${app}/releases`);
    const resolve = async (ref: string): Promise<string> => {
      if (ref !== LIVE_REF) return pickRelease(app, ref, releases);
      const status = await session.agent.get<AppStatus>(`/apps/${app}`);
      if (!status.liveReleaseId) throw new SlipwayError('release_not_found', `${app} has no live release on the host`, { hint: 'name both releases: deploy diff <from> <to>' });
      return status.liveReleaseId;
    };
    const [from, to] = [await resolve(refs.from), await resolve(refs.to)];
    const [a, b] = [
      await session.agent.get<ReleaseSpecView>(`/apps/${app}/releases/${from}/spec`),
      await session.agent.get<ReleaseSpecView>(`/apps/${app}/releases/${to}/spec`),
    ];
    out.data(options.json ? { from: { releaseId: a.releaseId, specDigest: a.specDigest }, to: { releaseId: b.releaseId, specDigest: b.specDigest }, changes: specDiff(a.spec, b.spec) } : formatSpecDiff(a, b));
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
