import type { ReleaseManifest } from '../../contract/manifest.js';
import { checkAppSpec, type AppSpec } from '../../contract/spec.js';

/**
 * The app spec a release carries (its manifest's `spec`, normalised again by checkAppSpec), or
 * null for a release without one. The host build, release phase and smoke checks read it here.
 */
export function releaseSpecOf(manifest: ReleaseManifest): AppSpec | null {
  if (!manifest.spec) return null;
  const checked = checkAppSpec(manifest.spec);
  return checked.ok ? checked.spec : null;
}
