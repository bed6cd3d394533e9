import { describe, expect, it } from 'vitest';
import { formatDeploymentEvents } from '../../controller/commands/history.js';

describe('deploy history --show', () => {
  it('lists every event of a deployment, build output included', () => {
    const text = formatDeploymentEvents({
      id: 7, app: 'shop', kind: 'deploy', releaseId: 'aaaaaaaaaaaa-bbbbbbbbbbbb', slot: 'green', previousSlot: 'blue', previousRelease: null,
      state: 'failed', outcome: 'failed', reason: 'host build of shop@aaaaaaaaaaaa failed', requestedBy: 'alice@laptop',
      startedAt: new Date().toISOString(), endedAt: null, note: null, forced: false, targetState: null, badMark: null, marksPrevious: false,
      events: [
        { deploymentId: 7, step: 'build', status: 'started', message: null, at: '2026-01-01T10:00:00.000Z', elapsedMs: null },
        { deploymentId: 7, step: 'build', status: 'info', message: '> node build.mjs', at: '2026-01-01T10:00:01.000Z', elapsedMs: null },
        { deploymentId: 7, step: 'build', status: 'failed', message: 'exit 2', at: '2026-01-01T10:00:02.000Z', elapsedMs: 2000 },
      ],
    });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^#7 deploy/);
    expect(lines.slice(-3)).toEqual([
      '    10:00:00 … build',
      '    10:00:01 · build       > node build.mjs',
      '    10:00:02 ✗ build      2.00 s  exit 2',
    ]);
  });
});
