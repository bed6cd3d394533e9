import { describe, expect, it } from 'vitest';
import type { AppStatus, SlotStatus } from '../../contract/api.js';
import { hostProblem, restartBaseline, watchSwitched, type Watched } from '../../controller/fleet/sentinel.js';
import type { FleetMember } from '../../controller/fleet/session.js';

const B = `b${'2'.repeat(39)}`;
const A = `a${'1'.repeat(39)}`;

function status(live: 'blue' | 'green', releaseId: string, p: { status?: string; restarts?: number; healthOk?: boolean } = {}): AppStatus {
  const slot = (name: 'blue' | 'green'): SlotStatus => ({
    slot: name, port: 3001, releaseId: name === live ? releaseId : A, state: name === live ? 'live' : 'standby', live: name === live,
    process: { status: 'online', pid: 1, restarts: 0, cwd: null }, health: { ok: true, ms: 1 },
    processes: [{
      name: 'web', pm2Name: `sample-${name}`, port: 3001, instances: 1, online: (p.status ?? 'online') === 'online' ? 1 : 0,
      restarts: name === live ? p.restarts ?? 0 : 0, status: name === live ? p.status ?? 'online' : 'online',
      health: name === live && p.healthOk === false ? { ok: false, status: 503, ms: 2 } : { ok: true, ms: 1 },
    }],
  });
  return { app: 'sample', liveSlot: live, liveReleaseId: releaseId, generation: 1, publicUrl: 'http://x', slots: [slot('blue'), slot('green')], releases: [] };
}

const watched = (baseline: Map<string, number> | null = new Map([['sample-green', 2]])): Watched => ({ host: 'h1', slot: 'green', releaseId: B, baseline });

describe('watching hosts of earlier batches', () => {
  it('a host still on its slot, online, healthy, not restarted is fine', () => {
    expect(hostProblem(status('green', B, { restarts: 2 }), watched())).toBeNull();
    expect(restartBaseline(status('green', B, { restarts: 2 }), 'green')).toEqual(new Map([['sample-green', 2]]));
  });

  it('names a restart, a process down, a failing health endpoint, a host moved off its slot', () => {
    expect(hostProblem(status('green', B, { restarts: 3 }), watched())).toBe('sample-green: restarted (restarts 2 → 3)');
    expect(hostProblem(status('green', B, { status: 'errored' }), watched())).toBe('sample-green: PM2 status errored');
    expect(hostProblem(status('green', B, { restarts: 2, healthOk: false }), watched())).toBe('sample-green: health HTTP 503');
    expect(hostProblem(status('blue', A), watched())).toMatch(/^serves blue \(.*\), not green \(.*\)$/);
  });

  it('fails after `threshold` bad rounds in a row, and says which host and why', async () => {
    let restarts = 0;
    const member = { name: 'h1', agent: null, session: { agent: { get: async () => status('green', B, { restarts: restarts++ > 1 ? 5 : 0 }) } } } as unknown as FleetMember;
    const sentinel = watchSwitched([member], 'sample', [watched(null)], { intervalMs: 1, threshold: 3 });
    const failed = await sentinel.failed;
    sentinel.stop();
    expect(failed).toEqual({ host: 'h1', reason: 'sample-green: restarted (restarts 0 → 5) (3 round(s) in a row, watched after its batch)' });
  });

  it('a stopped watch reports nothing', async () => {
    const member = { name: 'h1', session: { agent: { get: async () => status('blue', A) } } } as unknown as FleetMember;
    const sentinel = watchSwitched([member], 'sample', [watched()], { intervalMs: 5, threshold: 1000 });
    sentinel.stop();
    const outcome = await Promise.race([sentinel.failed.then(() => 'failed'), new Promise((r) => setTimeout(() => r('quiet'), 50))]);
    expect(outcome).toBe('quiet');
  });
});

describe('a failed window is seen at its verdict', () => {
  it('the watch step ending "failed: …", or a swap-back begun; not a failing round, not a passed window', async () => {
    const { failedVerdict } = await import('../../controller/fleet/push.js');
    expect(failedVerdict({ step: 'watching', status: 'ok', message: 'failed: process check: restarted (3 round(s) in a row)' })).toBe(true);
    expect(failedVerdict({ step: 'swap_back', status: 'started', message: null })).toBe(true);
    expect(failedVerdict({ step: 'watching', status: 'info', message: 'check failing: process restarted' })).toBe(false);
    expect(failedVerdict({ step: 'watching', status: 'ok', message: '3 s window passed' })).toBe(false);
  });
});
