import { describe, expect, it } from 'vitest';
import { doraFigures, percentile, type DoraDeployment } from '../../agent/metrics/dora.js';

const T0 = Date.parse('2026-11-01T00:00:00Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const since = new Date(T0);
const until = new Date(T0 + 30 * 86_400_000);

let nextId = 1;
function deploy(release: string, minute: number, outcome: DoraDeployment['outcome'], extra: Partial<DoraDeployment> = {}): DoraDeployment {
  return {
    id: nextId++, kind: 'deploy', releaseId: release, previousRelease: null, outcome,
    startedAt: at(minute), endedAt: at(minute + 2), switchedAt: at(minute + 1), commitTime: at(minute - 60), ...extra,
  };
}

describe('DORA figures from deployment history', () => {
  it('no history: zeros and nulls, never a division by zero', () => {
    const f = doraFigures([], since, until);
    expect(f).toMatchObject({ deployments: 0, perDay: 0, changeFailures: { failed: 0, total: 0, rate: null } });
    expect(f.leadTime).toEqual({ count: 0, medianMs: null, p90Ms: null });
    expect(f.timeToRestore).toEqual({ count: 0, medianMs: null, p90Ms: null, open: 0 });
  });

  it('one good deploy: lead time is commit → switch', () => {
    const f = doraFigures([deploy('a', 10, 'succeeded')], since, until);
    expect(f.deployments).toBe(1);
    expect(f.perDay).toBeCloseTo(1 / 30, 2);
    expect(f.leadTime).toEqual({ count: 1, medianMs: 61 * 60_000, p90Ms: 61 * 60_000 });
    expect(f.changeFailures.rate).toBe(0);
  });

  it('a deploy that failed before the switch is not a deployment (nothing reached production)', () => {
    const f = doraFigures([deploy('a', 10, 'failed', { switchedAt: null })], since, until);
    expect(f.deployments).toBe(0);
  });

  it('a swap-back is a change failure restored when the swap-back ended', () => {
    const f = doraFigures([deploy('a', 10, 'succeeded'), deploy('b', 100, 'rolled_back', { endedAt: at(104) })], since, until);
    expect(f.changeFailures).toEqual({ failed: 1, total: 2, rate: 0.5 });
    expect(f.timeToRestore).toMatchObject({ count: 1, medianMs: 3 * 60_000, open: 0 });
    expect(f.leadTime.count).toBe(1);
  });

  it('a hand rollback of a live deploy marks it failed; restore time runs to the rollback switch', () => {
    const rollback: DoraDeployment = {
      id: nextId++, kind: 'rollback', releaseId: 'a', previousRelease: 'b', outcome: 'succeeded',
      startedAt: at(130), endedAt: at(133), switchedAt: at(131), commitTime: null,
    };
    const f = doraFigures([deploy('a', 10, 'succeeded'), deploy('b', 100, 'succeeded'), rollback], since, until);
    expect(f.changeFailures).toMatchObject({ failed: 1, total: 2 });
    expect(f.timeToRestore.medianMs).toBe(30 * 60_000);
  });

  it('a failure after the switch with nothing restored yet is open', () => {
    const f = doraFigures([deploy('a', 10, 'failed')], since, until);
    expect(f.timeToRestore).toMatchObject({ count: 0, open: 1 });
    expect(f.changeFailures.rate).toBe(1);
  });

  it('a rollback storm: rollbacks are not deployments, and each failed deploy counts once', () => {
    const rows: DoraDeployment[] = [deploy('a', 0, 'succeeded')];
    for (let i = 1; i <= 5; i++) {
      rows.push(deploy(`b${i}`, i * 100, 'succeeded'));
      rows.push({ id: nextId++, kind: 'rollback', releaseId: 'a', previousRelease: `b${i}`, outcome: 'succeeded', startedAt: at(i * 100 + 10), endedAt: at(i * 100 + 12), switchedAt: at(i * 100 + 11 ), commitTime: null });
    }
    const f = doraFigures(rows, since, until);
    expect(f.deployments).toBe(6);
    expect(f.changeFailures).toEqual({ failed: 5, total: 6, rate: 0.833 });
    expect(f.timeToRestore).toMatchObject({ count: 5, medianMs: 10 * 60_000, open: 0 });
  });

  it('only deployments that moved traffic inside the window count', () => {
    const f = doraFigures([deploy('a', -100, 'succeeded'), deploy('b', 10, 'succeeded')], since, until);
    expect(f.deployments).toBe(1);
  });

  it('nearest-rank percentiles', () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5], 90)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)).toBe(9);
  });
});
