// Pure parts of `deploy promote`: which release a reference names on the source, whether and how
// the target asks for approval, the git tag name a target's pattern gives.
import type { PromotionVerdict, ReleaseListEntry } from '../contract/api.js';
import { SlipwayError } from '../contract/errors.js';
import { shortSha } from '../contract/names.js';
import type { Target } from './environments.js';

/** user@address:port: how a promotion names the other side's host in records and messages. */
export function hostLabel(target: Pick<Target, 'host'>): string {
  return `${target.host.user}@${target.host.address}:${target.host.port}`;
}

/**
 * Pure: the source release a reference names. A release id, or a prefix (7+) of one or of a
 * commit SHA, as `deploy rollback --to` takes them; `commit` is the full SHA the reference
 * resolved to in the local repository (a tag, a branch), when it did. Of several releases of one
 * commit, the live one, else the one that went live last, else the newest.
 */
export function pickSourceRelease(
  app: string, sourceEnv: string | null, ref: string, commit: string | null, releases: Pick<ReleaseListEntry, 'releaseId' | 'sha' | 'state' | 'liveAt' | 'createdAt'>[],
): string {
  const exact = releases.find((r) => r.releaseId === ref);
  if (exact) return exact.releaseId;
  const byPrefix = /^[0-9a-f][0-9a-f-]{6,}$/.test(ref) ? releases.filter((r) => r.releaseId.startsWith(ref) || r.sha.startsWith(ref)) : [];
  const byCommit = commit ? releases.filter((r) => r.sha === commit) : [];
  const candidates = byCommit.length ? byCommit : byPrefix;
  if (!candidates.length) {
    throw new SlipwayError('promotion_refused', `${ref}${commit ? ` (commit ${commit.slice(0, 12)})` : ''} was never deployed to ${sourceEnv ?? 'the source'}: no release of ${app} there matches it`, {
      hint: `deploy it to ${sourceEnv ?? 'the source'} first (deploy push --env ${sourceEnv ?? '<source>'}); deploy releases --env ${sourceEnv ?? '<source>'} lists what it has`,
    });
  }
  const shas = new Set(candidates.map((r) => r.sha));
  if (shas.size > 1) {
    throw new SlipwayError('release_ref_ambiguous', `${ref} matches releases of ${shas.size} commits of ${app}`, {
      hint: 'give more characters of the one you mean (deploy releases --env <source> lists them)',
      details: candidates.map((r) => `${r.releaseId} (${r.state})`),
    });
  }
  const ranked = [...candidates].sort((a, b) => Number(b.state === 'live') - Number(a.state === 'live')
    || (b.liveAt ?? '').localeCompare(a.liveAt ?? '') || b.createdAt.localeCompare(a.createdAt));
  return ranked[0]!.releaseId;
}

export type ApprovalStep = 'not_required' | 'given' | 'prompt';

/**
 * Pure: how the target's approval is had. Without requireApproval there is none to ask; --yes
 * gives it; otherwise a terminal is asked, and without one (CI) the promotion is refused as a
 * usage error naming --yes.
 */
export function approvalStep(input: { required: boolean; yes: boolean; interactive: boolean; env: string | null }): ApprovalStep {
  if (!input.required) return 'not_required';
  if (input.yes) return 'given';
  if (input.interactive) return 'prompt';
  throw new SlipwayError('approval_required', `environment ${input.env ?? '(target)'} requires approval, and stdin is not a terminal to ask on`, {
    hint: 'pass --yes to approve (in CI: behind your own approval step, e.g. a protected GitHub environment)',
  });
}

/**
 * Pure: a tag name from a target's gitTag pattern: {env}, {date} (UTC, YYYYMMDD-HHMMSS),
 * {shortSha} (12 hex), {sha}, {release}. Unknown placeholders are a config error.
 */
export function gitTagName(pattern: string, values: { env: string | null; sha: string; releaseId: string; at: Date }): string {
  const iso = values.at.toISOString();
  const date = `${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
  const table: Record<string, string> = { env: values.env ?? 'default', date, shortSha: values.sha.slice(0, 12), sha: values.sha, release: values.releaseId };
  return pattern.replace(/\{([A-Za-z]+)\}/g, (whole, key: string) => {
    const value = table[key];
    if (value === undefined) {
      throw new SlipwayError('config_invalid', `gitTag "${pattern}" has an unknown placeholder ${whole}`, { hint: 'use {env}, {date}, {shortSha}, {sha} or {release}' });
    }
    return value;
  });
}

/** One host of a source fleet as read before a promotion: its live release, or why it was not read. */
export interface SourceHostState { name: string; liveReleaseId: string | null; error: string | null }

/**
 * Pure: the release a source fleet vouches for: the one its fleet record names (before any record,
 * the one every host serves), provided every host serves it. A fleet on two releases, or with a
 * host not reached, cannot say what passed it: promotion_source_drift names each host that differs
 * and the command that brings the fleet back to one release.
 */
export function fleetSourceRelease(env: string | null, hosts: readonly SourceHostState[], recordRelease: string | null): string {
  const live = hosts.filter((h) => h.error === null).map((h) => h.liveReleaseId);
  const agreed = live.length === hosts.length && live.every((r) => r !== null && r === live[0]) ? live[0]! : null;
  const expected = recordRelease ?? agreed;
  const off = hosts.filter((h) => h.error !== null || h.liveReleaseId !== expected);
  if (expected !== null && off.length === 0) return expected;
  const name = env ?? 'the source';
  const lines = (expected === null ? hosts : off).map((h) => `${h.name}: ${h.error !== null ? `not reached (${h.error})` : h.liveReleaseId ? `serves ${shortSha(h.liveReleaseId)}` : 'serves nothing'}`);
  const unreached = off.some((h) => h.error !== null);
  throw new SlipwayError('promotion_source_drift', `${name} is not on one release, so it cannot vouch for one: ${lines.join('; ')}${expected ? ` (its fleet record: ${shortSha(expected)})` : ''}`, {
    details: lines,
    hint: unreached
      ? `bring the host back, then check with deploy status --env ${name}, and promote again`
      : `deploy status --env ${name} shows the drift; deploy reconcile --env ${name} brings every host back to its fleet's release (or deploy push --env ${name} a new one); then promote again`,
  });
}

/**
 * Pure: a source fleet's gate from each host's verdict (the artifact host's first): it passed when
 * it passed on every host; otherwise the first host that refuses speaks, named. What the promotion
 * fetches (sha256, kept tarball, the deployment that names its tag) stays the artifact host's.
 */
export function fleetGate(verdicts: ReadonlyArray<{ host: string; verdict: PromotionVerdict }>): PromotionVerdict {
  const first = verdicts[0]!.verdict;
  const refusal = verdicts.find((v) => !v.verdict.passed);
  if (refusal) return { ...first, passed: false, reason: refusal.verdict.reason, message: `on ${refusal.host}: ${refusal.verdict.message}`, succeededAt: null };
  return { ...first, message: `${first.message}; passed on every host (${verdicts.map((v) => v.host).join(', ')})` };
}
