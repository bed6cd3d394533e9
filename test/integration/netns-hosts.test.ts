import { readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { httpGet, startStack, type Stack } from '../helpers/stack.js';
import { createNetnsHost, createNetnsLan, leftovers, type NetnsHost, type NetnsLan } from '../helpers/netns.js';
import { isAlive, childPids } from '../helpers/nginx.js';
import { descendantPids } from '../helpers/sshd.js';
import { releaseOfCommit } from '../helpers/state.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { EXIT } from '../../controller/errors.js';
import { runCommand } from '../../lib/exec.js';
import { spawn } from 'node:child_process';
import { AGENT_MAIN } from '../helpers/agent-process.js';

/**
 * Several hosts on one machine (DESIGN-13 "host lab"): each box (sshd on :22, nginx, the agent
 * on its own loopback, its PM2 daemon and apps) runs in a network namespace the test made, and
 * the controller CLI reaches each over a veth at the namespace's address, as it would a VPS.
 */

/** 3; SLIPWAY_HOSTLAB_HOSTS=1 measures a single host's start. */
const HOSTS = Number(process.env.SLIPWAY_HOSTLAB_HOSTS ?? 3);
/** The status run's SSH keepalive: declared dead after about interval × (count + 1). */
const KEEPALIVE = { intervalMs: 1_000, countMax: 2 };

interface Host { netns: NetnsHost; stack: Stack | null; upMs: number }

/** Pids of everything a stack runs: sshd (and its connections), nginx master + workers, agent, PM2 daemon + apps. */
async function stackPids(stack: Stack): Promise<number[]> {
  const pm2Daemon = stack.pm2.daemonPid();
  return [
    stack.sshd.pid, ...await descendantPids(stack.sshd.pid),
    stack.nginx.pid, ...childPids(stack.nginx.pid),
    stack.agent.pid,
    ...(pm2Daemon === null ? [] : [pm2Daemon]), ...stack.pm2.appPids(),
  ];
}

/** Whether the namespace has an established TCP connection to `port` (its sockets, seen through a pid inside). */
async function establishedTo(pidInside: number, port: number): Promise<boolean> {
  const table = await readFile(`/proc/${pidInside}/net/tcp`, 'utf8');
  const local = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  // sl local_address rem_address st ...: state 01 = ESTABLISHED.
  return table.split('\n').slice(1).some((line) => {
    const [, localAddress, , state] = line.trim().split(/\s+/);
    return localAddress?.endsWith(local) === true && state === '01';
  });
}

describe('host lab: network namespaces', () => {
  it('a host the test forgot to destroy is gone when its process exits', async () => {
    // The built helper (dist/, compiled with the agent) in a process that exits without destroy().
    const helper = path.join(path.dirname(AGENT_MAIN), '..', 'test', 'helpers', 'netns.js');
    const script = `const { createNetnsHost } = await import(${JSON.stringify(helper)});
      const host = await createNetnsHost({ label: 'orphan' });
      console.log(JSON.stringify(host));
      process.exit(0);`;
    const result = await runCommand([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 30_000 });
    expect(result.exitCode, result.stderr).toBe(0);
    const host = JSON.parse(result.stdout) as NetnsHost;
    expect(host.name).toMatch(/^slwt-[0-9a-f]{8}-orphan$/);
    expect(host.hostIf.length).toBeLessThanOrEqual(15);
    expect(await leftovers(host)).toEqual({ netns: false, link: false, route: false });
  });
});

describe('host lab: a LAN of namespaces behind one shaped uplink', () => {
  let lan: NetnsLan | null = null;
  const members: NetnsHost[] = [];
  afterAll(async () => {
    for (const host of members) await host.destroy();
    await lan?.destroy();
  });

  it('hosts reach each other; the controller\'s traffic to every host leaves through the bridge (its tbf); nothing routes out; nothing is left after destroy', async () => {
    lan = await createNetnsLan({ uplinkMbit: 200 });
    for (const label of ['lana', 'lanb']) members.push(await createNetnsHost({ label, lan }));
    const [a, b] = members as [NetnsHost, NetnsHost];
    expect(a.subnet).toBe(lan.subnet);
    expect(a.peerAddress).toBe(lan.address);
    // A TCP server inside a, a client inside b: host to host, over the bridge's ports.
    const serve = `require('net').createServer((s) => { s.end('from a'); setImmediate(() => process.exit(0)); }).listen(7391, ${JSON.stringify(a.address)}, () => console.log('up'))`;
    const [cmd, ...args] = a.wrap([process.execPath, '-e', serve]);
    const server = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let said = '';
    server.stdout.on('data', (d: Buffer) => { said += d.toString(); });
    try {
      await waitFor(() => said.includes('up') || null, { timeoutMs: 10_000, description: 'the server in a listening' });
      const fetch = `require('net').connect(7391, ${JSON.stringify(a.address)}).on('data', (d) => process.stdout.write(d)).on('error', (e) => { console.error(e.message); process.exit(1); })`;
      const answer = await runCommand(b.wrap([process.execPath, '-e', fetch]), { timeoutMs: 15_000 });
      expect(answer.exitCode, answer.stderr).toBe(0);
      expect(answer.stdout).toBe('from a');
    } finally {
      server.kill('SIGKILL');
    }
    // The controller's side: one shaped queue on the bridge, counted there.
    const qdisc = await runCommand(['tc', 'qdisc', 'show', 'dev', lan.bridge], { timeoutMs: 10_000 });
    expect(qdisc.stdout).toMatch(/tbf .*rate 200Mbit/);
    const before = await lan.uplinkTxBytes();
    const toB = await runCommand([process.execPath, '-e', `require('net').connect(22, ${JSON.stringify(b.address)}).on('error', () => process.exit(0)).on('connect', function () { this.end(Buffer.alloc(100000)); })`], { timeoutMs: 15_000 });
    expect(toB.exitCode).toBe(0);
    expect(await lan.uplinkTxBytes()).toBeGreaterThan(before);
    for (const host of members) {
      const routes = await runCommand(host.wrap(['ip', 'route', 'show']), { timeoutMs: 10_000 });
      expect(routes.stdout).not.toMatch(/default/);
    }
    const forwarding = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
    await lan.shape(null);
    expect((await runCommand(['tc', 'qdisc', 'show', 'dev', lan.bridge], { timeoutMs: 10_000 })).stdout).not.toMatch(/tbf/);
    for (const host of members) await host.destroy();
    await lan.destroy();
    expect(await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(forwarding);
    for (const host of members) expect((await leftovers(host)).netns).toBe(false);
    expect((await runCommand(['ip', 'link', 'show', lan.bridge], { timeoutMs: 10_000 })).exitCode).not.toBe(0);
    expect((await runCommand(['ip', '-4', 'route', 'show', 'table', 'all'], { timeoutMs: 10_000 })).stdout).not.toContain(lan.subnet);
  });
});

describe('host lab: boxes in network namespaces, reached over veths', () => {
  const hosts: Host[] = [];

  afterAll(async () => {
    // Only if the test failed half-way: it stops and destroys everything itself.
    for (const host of hosts) {
      await host.stack?.stop().catch(() => undefined);
      await host.netns.destroy();
    }
  });

  it(`brings up ${HOSTS} hosts in parallel, pushes to each, detects a partition and heals`, async () => {
    // Up: namespaces first (cheap, sequential ip commands), then the boxes in parallel.
    const started = Date.now();
    for (let i = 0; i < HOSTS; i++) hosts.push({ netns: await createNetnsHost({ label: `h${i}` }), stack: null, upMs: 0 });
    await Promise.all(hosts.map(async (host) => {
      const t0 = Date.now();
      host.stack = await startStack({ netns: host.netns });
      host.upMs = Date.now() - t0;
    }));
    const allUpMs = Date.now() - started;
    const stacks = hosts.map((host) => host.stack!);

    for (const [i, stack] of stacks.entries()) {
      const { netns } = hosts[i]!;
      // Every daemon of the box runs inside its namespace: the test's own namespace has none of them.
      const inside = new Set(await netns.pids());
      for (const pid of await stackPids(stack)) expect(inside.has(pid), `pid ${pid} inside ${netns.name}`).toBe(true);
      // `ip netns exec` execs: the pids the helpers hold are the daemons themselves, not a wrapper.
      expect(await readlink(`/proc/${stack.sshd.pid}/exe`)).toBe('/usr/sbin/sshd');
      expect(await readlink(`/proc/${stack.agent.pid}/exe`)).toBe(process.execPath);
      // The controller connects to the namespace's address on port 22: known_hosts says so, without brackets.
      // Nothing routes out of the namespace: its only route is the veth's /30.
      const routes = (await runCommand(['ip', '-n', netns.name, '-4', 'route', 'show', 'table', 'all'], { timeoutMs: 10_000 })).stdout;
      expect(routes).not.toMatch(/default/);
      expect(routes).toContain(`${netns.subnet.replace('/30', '')}/30 dev ${netns.nsIf}`);
      expect(stack.sshd.host).toBe(netns.address);
      expect(await readFile(stack.sshd.knownHostsPath, 'utf8')).toMatch(new RegExp(`^${netns.address.replace(/\./g, '\\.')} ssh-ed25519 `));
    }

    // Push to each host at once: one deploy.config.json per host, as today.
    const pushStarted = Date.now();
    const pushes = await Promise.all(stacks.map((stack) => stack.deploy(['push'])));
    const pushMs = Date.now() - pushStarted;
    for (const [i, stack] of stacks.entries()) {
      const result = pushes[i]!;
      expect(result.code, `${hosts[i]!.netns.name}: ${result.stderr}`).toBe(0);
      const release = releaseOfCommit(stack.home, stack.app, await stack.repo.head());
      // Through that host's nginx, at its own address.
      const answer = await stack.get('/');
      expect(stack.publicUrl).toBe(`http://${hosts[i]!.netns.address}:80`);
      expect(answer.status).toBe(200);
      expect(answer.headers['x-slipway-release']).toBe(release);
      expect(JSON.parse(answer.body)).toMatchObject({ release, slot: 'blue' });
    }

    // Partition host 0 while a `deploy status` runs there. The agent is held (SIGSTOP) so the
    // status request is in flight on the SSH link when the link goes: only keepalive can tell.
    const [first] = hosts;
    const stack = first!.stack!;
    const statusConfig = path.join(stack.dir, 'status.config.json');
    const config = JSON.parse(await readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as { host: Record<string, unknown> };
    config.host.keepaliveIntervalMs = KEEPALIVE.intervalMs;
    config.host.keepaliveCountMax = KEEPALIVE.countMax;
    await writeFile(statusConfig, JSON.stringify(config, null, 2));
    process.kill(stack.agent.pid, 'SIGSTOP');
    let partitionedAt = 0;
    try {
      const running = stack.deployInBackground(['--json', 'status', '--config', statusConfig]);
      await waitFor(() => establishedTo(stack.agent.pid, stack.agentPort), { timeoutMs: 15_000, description: 'the status request to reach the held agent' });
      await first!.netns.partition();
      partitionedAt = Date.now();
      const lost = await withDeadline(running.done, 15_000, 'the status run to notice the partition');
      const detectedMs = Date.now() - partitionedAt;
      expect(lost.code, lost.stderr).toBe(EXIT.unreachable);
      expect(lost.stdout).toContain('"error":"ssh_connection_lost"');
      expect(lost.stdout).toMatch(/keepalive/i);
      // The bound: about interval × (count + 1), plus the CLI's exit.
      expect(detectedMs).toBeLessThan(KEEPALIVE.intervalMs * (KEEPALIVE.countMax + 1) + 2_500);
      (first as Host & { detectedMs?: number }).detectedMs = detectedMs;
    } finally {
      process.kill(stack.agent.pid, 'SIGCONT');
    }
    // Partitioned, nothing reaches the box: no answer from its nginx either.
    await expect(httpGet(`${stack.publicUrl}/`, { timeoutMs: 1_000 })).rejects.toThrow(/timed out|EHOSTUNREACH/);

    await first!.netns.heal();
    const healed = await waitFor(async () => {
      const result = await stack.deploy(['--json', 'status']);
      return result.code === 0 ? result : null;
    }, { timeoutMs: 30_000, intervalMs: 200, description: 'deploy status to work again after heal()' });
    expect(JSON.parse(healed.stdout)).toMatchObject({ liveSlot: 'blue' });
    expect((await stack.get('/')).status).toBe(200);

    // Down: every process by pid, then the namespaces; nothing is left behind.
    const stopStarted = Date.now();
    for (const host of hosts) {
      const pids = await stackPids(host.stack!);
      await host.stack!.stop();
      host.stack = null;
      expect(pids.filter(isAlive), `${host.netns.name} processes left`).toEqual([]);
      expect(await host.netns.pids(), `${host.netns.name} has no process left`).toEqual([]);
      await host.netns.destroy();
      expect(await leftovers(host.netns)).toEqual({ netns: false, link: false, route: false });
    }
    const downMs = Date.now() - stopStarted;
    console.log(`host lab: ${HOSTS} hosts up in parallel ${allUpMs} ms (each ${hosts.map((h) => h.upMs).join('/')} ms), `
      + `${HOSTS} pushes in parallel ${pushMs} ms, partition detected in ${(first as Host & { detectedMs?: number }).detectedMs} ms `
      + `(keepalive ${KEEPALIVE.intervalMs} ms × ${KEEPALIVE.countMax}), all down ${downMs} ms`);
  });
});
