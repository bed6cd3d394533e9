import type { ReleaseManifest } from '../../contract/manifest.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { checkAppSpec, specDigest, specProblemLines, SPEC_FILE, type AppSpec } from '../../contract/spec.js';
import type { AppConfig } from '../config.js';
import { isEmptyOverrides, mergeSpecOverrides, overrideProblemLines, type SpecOverrides } from '../../contract/spec-overrides.js';
import { translateLegacy } from './legacy.js';
import { policyOf, policyProblems } from './policy.js';

// The spec a release runs with: the one it carries (manifest.json `spec`, checked again here, its
// digest verified), or, for a release without one, the legacy spec of the app's config. Activating
// a release activates this spec: its processes, ports and routes. The app's environment overrides
// (the latest a deployment sent) are merged into a release's own spec; a legacy spec is the host's
// own config and takes none.

export interface EffectiveSpec {
  spec: AppSpec;
  /** "release": from the release's deploy.spec.json; "legacy": translated from agent.json. */
  source: 'release' | 'legacy';
  digest: string;
}

/**
 * Pure: the effective spec of a release of `app`. Throws release_spec_invalid (the manifest's spec does
 * not check, or does not match its digest) or spec_missing (no spec, and no legacy config).
 */
export function releaseSpecOf(app: string, appConfig: AppConfig, manifest: ReleaseManifest, overrides: SpecOverrides | null = null): EffectiveSpec {
  const label = `release ${shortSha(manifest.releaseId)} of ${app}`;
  if (manifest.spec !== undefined && manifest.spec !== null) {
    const checked = checkAppSpec(manifest.spec);
    if (!checked.ok) {
      throw new SlipwayError('release_spec_invalid', `${label} carries a ${SPEC_FILE} this agent refuses`, {
        status: 422, details: specProblemLines(checked.problems),
        hint: `fix ${SPEC_FILE} in the app's repository and push again (the controller and the agent may be of different versions: deploy --version, slipway-agent --version)`,
      });
    }
    const digest = specDigest(checked.spec);
    if (manifest.specDigest !== digest) {
      throw new SlipwayError('release_spec_invalid', `${label}: its spec does not match its specDigest`, {
        status: 422, details: [`manifest specDigest: ${manifest.specDigest ?? 'missing'}`, `digest of the spec: ${digest}`],
        hint: 'push the release again with deploy push, which writes both',
      });
    }
    if (isEmptyOverrides(overrides)) return { spec: checked.spec, source: 'release', digest };
    // The environment's overrides (contract/spec-overrides.ts), merged and checked again.
    const merged = mergeSpecOverrides(checked.spec, overrides);
    if (!merged.ok) {
      throw new SlipwayError('spec_overrides_invalid', `${label}: the environment's spec overrides do not fit its ${SPEC_FILE}`, {
        status: 422, details: overrideProblemLines(merged.problems, 'spec overrides', SPEC_FILE),
        hint: 'fix environments.<env>.spec in deploy.config.json and push again',
      });
    }
    return { spec: merged.spec, source: 'release', digest: specDigest(merged.spec) };
  }
  const legacy = translateLegacy(appConfig);
  if (!legacy) {
    throw new SlipwayError('spec_missing', `${label} has no ${SPEC_FILE}, and agent.json has no legacy start config for ${app}`, {
      status: 422,
      hint: `add ${SPEC_FILE} to the app's repository (see README "App spec"), commit it and push again`,
    });
  }
  return { spec: legacy.spec, source: 'legacy', digest: specDigest(legacy.spec) };
}

/** Throws spec_refused (422, one detail per problem) when the spec asks for more than the host allows. */
export function requireAllowedSpec(app: string, appConfig: AppConfig, effective: EffectiveSpec, releaseId: string): void {
  // The legacy spec is the host's own config: what it asks for, the host allowed by writing it.
  if (effective.source === 'legacy') return;
  const problems = policyProblems(effective.spec, policyOf(appConfig), app);
  if (problems.length > 0) {
    throw new SlipwayError('spec_refused', `release ${shortSha(releaseId)} of ${app} asks for more than this host allows`, {
      status: 422, details: problems,
      hint: `change ${SPEC_FILE}, or have the host's owner allow it in /etc/slipway/agent.json (apps.${app}) and restart the agent`,
    });
  }
}

/** Both checks, for a manifest arriving or a release about to be activated. */
export function allowedReleaseSpec(app: string, appConfig: AppConfig, manifest: ReleaseManifest, overrides: SpecOverrides | null = null): EffectiveSpec {
  const effective = releaseSpecOf(app, appConfig, manifest, overrides);
  requireAllowedSpec(app, appConfig, effective, manifest.releaseId);
  return effective;
}

/**
 * The app spec a release carries (its manifest's `spec`, normalised again by checkAppSpec), or
 * null for a release without one or with one that does not check. The host build, release phase
 * and smoke checks read it here; what a release runs with is releaseSpecOf's effective spec.
 */
export function carriedSpecOf(manifest: ReleaseManifest): AppSpec | null {
  if (!manifest.spec) return null;
  const checked = checkAppSpec(manifest.spec);
  return checked.ok ? checked.spec : null;
}
