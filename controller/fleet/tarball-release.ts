import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import type { PushRelease } from '../commands/push.js';
import type { PackedRelease, PreparedRelease } from '../pack.js';

/**
 * A release for the fleet upload path (controller/fleet/push.ts) made of one verified tarball
 * instead of a packed commit: what `deploy promote` ships to a fleet. `obtain` puts the tarball in
 * the given directory and returns its path; it must already have checked it against `sha256` (the
 * source's verified sha256). It runs once, and only when a host lacks the release, so a fleet that
 * has it everywhere fetches nothing.
 *
 * It has no file manifest, so every host that lacks the release gets the whole tarball (never a
 * delta): each stores it under the same sha256 the source verified, byte for byte.
 */
export function tarballRelease(input: {
  manifest: ReleaseManifest; tag: string | null; sha256: string; startedAt: number; obtain: (dir: string) => Promise<string>;
}): PushRelease {
  const { manifest, sha256 } = input;
  let dir: string | null = null;
  let sealed: Promise<PackedRelease> | null = null;
  const prepared: PreparedRelease = {
    contentDigest: manifest.contentDigest,
    files: [],
    sealedFrom: 'tarball',
    bundle: () => Promise.reject(new SlipwayError('internal_error', `a promoted release (${manifest.releaseId}) is shipped whole, never as a delta bundle`)),
    seal: (asked) => {
      if (asked.releaseId !== manifest.releaseId) {
        return Promise.reject(new SlipwayError('internal_error', `the tarball of ${manifest.releaseId} was asked for as ${asked.releaseId}`));
      }
      sealed ??= (async () => {
        dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-promote-'));
        const file = await input.obtain(dir);
        return { file, bytes: (await fs.stat(file)).size, sha256 };
      })();
      return sealed;
    },
    cleanup: async () => {
      // A tarball still being fetched is waited for, so its directory is not left behind.
      await sealed?.catch(() => undefined);
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return { manifest, prepared, startedAt: input.startedAt, prepareMs: 0, tag: input.tag };
}
