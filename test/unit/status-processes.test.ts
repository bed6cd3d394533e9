import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../controller/commands/status.js';
import type { AppStatus } from '../../contract/api.js';

describe('deploy status with a multi-process slot', () => {
  it('lists each process of a slot that has several, with port, instances online and restarts', () => {
    const status: AppStatus = {
      app: 'shop', liveSlot: 'blue', liveReleaseId: null, generation: 3, publicUrl: 'http://127.0.0.1:80',
      slots: [{
        slot: 'blue', port: 20000, releaseId: null, state: 'running', live: true,
        process: { status: 'online', pid: 10, restarts: 0, cwd: '/r' }, health: { ok: true, status: 200, ms: 2 },
        processes: [
          { name: 'api', pm2Name: 'shop-blue-api', port: 20000, instances: 1, online: 1, restarts: 0, status: 'online', health: { ok: true, status: 200, ms: 2 } },
          { name: 'web', pm2Name: 'shop-blue-web', port: 20001, instances: 2, online: 1, restarts: 3, status: 'errored', health: { ok: false, status: 502, ms: 2 } },
          { name: 'worker', pm2Name: 'shop-blue-worker', port: null, instances: 1, online: 1, restarts: 0, status: 'online', health: null },
        ],
      }],
      releases: [],
    };
    expect(formatStatus(status).split('\n').slice(2)).toEqual([
      '        api          :20000  online 1/1 online  restarts 0  healthy',
      '        web          :20001  errored 1/2 online  restarts 3  unhealthy (502)',
      '        worker       no port  online 1/1 online  restarts 0',
    ]);
  });
});
