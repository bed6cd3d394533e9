import { describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { asAgent, onlineAgentOf } from '../../controller/upgrade/host.js';
import { upgradeAgent, type RunningAgent, type UpgradeHost } from '../../controller/upgrade/upgrade.js';
import { hostLayout } from '../../controller/setup/layout.js';

/** A host as upgradeAgent sees it: installs, `current`, and what PM2 runs after a restart. */
function fakeHost(options: { current: string | null; installed?: string[]; starts?: (install: string) => boolean }) {
  const log: string[] = [];
  let current = options.current;
  const installed = new Set(options.installed ?? (current ? [current] : []));
  let pid = 100;
  let running: RunningAgent | null = current ? { pid, install: current, restarts: 0 } : null;
  const host: UpgradeHost = {
    currentInstall: async () => current,
    hasInstall: async (pkg) => installed.has(pkg.version),
    install: async (pkg) => { log.push(`install ${pkg.version}`); installed.add(pkg.version); },
    pointCurrentAt: async (version) => { log.push(`current → ${version}`); current = version; },
    restartAgent: async () => {
      log.push(`restart (${current})`);
      pid += 1;
      const ok = options.starts ? options.starts(current!) : true;
      running = ok ? { pid, install: current!, restarts: 0 } : { pid, install: current!, restarts: 5 };
    },
    runningAgent: async () => running,
  };
  return { host, log, healthy: async () => running !== null && running.restarts === 0 };
}

const pkg = (version: string) => ({ version, digest: 'd'.repeat(64), packageVersion: '1.0.0', tarball: async () => Buffer.from('tgz') });

describe('upgradeAgent (controller/upgrade/upgrade.ts)', () => {
  it('installs beside, switches current, restarts only the agent, and proves the new one', async () => {
    const { host, log, healthy } = fakeHost({ current: 'v1' });
    expect(await upgradeAgent(host, pkg('v2'), { health: healthy, timeoutMs: 1_000, pollMs: 1 })).toEqual({ kind: 'upgraded', from: 'v1', to: 'v2', agentPid: 101 });
    expect(log).toEqual(['install v2', 'current → v2', 'restart (v2)']);
  });

  it('changes nothing when the host runs this package already; reuses an install it has', async () => {
    const same = fakeHost({ current: 'v2' });
    expect(await upgradeAgent(same.host, pkg('v2'), { health: same.healthy, timeoutMs: 1_000, pollMs: 1 })).toEqual({ kind: 'unchanged', version: 'v2' });
    expect(same.log).toEqual([]);
    const back = fakeHost({ current: 'v2', installed: ['v1', 'v2'] });
    await upgradeAgent(back.host, pkg('v1'), { health: back.healthy, timeoutMs: 1_000, pollMs: 1 });
    expect(back.log).toEqual(['current → v1', 'restart (v1)']);
  });

  it('an agent PM2 keeps restarting: current goes back, the previous agent is restarted and proven', async () => {
    const { host, log, healthy } = fakeHost({ current: 'v1', starts: (install) => install !== 'bad' });
    const error = await upgradeAgent(host, pkg('bad'), { health: healthy, timeoutMs: 1_000, pollMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'upgrade_rolled_back', message: expect.stringContaining('PM2 restarted it 5 times') });
    expect(log).toEqual(['install bad', 'current → bad', 'restart (bad)', 'current → v1', 'restart (v1)']);
  });

  it('a new agent that never answers /health is given up on at the deadline', async () => {
    const { host } = fakeHost({ current: 'v1' });
    let asked = 0;
    const health = async () => { asked += 1; return (await host.currentInstall()) === 'v1'; };
    await expect(upgradeAgent(host, pkg('mute'), { health, timeoutMs: 50, pollMs: 5 })).rejects.toMatchObject({
      code: 'upgrade_rolled_back', message: expect.stringContaining('does not answer /health'),
    });
    expect(asked).toBeGreaterThan(1);
  });

  it('says so when the previous agent does not come back either', async () => {
    const { host, healthy } = fakeHost({ current: 'v1', starts: () => false });
    await expect(upgradeAgent(host, pkg('v2'), { health: healthy, timeoutMs: 1_000, pollMs: 1 })).rejects.toMatchObject({ code: 'upgrade_not_restored' });
  });

  it('refuses a host without an install (deploy setup first)', async () => {
    const { host, healthy } = fakeHost({ current: null });
    await expect(upgradeAgent(host, pkg('v2'), { health: healthy, timeoutMs: 1_000 })).rejects.toMatchObject({ code: 'upgrade_layout_missing', hint: 'set the host up first: deploy setup' });
  });
});

describe('upgrade host commands (controller/upgrade/host.ts)', () => {
  it('reads the online slipway-agent from pm2 jlist, past PM2\'s chatter', () => {
    const list = JSON.stringify([
      { name: 'other', pid: 5, pm2_env: { status: 'online', restart_time: 0 } },
      { name: 'slipway-agent', pid: 42, pm2_env: { status: 'online', restart_time: 3 } },
    ]);
    expect(onlineAgentOf(`>>>> In-memory PM2 is out-of-date\n${list}`)).toEqual({ pid: 42, restarts: 3 });
    expect(onlineAgentOf(JSON.stringify([{ name: 'slipway-agent', pid: 0, pm2_env: { status: 'errored' } }]))).toBeNull();
    expect(onlineAgentOf('not json')).toBeNull();
  });

  it('runs PM2 as the agent\'s user in its daemon\'s environment', () => {
    const layout = hostLayout('/');
    expect(asAgent(layout, ['pm2', 'jlist'])).toEqual([
      'runuser', '-u', 'slipway', '--', 'env', 'HOME=/var/lib/slipway',
      'PATH=/opt/slipway/node/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'pm2', 'jlist',
    ]);
    expect(asAgent(layout, ['pm2'], null).slice(0, 2)).toEqual(['env', 'HOME=/var/lib/slipway']);
  });
});
