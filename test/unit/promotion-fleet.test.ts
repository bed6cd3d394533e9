/**
 * The pure parts of a promotion from or to a fleet: which release a source fleet vouches for (drift
 * refused, naming each host), its gate over every host, and the tarball release the fleet upload
 * path ships (fetched once, only when a host asks for it).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PromotionVerdict } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { fleetGate, fleetSourceRelease } from '../../controller/promotion.js';
import { tarballRelease } from '../../controller/fleet/tarball-release.js';

const A = 'aaaaaaaaaaaa-111111111111';
const B = 'bbbbbbbbbbbb-222222222222';
const host = (name: string, liveReleaseId: string | null, error: string | null = null) => ({ name, liveReleaseId, error });
const caught = (fn: () => unknown): SlipwayError => {
  try {
    fn();
  } catch (error) {
    return error as SlipwayError;
  }
  throw new Error('expected a refusal');
};

describe('the release a source fleet vouches for', () => {
  it('its fleet record\'s release when every host serves it; before any record, the one every host serves', () => {
    expect(fleetSourceRelease('staging', [host('h1', A), host('h2', A)], A)).toBe(A);
    expect(fleetSourceRelease('staging', [host('h1', B), host('h2', B)], null)).toBe(B);
  });

  it('a host on another release than the record: promotion_source_drift naming it, with the fix', () => {
    const error = caught(() => fleetSourceRelease('staging', [host('h1', A), host('h2', B), host('h3', A)], A));
    expect(error).toMatchObject({ code: 'promotion_source_drift', kind: 'refused', details: [`h2: serves ${B}`] });
    expect(error.message).toBe(`staging is not on one release, so it cannot vouch for one: h2: serves ${B} (its fleet record: ${A})`);
    expect(error.hint).toContain('deploy reconcile --env staging');
  });

  it('no record and the hosts differ: every host named; a host not reached or serving nothing is drift too', () => {
    const differ = caught(() => fleetSourceRelease('staging', [host('h1', A), host('h2', B)], null));
    expect(differ.details).toEqual([`h1: serves ${A}`, `h2: serves ${B}`]);
    const gone = caught(() => fleetSourceRelease('staging', [host('h1', A), host('h2', null, 'ssh: timed out')], A));
    expect(gone.details).toEqual(['h2: not reached (ssh: timed out)']);
    expect(gone.hint).toContain('bring the host back');
    const empty = caught(() => fleetSourceRelease('staging', [host('h1', null), host('h2', null)], null));
    expect(empty.details).toEqual(['h1: serves nothing', 'h2: serves nothing']);
  });
});

describe('a source fleet\'s gate', () => {
  const verdict = (passed: boolean, message: string, extra: Partial<PromotionVerdict> = {}): PromotionVerdict => ({
    app: 'shop', releaseId: A, passed, reason: passed ? 'passed' : 'rolled_back', message, deploymentId: 7, succeededAt: passed ? '2026-12-01T10:00:00Z' : null,
    sha256: 'f'.repeat(64), artifactBytes: 100, ...extra,
  });

  it('passes when it passed on every host; the artifact host\'s sha256 and kept tarball stay', () => {
    const gate = fleetGate([{ host: 'h2', verdict: verdict(true, 'passed here') }, { host: 'h1', verdict: verdict(true, 'passed there', { sha256: 'e'.repeat(64) }) }]);
    expect(gate).toMatchObject({ passed: true, reason: 'passed', sha256: 'f'.repeat(64), artifactBytes: 100, deploymentId: 7 });
    expect(gate.message).toBe('passed here; passed on every host (h2, h1)');
  });

  it('refused by the first host that refuses, named', () => {
    const gate = fleetGate([{ host: 'h1', verdict: verdict(true, 'ok') }, { host: 'h2', verdict: verdict(false, 'swapped back here') }, { host: 'h3', verdict: verdict(false, 'failed') }]);
    expect(gate).toMatchObject({ passed: false, reason: 'rolled_back', message: 'on h2: swapped back here', sha256: 'f'.repeat(64) });
  });
});

describe('a release shipped as its verified tarball', () => {
  const manifest = { releaseId: A, contentDigest: 'c'.repeat(64) } as ReleaseManifest;

  it('is obtained once, when the first host asks for it, whole (no file manifest: never a delta), and cleaned up', async () => {
    let obtained = 0;
    const release = tarballRelease({
      manifest, tag: 'v1', sha256: 'd'.repeat(64), startedAt: 0,
      obtain: async (dir) => {
        obtained += 1;
        const file = path.join(dir, 'release.tar.gz');
        await fs.writeFile(file, 'tarball bytes');
        return file;
      },
    });
    expect(release.prepared.files).toEqual([]);
    expect(obtained).toBe(0);
    const [one, two] = await Promise.all([release.prepared.seal(manifest), release.prepared.seal(manifest)]);
    expect(obtained).toBe(1);
    expect(one).toEqual(two);
    expect(one).toMatchObject({ bytes: 13, sha256: 'd'.repeat(64) });
    await expect(release.prepared.seal({ ...manifest, releaseId: B })).rejects.toThrow(/asked for as/);
    await release.prepared.cleanup();
    await expect(fs.stat(one.file)).rejects.toThrow();
    expect(path.dirname(one.file).startsWith(os.tmpdir())).toBe(true);
  });

  it('a fleet that has the release on every host: nothing obtained, cleanup is a no-op', async () => {
    const release = tarballRelease({ manifest, tag: null, sha256: 'd'.repeat(64), startedAt: 0, obtain: () => Promise.reject(new Error('not needed')) });
    await release.prepared.cleanup();
  });
});
