import type { ReleaseManifest } from '../contract/manifest.js';

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

/** Pure: the release id for a source; dirty builds are tagged so they never pass for the commit. */
export function releaseIdOf(source: Pick<ReleaseSource, 'sha' | 'dirtySnapshot'>): string {
  return source.dirtySnapshot ? `${source.sha}-dirty-${source.dirtySnapshot.slice(0, 12)}` : source.sha;
}

/** Pure: the manifest written into the tarball. */
export function buildManifest(source: ReleaseSource, buildTime: Date, controllerVersion: string): ReleaseManifest {
  return {
    schemaVersion: 1,
    app: source.app,
    releaseId: releaseIdOf(source),
    sha: source.sha,
    shortSha: source.sha.slice(0, 12),
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
