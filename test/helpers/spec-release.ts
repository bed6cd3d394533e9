/**
 * Releases with an app spec (manifest v3), packed by hand from a directory the way the controller
 * would, for tests of what the agent does with a spec before the controller writes one.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, lstat } from 'node:fs/promises';
import path from 'node:path';
import type { ReleaseManifest } from '../../contract/manifest.js';
import type { DeploymentStreamLine } from '../../contract/api.js';
import type { BuildPlatform } from '../../contract/platform.js';
import { checkAppSpec, specDigest } from '../../contract/spec.js';
import { gzip, tarball, type CraftEntry } from './crafted-tar.js';
import { contentDigestOfEntries, randomCommit, releaseManifest } from './release-content.js';

/** Entries of every file and directory under `dir` (sorted), plus `extra` files. */
export async function entriesOfDir(dir: string, extra: Record<string, string | Buffer> = {}): Promise<CraftEntry[]> {
  const entries: CraftEntry[] = [{ path: './', type: 'dir', mode: 0o755 }];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (child === 'node_modules' || Object.hasOwn(extra, child)) continue;
      const st = await lstat(path.join(dir, child));
      if (st.isDirectory()) {
        entries.push({ path: `./${child}/`, type: 'dir', mode: 0o755 });
        await walk(child);
      } else if (st.isFile()) entries.push({ path: `./${child}`, body: await readFile(path.join(dir, child)), mode: 0o644 });
    }
  };
  await walk('');
  for (const [name, body] of Object.entries(extra)) entries.push({ path: `./${name}`, body, mode: 0o644 });
  return entries;
}

export interface SpecRelease { releaseId: string; manifest: ReleaseManifest; archive: Buffer }

/**
 * A sealed release of `entries` whose manifest (v3) carries `rawSpec` normalised, its digest and
 * `build`. The spec must pass checkAppSpec.
 */
export function specRelease(app: string, entries: CraftEntry[], rawSpec: unknown, options: {
  build?: { on: 'controller' | 'host'; platform: BuildPlatform | null; steps: string[] } | null; sha?: string;
} = {}): SpecRelease {
  const checked = checkAppSpec(rawSpec);
  if (!checked.ok) throw new Error(`spec-release: ${JSON.stringify(checked.problems)}`);
  const base = releaseManifest(app, options.sha ?? randomCommit(), contentDigestOfEntries(entries));
  const manifest: ReleaseManifest = {
    ...base, schemaVersion: 3, spec: checked.spec, specDigest: specDigest(checked.spec), build: options.build ?? null, tag: 'v1.2.3',
  };
  const withManifest: CraftEntry[] = [entries[0]!, { path: './manifest.json', body: JSON.stringify(manifest), mode: 0o644 }, ...entries.slice(1)];
  return { releaseId: manifest.releaseId, manifest, archive: gzip(tarball(withManifest)) };
}

/** A fetch against the agent's API with the test's token and actor. */
export type AgentApi = (pathname: string, init?: RequestInit) => Promise<Response>;

/**
 * Uploads `release` through the agent's API (PUT, sha256 header) and deploys it (POST
 * /deployments), returning every line the rollout streamed; throws when the upload is refused.
 */
export async function uploadAndDeploy(api: AgentApi, app: string, release: Pick<SpecRelease, 'releaseId' | 'archive'>): Promise<DeploymentStreamLine[]> {
  const uploaded = await api(`/apps/${app}/releases/${release.releaseId}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': createHash('sha256').update(release.archive).digest('hex') },
    body: new Uint8Array(release.archive),
  });
  if (uploaded.status !== 201) throw new Error(`upload of ${release.releaseId} answered ${uploaded.status}: ${await uploaded.text()}`);
  const response = await api(`/apps/${app}/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ releaseId: release.releaseId }) });
  return (await response.text()).trim().split('\n').map((line) => JSON.parse(line) as DeploymentStreamLine);
}
