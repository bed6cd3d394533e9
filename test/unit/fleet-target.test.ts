import { describe, expect, it } from 'vitest';
import { parseDeployConfig } from '../../controller/config.js';
import { resolveTarget } from '../../controller/environments.js';
import { batchSizeFor, bakeMs, fleetOfOne, hostName, parseBatch, parseHostList, resolveFleet, selectHosts } from '../../controller/fleet/target.js';
import { openFleet, unreachableError } from '../../controller/fleet/session.js';
import { settleBounded } from '../../lib/bounded.js';
import { SlipwayError } from '../../contract/errors.js';
import type { AgentSession } from '../../controller/session.js';
import type { Target } from '../../controller/environments.js';

const SOURCE = '/repo/deploy.config.json';
const host = (address: string, extra: Record<string, unknown> = {}) => ({ address, user: 'deploy', ...extra });

function fleetConfig(rollout?: Record<string, unknown>) {
  return parseDeployConfig({
    app: 'shop',
    environments: {
      production: {
        hosts: [host('10.0.0.1'), host('10.0.0.2', { port: 2222, user: 'ops', keepaliveIntervalMs: 2000 }), host('10.0.0.3', { name: 'web-3' })],
        ...(rollout ? { rollout } : {}),
      },
      staging: { hosts: [host('10.0.1.1')] },
    },
  }, SOURCE);
}

function problems(raw: Record<string, unknown>): string[] {
  try {
    parseDeployConfig(raw, SOURCE);
  } catch (error) {
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe('config_invalid');
    return (error as SlipwayError).details ?? [];
  }
  throw new Error('expected config_invalid');
}

describe('fleet config', () => {
  it('resolves every host as a full single-host target with its own SSH settings and a name', () => {
    const fleet = resolveFleet(fleetConfig(), 'production');
    expect(fleet.hosts.map(hostName)).toEqual(['10.0.0.1', '10.0.0.2:2222', 'web-3']);
    expect(fleet.hosts[1]!.host).toMatchObject({ address: '10.0.0.2', port: 2222, user: 'ops', keepaliveIntervalMs: 2000 });
    expect(fleet.hosts[0]!.host).toMatchObject({ port: 22, user: 'deploy', keepaliveIntervalMs: 5000 });
    for (const t of fleet.hosts) expect(t).toMatchObject({ env: 'production', app: 'shop', project: 'shop', agent: { port: 7070 } });
    expect(fleet).toMatchObject({ env: 'production', app: 'shop', project: 'shop' });
  });

  it('defaults the rollout to a canary batch of 1, a 30 s bake, the first host as primary, 4 at once, the relay on port 7391', () => {
    expect(resolveFleet(fleetConfig(), 'production').rollout).toEqual({ batch: { kind: 'count', count: 1 }, bakeMs: 30_000, windowMs: null, primary: '10.0.0.1', concurrency: 4, relayPort: 7391 });
    expect(resolveFleet(fleetConfig({ batch: '50%', bake: '500ms', window: '2m', primary: 'web-3', concurrency: 2 }), 'production').rollout)
      .toEqual({ batch: { kind: 'percent', percent: 50 }, bakeMs: 500, windowMs: 120_000, primary: 'web-3', concurrency: 2, relayPort: 7391 });
  });

  it('refuses a primary that names no host, two hosts of one name or one address twice, a bad batch or bake', () => {
    const env = (hosts: unknown[], rollout?: unknown) => ({ app: 'shop', environments: { production: { hosts, ...(rollout ? { rollout } : {}) } } });
    expect(problems(env([host('a'), host('b')], { primary: 'c' }))).toEqual(['environments/production/rollout/primary: names no host of this environment (hosts: a, b)']);
    expect(problems(env([host('a'), host('a')]))).toEqual(expect.arrayContaining([expect.stringMatching(/hosts\/1\/name: "a" names another host too/), 'environments/production/hosts/1: a:22 is listed twice']));
    expect(problems(env([host('a')], { batch: 0 })).join('\n')).toMatch(/rollout\/batch/);
    expect(problems(env([host('a')], { batch: '150%' })).join('\n')).toMatch(/rollout\/batch/);
    expect(problems(env([host('a')], { bake: '30' })).join('\n')).toMatch(/rollout\/bake/);
    expect(problems(env([host('a,b')])).join('\n')).toMatch(/hosts\/0\/address/);
    expect(problems(env([host('a', { name: 'x,y' })])).join('\n')).toMatch(/hosts\/0\/name/);
  });

  it('refuses a fleet where a single-host command resolves its target, and resolves a fleet of one as before', () => {
    expect(() => resolveTarget(fleetConfig(), 'production')).toThrow(expect.objectContaining({ code: 'fleet_unsupported' }));
    expect(resolveTarget(fleetConfig(), 'staging').host.address).toBe('10.0.1.1');
    const single = resolveFleet(parseDeployConfig({ app: 'shop', host: host('h.example.com', { port: 2200 }) }, SOURCE), undefined);
    expect(single.hosts.map(hostName)).toEqual(['h.example.com:2200']);
    expect(single.env).toBeNull();
    expect(fleetOfOne(single.hosts[0]!).rollout.primary).toBe('h.example.com:2200');
  });

  it('sizes batches by count or percentage, at least one host and at most all', () => {
    expect(batchSizeFor(parseBatch(1), 3)).toBe(1);
    expect(batchSizeFor(parseBatch(5), 3)).toBe(3);
    expect(batchSizeFor(parseBatch('50%'), 3)).toBe(2);
    expect(batchSizeFor(parseBatch('1%'), 3)).toBe(1);
    expect(batchSizeFor(parseBatch('100%'), 7)).toBe(7);
    expect(bakeMs('2m')).toBe(120_000);
  });

  it('limits a fleet to named hosts (--hosts), keeping fleet order; an unknown name lists the hosts', () => {
    const fleet = resolveFleet(fleetConfig({ primary: '10.0.0.1' }), 'production');
    const some = selectHosts(fleet, parseHostList('web-3, 10.0.0.2:2222'));
    expect(some.hosts.map(hostName)).toEqual(['10.0.0.2:2222', 'web-3']);
    expect(some.rollout.primary).toBe('10.0.0.2:2222');
    expect(() => selectHosts(fleet, ['nope'])).toThrow(/no host named nope[\s\S]*/);
    try { selectHosts(fleet, ['nope']); } catch (error) { expect((error as SlipwayError).hint).toBe('hosts: 10.0.0.1, 10.0.0.2:2222, web-3'); }
  });
});

describe('openFleet', () => {
  const fakeSession = (name: string, closed: string[]): AgentSession => ({ close: async () => { closed.push(name); } } as unknown as AgentSession);

  it('opens each host with bounded concurrency; a failing host lands in unreachable, the others stay open until close', async () => {
    const fleet = resolveFleet(fleetConfig({ concurrency: 2 }), 'production');
    let inFlight = 0;
    let most = 0;
    const closed: string[] = [];
    const session = await openFleet(fleet, {
      open: async (target: Target) => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        if (hostName(target) === '10.0.0.2:2222') throw new SlipwayError('ssh_connect_failed', 'connect ECONNREFUSED');
        return fakeSession(hostName(target), closed);
      },
    });
    expect(most).toBe(2);
    expect(session.members.map((m) => m.name)).toEqual(['10.0.0.1', 'web-3']);
    expect(session.unreachable.map((m) => m.name)).toEqual(['10.0.0.2:2222']);
    expect(session.member('web-3')?.target.host.address).toBe('10.0.0.3');
    const error = unreachableError(session.unreachable, 'push');
    expect(error.code).toBe('fleet_unreachable');
    expect(error.details).toEqual(['10.0.0.2:2222: connect ECONNREFUSED']);
    await session.close();
    expect(closed.sort()).toEqual(['10.0.0.1', 'web-3']);
  });

  it('hosts not reached refuse a rollout (nothing changed) unless --skip-unreachable, which names each one and leaves it out', async () => {
    const { leaveOutUnreachable } = await import('../../controller/fleet/push.js');
    const fleet = resolveFleet(fleetConfig(), 'production');
    const misses = [{ name: 'web-3', target: fleet.hosts[2]!, error: new SlipwayError('ssh_connect_failed', 'connect ETIMEDOUT') }];
    const said: string[] = [];
    const out = { info: (line: string) => { said.push(line); } } as never;
    expect(leaveOutUnreachable([], false, 'promote refused, nothing changed', out)).toEqual([]);
    const refused = (() => { try { leaveOutUnreachable(misses, false, 'promote refused, nothing changed', out); } catch (error) { return error as SlipwayError; } return null; })();
    expect(refused).toMatchObject({ code: 'fleet_unreachable', message: 'promote refused, nothing changed: 1 host(s) could not be reached: web-3', details: ['web-3: connect ETIMEDOUT'] });
    expect(refused!.hint).toContain('--skip-unreachable');
    expect(said).toEqual([]);
    expect(leaveOutUnreachable(misses, true, 'promote refused, nothing changed', out)).toEqual(['web-3']);
    expect(said).toEqual(['  skipping unreachable web-3: connect ETIMEDOUT (recorded as drift)']);
  });

  it('settleBounded waits for every call and keeps input order', async () => {
    const results = await settleBounded([3, 1, 2], 2, async (n) => {
      await new Promise((r) => setTimeout(r, n));
      if (n === 1) throw new Error('one');
      return n * 10;
    });
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([30, 'one', 20]);
  });
});

describe('the fleet lock', () => {
  /** A member whose agent answers POST/DELETE /apps/:app/lock from a shared table, as each host's agent would. */
  const member = (name: string, held: Map<string, string>, calls: string[]) => ({
    name,
    target: {} as Target,
    session: {
      agent: {
        json: async (method: string, url: string, body: { releaseId: string; rolloutId: string }) => {
          calls.push(`${method} ${name}`);
          if (held.has(name)) throw new SlipwayError('app_locked', `shop is locked by ${held.get(name)} since 10:00 for deploy`);
          held.set(name, `me:${body.rolloutId}`);
          return { lock: { lockId: `lock-${name}` } };
        },
        delete: async (url: string) => {
          calls.push(`DELETE ${name} ${url.split('lockId=')[1]}`);
          held.delete(name);
          return { released: true };
        },
      },
    },
  }) as never;
  const out = { info: () => undefined } as never;

  it('takes every host\'s lock in name order, all or none; a refusal names the host and its holder and gives the others back', async () => {
    const { takeFleetLock, releaseFleetLock } = await import('../../controller/fleet/lock.js');
    const held = new Map<string, string>();
    const calls: string[] = [];
    const members = [member('web-3', held, calls), member('web-1', held, calls), member('web-2', held, calls)];
    const lock = await takeFleetLock(members, 'shop', 'r'.repeat(40), 'roll-1', { wait: false, waitTimeoutMs: 0 }, out);
    expect(calls).toEqual(['POST web-1', 'POST web-2', 'POST web-3']);
    expect([...lock]).toEqual([['web-1', 'lock-web-1'], ['web-2', 'lock-web-2'], ['web-3', 'lock-web-3']]);
    expect(await releaseFleetLock(members, 'shop', lock)).toEqual([]);
    expect(held.size).toBe(0);

    held.set('web-2', 'ops@ci');
    calls.length = 0;
    const refused = await takeFleetLock(members, 'shop', 'r'.repeat(40), 'roll-2', { wait: false, waitTimeoutMs: 0 }, out).catch((e: unknown) => e as SlipwayError);
    expect(refused).toMatchObject({ code: 'fleet_locked', message: expect.stringMatching(/web-2: shop is locked by ops@ci/) });
    expect(calls).toEqual(['POST web-1', 'POST web-2', 'DELETE web-1 lock-web-1']);
    expect([...held]).toEqual([['web-2', 'ops@ci']]);
  });
});
