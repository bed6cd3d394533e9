import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Wall time of the slowest test files in a whole run on the 2-core CI machine (ms), longest first.
 * CI's own per-file times where the last run reported them; the others (~) are from runs of
 * single files and of a subset with three workers on the shared 2-core machine (2026-12-02),
 * where the CI-reported files took about their CI time. A file missing here is ordered by the
 * rules below; the figures only order files, nothing asserts on them, so a stale one costs a
 * little wall time and never a failure. Refresh from a CI run when a file's cost changes a lot.
 */
export const CI_FILE_MS: Readonly<Record<string, number>> = {
  'test/integration/rollback.test.ts': 81_000, // ~
  'test/integration/crash-recovery.test.ts': 70_084,
  'test/integration/push.test.ts': 48_000, // ~
  'test/integration/fleet.test.ts': 200_000, // one 3-host lab, 11 cases (~180-270 s)
  'test/integration/tls-acme.test.ts': 30_000, // ~
  'test/integration/logs.test.ts': 28_700, // ~
  'test/integration/push-lock.test.ts': 25_507,
  'test/integration/cli-package.test.ts': 24_882,
  'test/reliability/api.test.ts': 22_000, // ~
  'test/integration/metrics.test.ts': 21_719,
  'test/integration/environments.test.ts': 21_000, // ~
  'test/reliability/load.test.ts': 17_906,
  'test/integration/delta-push.test.ts': 15_154,
  'test/integration/push-failures.test.ts': 13_100, // ~
  'test/integration/nginx-reload-reason.test.ts': 12_419,
  'test/integration/pre-deploy-backup.test.ts': 10_630,
  'test/integration/notifications.test.ts': 8_609,
  'test/integration/env-fleet.test.ts': 25_000, // ~ one 3-host lab, no push (20 s alone)
};

/** Pure: the order to hand files to the workers: known-slow ones longest first, then the other
 * integration and reliability files largest first, then the rest (unit tests: seconds at most) largest first. */
export function slowFirst<T>(files: readonly T[], pathOf: (file: T) => string, sizeOf: (file: T) => number): T[] {
  const rank = (file: T): [number, number] => {
    const known = CI_FILE_MS[pathOf(file)];
    if (known !== undefined) return [0, known];
    return [/^test\/(integration|reliability)\//.test(pathOf(file)) ? 1 : 2, sizeOf(file)];
  };
  return [...files].sort((a, b) => {
    const [groupA, weightA] = rank(a);
    const [groupB, weightB] = rank(b);
    return groupA - groupB || weightB - weightA;
  });
}

/**
 * Longest-first scheduling for a run without a results cache (CI's clean checkout): vitest's own
 * order there is largest file first, which leaves the short but slow files (crash-recovery,
 * push-lock, metrics, nginx-reload-reason ...) for the end of the run, where one of them keeps a
 * worker busy for a minute while the other has nothing left to do. With durations cached from an
 * earlier run of every file (a developer's machine), vitest's own longest-first order is used.
 */
export class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const key = (file: TestSpecification) => file.moduleId.slice(root.length + 1);
    const cached = files.every((file) => this.ctx.cache.getFileTestResults(`${file.project.name}:${key(file)}`) !== undefined);
    if (cached) return super.sort(files);
    return slowFirst(files, key, (file) => this.ctx.cache.getFileStats(`${file.project.name}:${key(file)}`)?.size ?? 0);
  }
}
