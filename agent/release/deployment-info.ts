import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { DEPLOYMENT_INFO_FILE, deploymentInfoOf } from '../../contract/deployment-info.js';
import type { ReleaseManifest } from '../../contract/manifest.js';

/**
 * Writes DEPLOYMENT_INFO.json (contract/deployment-info.ts) into a release being published, mode
 * 0444 so the app can read it and nobody rewrites it. Replaces one the archive may carry: the box,
 * not the commit, knows who deployed and when. Flushed here, as the rest of the release is before
 * its rename into place.
 */
export async function writeDeploymentInfo(
  dir: string, manifest: ReleaseManifest, actor: string, now = new Date(), deployment?: { env: string | null; tag: string | null },
): Promise<void> {
  const file = path.join(dir, DEPLOYMENT_INFO_FILE);
  const text = `${JSON.stringify(deploymentInfoOf(manifest, actor, now, deployment), null, 2)}\n`;
  await rm(file, { force: true, recursive: true });
  const handle = await open(file, 'wx', 0o444);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}
