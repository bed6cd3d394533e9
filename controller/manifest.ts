import type { ReleaseManifest } from '../contract/manifest.js';
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

/**
 * Pure: the manifest written into the tarball. The release id covers the content digest, so other
 * files for the same commit (a dirty work tree, a rebuilt `include`) are never taken for it.
 */
export function buildManifest(source: ReleaseSource, contentDigest: string, buildTime: Date, controllerVersion: string): ReleaseManifest {
  return {
    schemaVersion: 2,
    app: source.app,
    releaseId: releaseIdFor(source.sha, contentDigest),
    sha: source.sha,
    shortSha: source.sha.slice(0, 12),
    contentDigest,
    dirty: source.dirtySnapshot !== null,
    branch: source.branch,
    author: { name: source.authorName, email: source.authorEmail },
    commitTime: source.commitTime,
    buildTime: buildTime.toISOString(),
    controllerVersion,
  };
}

export function tarballName(app: string, releaseId: string): string {
  return `${app}-${releaseId}.tar.gz`;
}
