import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../controller/commands/status.js';
import type { AppStatus, Pm2DaemonStatus } from '../../contract/api.js';

const A = 'a'.repeat(40);

function status(pm2?: Pm2DaemonStatus): AppStatus {
  return {
    app: 'shop', liveSlot: 'blue', liveReleaseId: A, generation: 3, publicUrl: 'http://127.0.0.1:8080',
    ...(pm2 ? { pm2 } : {}),
    slots: [
      { slot: 'blue', port: 3001, releaseId: A, state: 'running', live: true, process: null, health: { ok: true, status: 200, ms: 2 } },
      { slot: 'green', port: 3002, releaseId: null, state: 'empty', live: false, process: null, health: null },
    ],
    releases: [],
  };
}

describe('deploy status: the PM2 daemon', () => {
  it('says the daemon is down, why, and that slot processes are unknown rather than missing', () => {
    const text = formatStatus(status({ state: 'down', pid: 4242, since: '2026-01-01T00:00:00.000Z', message: 'PM2 daemon is down: the PM2 daemon (pid 4242) is not running; the agent is restarting it' }));
    expect(text).toContain('PM2 daemon down since 2026-01-01T00:00:00.000Z: PM2 daemon is down: the PM2 daemon (pid 4242) is not running; the agent is restarting it');
    expect(text).toContain('not known to PM2 (daemon down)');
    expect(text).not.toContain('no process');
    expect(text).toContain('healthy');
  });

  it('says nothing extra while the daemon is up, or when an older agent does not report it', () => {
    for (const pm2 of [{ state: 'up', pid: 1, since: '2026-01-01T00:00:00.000Z', message: null } as const, undefined]) {
      const text = formatStatus(status(pm2));
      expect(text).not.toContain('PM2 daemon');
      expect(text).toContain('no process');
    }
  });
});
