import { describe, expect, it } from 'vitest';
import { judgePromotion, type GateDeployment, type GateRelease } from '../../agent/release/promotion-gate.js';

const R = 'aaaaaaaaaaaa-111111111111';
const S = 'bbbbbbbbbbbb-222222222222';
const NOW = new Date('2026-12-02T12:00:00Z');
const DAY = 86_400_000;

let nextId = 1;
function d(releaseId: string, outcome: GateDeployment['outcome'], endedAt: string | null, extra: Partial<GateDeployment> = {}): GateDeployment {
  return { id: nextId++, kind: 'deploy', releaseId, outcome, reason: null, state: outcome ?? 'watching', endedAt, requestedBy: 'ci@runner', ...extra };
}
const good = (releaseId: string, extra: Partial<GateRelease> = {}): GateRelease => ({ releaseId, state: 'good', rolledBack: null, ...extra });

describe('promotion gate', () => {
  it('none: a release never deployed, or only uploaded, has not passed', () => {
    expect(judgePromotion({ releaseId: R, release: undefined, deployments: [], now: NOW, maxAgeMs: null })).toMatchObject({
      passed: false, reason: 'never_deployed', deploymentId: null,
    });
    const uploaded = judgePromotion({ releaseId: R, release: good(R, { state: 'ready' }), deployments: [d(S, 'succeeded', '2026-12-01T00:00:00Z')], now: NOW, maxAgeMs: null });
    expect(uploaded).toMatchObject({ passed: false, reason: 'never_deployed' });
    expect(uploaded.message).toContain('uploaded, not activated');
  });

  it('one: a clean deploy within maxAge passes', () => {
    const ok = d(R, 'succeeded', '2026-12-01T12:00:00Z');
    expect(judgePromotion({ releaseId: R, release: good(R), deployments: [ok], now: NOW, maxAgeMs: 14 * DAY })).toMatchObject({
      passed: true, reason: 'passed', deploymentId: ok.id, succeededAt: '2026-12-01T12:00:00Z',
    });
  });

  it('swapped back: the watch window sent traffic back', () => {
    const earlier = d(R, 'succeeded', '2026-11-30T00:00:00Z');
    const swapped = d(R, 'rolled_back', '2026-12-01T12:00:00Z', { reason: 'health check failed 3 times' });
    const verdict = judgePromotion({ releaseId: R, release: good(R, { state: 'bad' }), deployments: [earlier, swapped], now: NOW, maxAgeMs: null });
    expect(verdict).toMatchObject({ passed: false, reason: 'rolled_back', deploymentId: swapped.id });
    expect(verdict.message).toContain('swapped back');
    expect(verdict.message).toContain('health check failed 3 times');
  });

  it('failed: the latest deploy failed before the switch, even after an earlier success', () => {
    const earlier = d(R, 'succeeded', '2026-12-01T12:00:00Z');
    const failed = d(R, 'failed', '2026-12-01T13:00:00Z', { reason: 'port in use' });
    expect(judgePromotion({ releaseId: R, release: good(R), deployments: [failed, earlier], now: NOW, maxAgeMs: null }))
      .toMatchObject({ passed: false, reason: 'failed', deploymentId: failed.id });
  });

  it('still watching: the latest deployment has no outcome yet', () => {
    const earlier = d(R, 'succeeded', '2026-12-01T00:00:00Z');
    const running = d(R, null, null, { state: 'watching' });
    const verdict = judgePromotion({ releaseId: R, release: good(R), deployments: [earlier, running], now: NOW, maxAgeMs: null });
    expect(verdict).toMatchObject({ passed: false, reason: 'still_watching', deploymentId: running.id });
    expect(verdict.message).toContain('"watching"');
  });

  it('too old: the success is further back than maxAge; without maxAge any age passes', () => {
    const old = d(R, 'succeeded', '2026-11-01T12:00:00Z');
    const verdict = judgePromotion({ releaseId: R, release: good(R), deployments: [old], now: NOW, maxAgeMs: 14 * DAY });
    expect(verdict).toMatchObject({ passed: false, reason: 'too_old', succeededAt: '2026-11-01T12:00:00Z' });
    expect(verdict.message).toContain('14 d');
    expect(judgePromotion({ releaseId: R, release: good(R), deployments: [old], now: NOW, maxAgeMs: null }).passed).toBe(true);
  });

  it('rolled back away from by hand after a clean deploy: refused, naming who and why', () => {
    const verdict = judgePromotion({
      releaseId: R, release: good(R, { rolledBack: { at: '2026-12-01T14:00:00Z', by: 'ops@laptop', reason: 'checkout broken' } }),
      deployments: [d(R, 'succeeded', '2026-12-01T12:00:00Z')], now: NOW, maxAgeMs: null,
    });
    expect(verdict).toMatchObject({ passed: false, reason: 'rolled_back' });
    expect(verdict.message).toMatch(/ops@laptop.*checkout broken/);
  });

  it('rollback storm: the latest activation of each release decides', () => {
    // R deployed, S deployed, rollback to R (S marked), forced switch to S (clean: mark cleared), rollback to R again (S marked).
    const history = [
      d(R, 'succeeded', '2026-12-01T10:00:00Z'),
      d(S, 'succeeded', '2026-12-01T10:10:00Z'),
      d(R, 'succeeded', '2026-12-01T10:20:00Z', { kind: 'rollback' }),
      d(S, 'succeeded', '2026-12-01T10:30:00Z', { kind: 'switch' }),
      d(R, 'succeeded', '2026-12-01T10:40:00Z', { kind: 'rollback' }),
    ];
    const sMarked = good(S, { rolledBack: { at: '2026-12-01T10:40:00Z', by: 'ops@laptop', reason: null } });
    expect(judgePromotion({ releaseId: S, release: sMarked, deployments: history, now: NOW, maxAgeMs: null })).toMatchObject({ passed: false, reason: 'rolled_back' });
    const r = judgePromotion({ releaseId: R, release: good(R), deployments: [...history].reverse(), now: NOW, maxAgeMs: null });
    expect(r).toMatchObject({ passed: true, deploymentId: history[4]!.id, succeededAt: '2026-12-01T10:40:00Z' });
    // Then a swap-back of R ends it.
    const swapped = d(R, 'rolled_back', '2026-12-01T11:00:00Z');
    expect(judgePromotion({ releaseId: R, release: good(R, { state: 'bad' }), deployments: [...history, swapped], now: NOW, maxAgeMs: null }).reason).toBe('rolled_back');
  });

  it('marked bad without a deployment saying so (a crash recovery): refused', () => {
    expect(judgePromotion({ releaseId: R, release: good(R, { state: 'bad' }), deployments: [d(R, 'succeeded', '2026-12-01T10:00:00Z')], now: NOW, maxAgeMs: null }))
      .toMatchObject({ passed: false, reason: 'rolled_back' });
  });
});
