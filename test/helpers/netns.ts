import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runCommand, outputTail } from '../../lib/exec.js';

/**
 * A "host" of its own on this machine: a network namespace the test creates, joined to the test's
 * namespace by one veth pair with a private /30 (10.x, picked free), `lo` up inside. Nothing routes
 * further: the namespace has no default route and the root side does no forwarding, so traffic
 * stays between the test and its namespaces. Needs root and iproute2.
 *
 * Processes run inside with `exec(argv)` = `ip netns exec NS argv...`: `ip` joins the namespace and
 * execs the command, so the spawned pid IS the command's pid (stop it by that pid as usual). Inside,
 * ports are the namespace's own: sshd on :22, nginx on :80, the agent on its loopback, as on a VPS.
 */
export interface NetnsHost {
  /** Namespace name (`ip netns list`), unique per test run. */
  name: string;
  /** The namespace's address on the veth: what the controller connects to. */
  address: string;
  /** The test side's address on the same /30. */
  peerAddress: string;
  /** That /30, e.g. 10.213.4.8/30. */
  subnet: string;
  /** Interface names: `hostIf` in the test's namespace, `nsIf` inside. */
  hostIf: string;
  nsIf: string;
  /** Prefix for an argv that must run inside: [...host.exec, 'cmd', ...args]. */
  exec: readonly string[];
  /** argv wrapped with the prefix. */
  wrap(argv: readonly string[]): string[];
  /** Pids of every process inside the namespace (`ip netns pids`). */
  pids(): Promise<number[]>;
  /**
   * Takes the namespace's end of the veth down: a real partition. The test side keeps its address
   * and route, so the controller's packets enter the veth and are dropped there, silently (no RST,
   * no ICMP), as when a link somewhere between two machines dies; inside, the box loses its route.
   */
  partition(): Promise<void>;
  /** Brings the namespace's end back up (its address stays, its route comes back). */
  heal(): Promise<void>;
  /**
   * SIGKILLs whatever still runs inside (by pid, only this namespace's), deletes the veth pair and
   * the namespace. Idempotent; also run on process exit if the test did not.
   */
  destroy(): Promise<void>;
}

const IP = 'ip';
/**
 * A blackhole route for the /30 behind the connected one: if the veth's route is ever gone (its
 * test side taken down, or a kernel set to ignore routes of links without carrier), packets for
 * the namespace die here instead of following the default route out of the machine.
 */
const FALLBACK_METRIC = '4242';
/** Prefix of every namespace this helper makes, so leftovers are recognisable as ours. */
export const NETNS_PREFIX = 'slwt-';

async function ip(args: string[], what: string): Promise<string> {
  const result = await runCommand([IP, ...args], { timeoutMs: 15_000 });
  if (result.exitCode !== 0) throw new Error(`${what} (ip ${args.join(' ')}) failed (${result.exitCode}): ${outputTail(result.stderr)}`);
  return result.stdout;
}

// Destroyed on exit if a test dies before calling destroy(): synchronous, as 'exit' handlers must be.
const live = new Map<string, { hostIf: string; fallback: string }>();
let exitHookInstalled = false;
function destroySync(name: string, hostIf: string, fallback: string): void {
  const quiet = { stdio: 'ignore' as const, timeout: 10_000 };
  try {
    const pids = execFileSync(IP, ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
  } catch { /* no such namespace */ }
  try { execFileSync(IP, ['link', 'del', hostIf], quiet); } catch { /* already gone */ }
  try { execFileSync(IP, ['netns', 'del', name], quiet); } catch { /* already gone */ }
  try { execFileSync(IP, ['route', 'del', 'blackhole', fallback, 'metric', FALLBACK_METRIC], quiet); } catch { /* already gone */ }
}
function trackForExit(name: string, hostIf: string, fallback: string): void {
  live.set(name, { hostIf, fallback });
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [ns, { hostIf: link, fallback }] of live) destroySync(ns, link, fallback);
  });
}

/** A /30 inside 10.0.0.0/8 that no address or route of the test's namespace overlaps. */
async function freeSubnet(): Promise<{ base: number }> {
  const used = `${await ip(['-4', 'route', 'show', 'table', 'all'], 'list routes')}\n${await ip(['-4', 'addr', 'show'], 'list addresses')}`;
  const taken = [...used.matchAll(/\b(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?/g)].map((m) => {
    const addr = ((Number(m[1]) << 24) >>> 0) + (Number(m[2]) << 16) + (Number(m[3]) << 8) + Number(m[4]);
    const bits = m[5] === undefined ? 32 : Number(m[5]);
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return { net: (addr & mask) >>> 0, mask };
  });
  for (let attempt = 0; attempt < 100; attempt++) {
    // 10.200.0.0 – 10.254.255.252: away from the ranges Docker, libvirt and VPNs usually take.
    const base = (((10 << 24) >>> 0) + ((200 + Math.floor(Math.random() * 55)) << 16) + (Math.floor(Math.random() * 16384) << 2)) >>> 0;
    // Overlap if either network contains the other's base (only the default route's 0/0 is skipped).
    const clash = taken.some(({ net, mask }) => mask !== 0 && (((base & mask) >>> 0) === net || ((net & 0xfffffffc) >>> 0) === base));
    if (!clash) return { base };
  }
  throw new Error('no free /30 found in 10.200.0.0/16 – 10.254.0.0/16');
}

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** Creates the namespace, its veth pair and addresses; `lo` and both link ends up. */
export async function createNetnsHost(options: { label?: string } = {}): Promise<NetnsHost> {
  const id = randomBytes(4).toString('hex');
  const label = (options.label ?? 'h').replace(/[^a-z0-9]/gi, '').slice(0, 8) || 'h';
  const name = `${NETNS_PREFIX}${id}-${label}`;
  // Interface names are limited to 15 bytes (IFNAMSIZ - 1): "sw" + 8 hex + side = 11.
  const hostIf = `sw${id}h`;
  const nsIf = `sw${id}n`;
  const { base } = await freeSubnet();
  const peerAddress = dotted(base + 1);
  const address = dotted(base + 2);
  const exec = [IP, 'netns', 'exec', name] as const;
  const fallback = `${dotted(base)}/30`;

  trackForExit(name, hostIf, fallback);
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    const pids = (await runCommand([IP, 'netns', 'pids', name], { timeoutMs: 10_000 })).stdout.split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await runCommand([IP, 'link', 'del', hostIf], { timeoutMs: 10_000 });
    await runCommand([IP, 'netns', 'del', name], { timeoutMs: 10_000 });
    await runCommand([IP, 'route', 'del', 'blackhole', fallback, 'metric', FALLBACK_METRIC], { timeoutMs: 10_000 });
    live.delete(name);
  };
  try {
    await ip(['route', 'add', 'blackhole', fallback, 'metric', FALLBACK_METRIC], 'add the fallback blackhole route');
    await ip(['netns', 'add', name], 'create the namespace');
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name], 'create the veth pair');
    await ip(['addr', 'add', `${peerAddress}/30`, 'dev', hostIf], 'address the test side');
    await ip(['link', 'set', hostIf, 'up'], 'bring the test side up');
    await ip(['-n', name, 'addr', 'add', `${address}/30`, 'dev', nsIf], 'address the namespace side');
    await ip(['-n', name, 'link', 'set', nsIf, 'up'], 'bring the namespace side up');
    await ip(['-n', name, 'link', 'set', 'lo', 'up'], 'bring the namespace loopback up');
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    name, address, peerAddress, subnet: fallback, hostIf, nsIf, exec,
    wrap: (argv) => [...exec, ...argv],
    async pids() {
      const out = await runCommand([IP, 'netns', 'pids', name], { timeoutMs: 10_000 });
      return out.stdout.split(/\s+/).filter(Boolean).map(Number);
    },
    async partition() {
      await ip(['-n', name, 'link', 'set', nsIf, 'down'], 'partition');
    },
    async heal() {
      await ip(['-n', name, 'link', 'set', nsIf, 'up'], 'heal');
    },
    destroy,
  };
}

/** Namespaces and links named like ours that still exist (for leak assertions). */
export async function leftovers(host: Pick<NetnsHost, 'name' | 'hostIf' | 'subnet'>): Promise<{ netns: boolean; link: boolean; route: boolean }> {
  const list = await ip(['netns', 'list'], 'list namespaces');
  const links = await runCommand([IP, 'link', 'show', host.hostIf], { timeoutMs: 10_000 });
  const routes = await ip(['-4', 'route', 'show', 'table', 'all'], 'list routes');
  return {
    netns: list.split('\n').some((line) => line.split(' ')[0] === host.name),
    link: links.exitCode === 0,
    route: routes.split('\n').some((line) => line.split(/\s+/).includes(host.subnet)),
  };
}
