import type { ReleaseManifest } from './manifest.js';

/**
 * DEPLOYMENT_INFO.json: written by the agent into the root of every release dir when it is
 * published (mode 0444), so the app can tell which commit, spec and push it runs. Like
 * manifest.json it is not part of the release's content digest (contract/release-content.ts):
 * who deployed and when is a fact of the box, not of the commit.
 */
export const DEPLOYMENT_INFO_FILE = 'DEPLOYMENT_INFO.json';

export interface DeploymentInfo {
  releaseId: string;
  app: string;
  sha: string;
  branch: string | null;
  /** The tag the release was uploaded for (the deployment's, else the manifest's). */
  tag: string | null;
  /** The environment it was uploaded for (deploy --env); null without environments. */
  env: string | null;
  author: { name: string; email: string };
  commitTime: string;
  specDigest: string | null;
  /** The actor that uploaded the release (the agent's audit identity of the caller). */
  deployedBy: string;
  /** When the release was published on this box. */
  deployedAt: string;
}

/** Pure: the info of a release from its manifest and who uploaded it when. */
export function deploymentInfoOf(
  manifest: ReleaseManifest, deployedBy: string, deployedAt: Date, deployment: { env: string | null; tag: string | null } = { env: null, tag: null },
): DeploymentInfo {
  return {
    releaseId: manifest.releaseId,
    app: manifest.app,
    sha: manifest.sha,
    branch: manifest.branch,
    tag: deployment.tag ?? manifest.tag ?? null,
    env: deployment.env,
    author: manifest.author,
    commitTime: manifest.commitTime,
    specDigest: manifest.specDigest ?? null,
    deployedBy,
    deployedAt: deployedAt.toISOString(),
  };
}
