// The artifact of `deploy promote`: the source's verified tarball, packed again here when that
// gives the same bytes, else fetched from the source.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { shortSha } from '../../contract/names.js';
import type { Target } from '../environments.js';
import { hasCommit } from '../git.js';
import { formatBytes, formatMs, type Output } from '../output.js';
import { prepareRelease } from '../pack.js';
import type { SourceSide } from './promote-source.js';

/**
 * The release's tarball in `dir`, with exactly the sha256 the source verified: packed again here
 * when the commit is at hand and that gives the same bytes (no transfer from the source), else
 * fetched from the source's kept tarball and verified.
 */
export async function obtainArtifact(side: SourceSide, repo: string | null, dir: string, out: Output): Promise<string> {
  const { releaseId, manifest, verdict } = side.resolved;
  const source = side.host;
  if (!verdict.sha256) throw new SlipwayError('release_not_found', `the source does not have ${shortSha(releaseId)}`, { hint: `deploy releases --env ${source.env ?? '<source>'}` });
  const packed = await packAgain(repo, source, manifest, verdict.sha256, dir, out);
  if (packed) return packed;
  if (verdict.artifactBytes === null) {
    throw new SlipwayError('artifact_missing', `${shortSha(releaseId)} cannot be packed here to the same bytes, and ${source.env ?? 'the source'} keeps no tarball of it`, {
      hint: `push it again to ${source.env ?? 'the source'} (its agent now keeps the tarball), or promote from a checkout that has commit ${manifest.shortSha}`,
    });
  }
  const started = Date.now();
  const file = path.join(dir, `${releaseId}.tar.gz`);
  const got = await side.session.agent.download(`/apps/${source.app}/releases/${releaseId}/artifact`, file, verdict.sha256);
  out.info(`  fetched ${formatBytes(got.bytes)} from ${source.env ?? 'the source'} in ${formatMs(Date.now() - started)} (sha256 ${got.sha256.slice(0, 16)}…, verified)`,
    { artifact: 'fetched', bytes: got.bytes, sha256: got.sha256 });
  return file;
}

/**
 * The tarball packed again from the local commit, when that is possible and gives exactly the
 * source's bytes; null otherwise (no repository or commit here, a dirty or controller-built
 * release, or other bytes: another controller version, other build output).
 */
async function packAgain(repo: string | null, source: Target, manifest: ReleaseManifest, sha256: string, dir: string, out: Output): Promise<string | null> {
  if (!repo || manifest.dirty || manifest.build?.on === 'controller' || !await hasCommit(repo, manifest.sha)) return null;
  const started = Date.now();
  const prepared = await prepareRelease({ repo, treeish: manifest.sha, include: source.include, mtime: new Date(manifest.commitTime) }).catch(() => null);
  if (!prepared) return null;
  try {
    if (prepared.contentDigest !== manifest.contentDigest) {
      out.info('  packing here gives other files than the source has (build output?): fetching its tarball', { artifact: 'differs' });
      return null;
    }
    const packed = await prepared.seal(manifest);
    if (packed.sha256 !== sha256) {
      out.info('  packing here gives other bytes than the source has: fetching its tarball', { artifact: 'differs', localSha256: packed.sha256 });
      return null;
    }
    const file = path.join(dir, path.basename(packed.file));
    await fs.rename(packed.file, file);
    out.info(`  packed ${formatBytes(packed.bytes)} here in ${formatMs(Date.now() - started)}: sha256 ${sha256.slice(0, 16)}…, the same as the source's (nothing fetched)`,
      { artifact: 'packed', sha256 });
    return file;
  } finally {
    await prepared.cleanup();
  }
}
