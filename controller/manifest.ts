import type { ReleaseManifest } from '../contract/manifest.js';
import type { AppSpec } from '../contract/spec.js';
import { releaseIdFor } from '../contract/release-content.js';

export interface ReleaseSource {
  app: string;
  sha: string;
  /** Commit holding the dirty work tree's changes, when packing with --allow-dirty. */
  dirtySnapshot: string | null;
  branch: string | null;
  authorName: string;
  authorEmail: string;
  commitTime: string;
}

/** What schema version 3 adds: the app spec and how the release was built. */
export interface ReleaseExtras {
  spec: AppSpec | null;
  specDigest: string | null;
  build: ReleaseManifest['build'];
}

export const NO_EXTRAS: ReleaseExtras = { spec: null, specDigest: null, build: null };

/**
 * Pure: the manifest written into the tarball. The release id covers the content digest, so other
 * files for the same commit (a dirty work tree, a rebuilt `include`) are never taken for it.
 * Nothing in it depends on the clock or the environment it goes to, so packing the same commit
 * again gives the same bytes: `buildTime` is the commit's time, and the tag a release is deployed
 * by travels in the deployment request, not here (`tag` stays null).
 */
export function buildManifest(
  source: ReleaseSource, contentDigest: string, controllerVersion: string, extras: ReleaseExtras = NO_EXTRAS,
): ReleaseManifest {
  return {
    schemaVersion: 3,
    app: source.app,
    releaseId: releaseIdFor(source.sha, contentDigest),
    sha: source.sha,
    shortSha: source.sha.slice(0, 12),
    contentDigest,
    dirty: source.dirtySnapshot !== null,
    branch: source.branch,
    author: { name: source.authorName, email: source.authorEmail },
    commitTime: source.commitTime,
    buildTime: source.commitTime,
    controllerVersion,
    spec: extras.spec,
    specDigest: extras.specDigest,
    build: extras.build,
    tag: null,
  };
}

export function tarballName(app: string, releaseId: string): string {
  return `${app}-${releaseId}.tar.gz`;
}
