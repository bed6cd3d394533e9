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
  /** The test side's address on the same /30 (on a LAN: the bridge's address). */
  peerAddress: string;
  /** That /30, e.g. 10.213.4.8/30 (on a LAN: the LAN's /24). */
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
const live = new Map<string, () => void>();
let exitHookInstalled = false;
const quiet = { stdio: 'ignore' as const, timeout: 10_000 };
function destroySync(name: string, hostIf: string, fallback: string | null): void {
  try {
    const pids = execFileSync(IP, ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
  } catch { /* no such namespace */ }
  try { execFileSync(IP, ['link', 'del', hostIf], quiet); } catch { /* already gone */ }
  try { execFileSync(IP, ['netns', 'del', name], quiet); } catch { /* already gone */ }
  if (fallback) try { execFileSync(IP, ['route', 'del', 'blackhole', fallback, 'metric', FALLBACK_METRIC], quiet); } catch { /* already gone */ }
}
function destroyLanSync(bridge: string, fallback: string): void {
  try { execFileSync(IP, ['link', 'del', bridge], quiet); } catch { /* already gone */ }
  try { execFileSync(IP, ['route', 'del', 'blackhole', fallback, 'metric', FALLBACK_METRIC], quiet); } catch { /* already gone */ }
}
/** Namespaces first (in insertion order: a LAN is registered before its hosts, so delete it last). */
function trackForExit(key: string, destroy: () => void): void {
  live.set(key, destroy);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const destroyOne of [...live.values()].reverse()) destroyOne();
  });
}

/**
 * A network of `bits` (30 for one host, 24 for a LAN) inside 10.200.0.0 – 10.254.255.255 that no
 * address or route of the test's namespace overlaps.
 */
async function freeSubnet(bits: 24 | 30 = 30): Promise<{ base: number }> {
  const used = `${await ip(['-4', 'route', 'show', 'table', 'all'], 'list routes')}\n${await ip(['-4', 'addr', 'show'], 'list addresses')}`;
  const taken = [...used.matchAll(/\b(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?/g)].map((m) => {
    const addr = ((Number(m[1]) << 24) >>> 0) + (Number(m[2]) << 16) + (Number(m[3]) << 8) + Number(m[4]);
    const bits = m[5] === undefined ? 32 : Number(m[5]);
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return { net: (addr & mask) >>> 0, mask };
  });
  const ownMask = (~0 << (32 - bits)) >>> 0;
  for (let attempt = 0; attempt < 100; attempt++) {
    // 10.200.0.0 – 10.254.255.255: away from the ranges Docker, libvirt and VPNs usually take.
    const offset = Math.floor(Math.random() * (1 << (16 - (32 - bits)))) << (32 - bits);
    const base = (((10 << 24) >>> 0) + ((200 + Math.floor(Math.random() * 55)) << 16) + offset) >>> 0;
    // Overlap if either network contains the other's base (only the default route's 0/0 is skipped).
    const clash = taken.some(({ net, mask }) => mask !== 0 && (((base & mask) >>> 0) === net || ((net & ownMask) >>> 0) === base));
    if (!clash) return { base };
  }
  throw new Error(`no free /${bits} found in 10.200.0.0/16 – 10.254.0.0/16`);
}

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/**
 * A private network of several hosts, as in a datacenter: one Linux bridge in the test's namespace
 * (the controller's side, with the LAN's first address), every host's veth enslaved to it by its
 * root end, the namespace ends addressed in the same /24. Hosts reach each other: their frames are
 * bridged from port to port and never pass the bridge device's own queue. Everything the test's
 * namespace (the controller) sends to any host leaves through the bridge device: its root qdisc is
 * the controller's ONE uplink, shared by every host, and `shape()` limits it with a token bucket
 * (`tc ... tbf`; this machine's kernel has no tc classifiers or policers, and needs none for this).
 * Nothing routes further: no forwarding is turned on, the namespaces have no default route, and a
 * blackhole route for the /24 catches the LAN's packets if its connected route is ever gone.
 */
export interface NetnsLan {
  /** The bridge's name in the test's namespace. */
  bridge: string;
  /** The bridge's address: where the hosts see the controller. */
  address: string;
  /** The /24, e.g. 10.213.4.0/24. */
  subnet: string;
  /** A free address of the LAN for the next host (.2, .3, ...). */
  nextAddress(): string;
  /**
   * Limits what the controller sends to the hosts (all of them together) to `rateMbit`; null takes
   * the limit off. Host-to-host traffic is not limited.
   */
  shape(rateMbit: number | null): Promise<void>;
  /** Bytes the controller has sent to the hosts over the uplink so far (the bridge device's tx counter). */
  uplinkTxBytes(): Promise<number>;
  /** Deletes the bridge and the fallback route (destroy the hosts first). Idempotent. */
  destroy(): Promise<void>;
}

/** Pure: the token bucket that shapes the uplink at `rateMbit`: a burst of 10 ms of the rate (at least 64 KiB, above any GSO packet). */
export function uplinkQdisc(bridge: string, rateMbit: number): string[] {
  const burstBytes = Math.max(65_536, Math.ceil((rateMbit * 1_000_000) / 8 / 100));
  return ['tc', 'qdisc', 'replace', 'dev', bridge, 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', String(burstBytes), 'latency', '50ms'];
}

export async function createNetnsLan(options: { uplinkMbit?: number | null } = {}): Promise<NetnsLan> {
  const id = randomBytes(4).toString('hex');
  const bridge = `sw${id}b`;
  const { base } = await freeSubnet(24);
  const address = dotted(base + 1);
  const subnet = `${dotted(base)}/24`;
  let next = 2;
  trackForExit(bridge, () => destroyLanSync(bridge, subnet));
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await runCommand([IP, 'link', 'del', bridge], { timeoutMs: 10_000 });
    await runCommand([IP, 'route', 'del', 'blackhole', subnet, 'metric', FALLBACK_METRIC], { timeoutMs: 10_000 });
    live.delete(bridge);
  };
  const tc = async (argv: string[], what: string, allowFail = false) => {
    const result = await runCommand(argv, { timeoutMs: 15_000 });
    if (result.exitCode !== 0 && !allowFail) throw new Error(`${what} (${argv.join(' ')}) failed (${result.exitCode}): ${outputTail(result.stderr)}`);
  };
  const lan: NetnsLan = {
    bridge, address, subnet,
    nextAddress: () => {
      if (next > 254) throw new Error(`LAN ${subnet} is full`);
      return dotted(base + next++);
    },
    async shape(rateMbit) {
      if (rateMbit === null) await tc(['tc', 'qdisc', 'del', 'dev', bridge, 'root'], 'unshape the uplink', true);
      else await tc(uplinkQdisc(bridge, rateMbit), 'shape the uplink');
    },
    async uplinkTxBytes() {
      return Number((await ip(['-j', '-s', 'link', 'show', bridge], 'read the uplink counters')).match(/"tx":\{"bytes":(\d+)/)?.[1] ?? NaN);
    },
    destroy,
  };
  try {
    await ip(['route', 'add', 'blackhole', subnet, 'metric', FALLBACK_METRIC], 'add the fallback blackhole route');
    // No STP, no forward delay: a port forwards as soon as it is up.
    await ip(['link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'], 'create the bridge');
    await ip(['addr', 'add', `${address}/24`, 'dev', bridge], 'address the bridge');
    await ip(['link', 'set', bridge, 'up'], 'bring the bridge up');
    if (options.uplinkMbit) await lan.shape(options.uplinkMbit);
  } catch (error) {
    await destroy();
    throw error;
  }
  return lan;
}

/**
 * Creates the namespace, its veth pair and addresses; `lo` and both link ends up. With `lan`, the
 * root end joins that LAN's bridge (no address of its own) and the namespace end takes the LAN's
 * next address; without, the pair gets a /30 of its own.
 */
export async function createNetnsHost(options: { label?: string; lan?: NetnsLan } = {}): Promise<NetnsHost> {
  const id = randomBytes(4).toString('hex');
  const label = (options.label ?? 'h').replace(/[^a-z0-9]/gi, '').slice(0, 8) || 'h';
  const name = `${NETNS_PREFIX}${id}-${label}`;
  // Interface names are limited to 15 bytes (IFNAMSIZ - 1): "sw" + 8 hex + side = 11.
  const hostIf = `sw${id}h`;
  const nsIf = `sw${id}n`;
  const { lan } = options;
  const base = lan ? null : (await freeSubnet()).base;
  const peerAddress = lan ? lan.address : dotted(base! + 1);
  const address = lan ? lan.nextAddress() : dotted(base! + 2);
  const exec = [IP, 'netns', 'exec', name] as const;
  // A LAN host's fallback route is the LAN's (removed with the bridge).
  const fallback = lan ? null : `${dotted(base!)}/30`;
  const subnet = lan ? lan.subnet : fallback!;

  trackForExit(name, () => destroySync(name, hostIf, fallback));
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
    if (fallback) await runCommand([IP, 'route', 'del', 'blackhole', fallback, 'metric', FALLBACK_METRIC], { timeoutMs: 10_000 });
    live.delete(name);
  };
  try {
    if (fallback) await ip(['route', 'add', 'blackhole', fallback, 'metric', FALLBACK_METRIC], 'add the fallback blackhole route');
    await ip(['netns', 'add', name], 'create the namespace');
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name], 'create the veth pair');
    if (lan) await ip(['link', 'set', hostIf, 'master', lan.bridge], 'join the LAN\'s bridge');
    else await ip(['addr', 'add', `${peerAddress}/30`, 'dev', hostIf], 'address the test side');
    await ip(['link', 'set', hostIf, 'up'], 'bring the test side up');
    await ip(['-n', name, 'addr', 'add', `${address}/${lan ? 24 : 30}`, 'dev', nsIf], 'address the namespace side');
    await ip(['-n', name, 'link', 'set', nsIf, 'up'], 'bring the namespace side up');
    await ip(['-n', name, 'link', 'set', 'lo', 'up'], 'bring the namespace loopback up');
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    name, address, peerAddress, subnet, hostIf, nsIf, exec,
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
