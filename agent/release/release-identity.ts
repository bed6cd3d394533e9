import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { contentDigest, releaseIdFor, type ContentEntry } from '../../contract/release-content.js';

const REPACK_HINT = 'the tarball was not packed by `deploy push`, or its files changed after its manifest was written; push again with `deploy push`';

/**
 * Pure: refuses a release whose unpacked files are not the ones its manifest names, or whose id
 * is not derived from its commit and content (contract/release-content.ts). `contents` is what the
 * extraction actually made, each file hashed as it was written.
 */
export function verifyReleaseContent(manifest: ReleaseManifest, contents: ContentEntry[], label: string): void {
  const unpacked = contentDigest(contents);
  if (unpacked !== manifest.contentDigest) {
    throw new SlipwayError('release_digest_mismatch',
      `${label}: the unpacked files do not match the manifest's content digest (manifest ${manifest.contentDigest.slice(0, 12)}…, unpacked ${unpacked.slice(0, 12)}…); nothing was published`, {
        status: 400, hint: REPACK_HINT,
        details: [`manifest contentDigest: ${manifest.contentDigest}`, `unpacked contentDigest: ${unpacked}`, `entries: ${contents.length}`],
      });
  }
  const expected = releaseIdFor(manifest.sha, manifest.contentDigest);
  if (manifest.releaseId !== expected) {
    throw new SlipwayError('release_digest_mismatch',
      `${label}: the release id ${manifest.releaseId} is not the one of its commit and content (${expected}); nothing was published`, {
        status: 400, hint: REPACK_HINT,
        details: [`sha: ${manifest.sha}`, `contentDigest: ${manifest.contentDigest}`, `expected releaseId: ${expected}`],
      });
  }
}
