import { isIP } from 'node:net';
import { RELAY_DEFAULT_PORT } from '../../contract/relay.js';
import { SlipwayError } from '../../contract/errors.js';
import type { DeployConfig, EnvironmentConfig, HostConfig, RolloutSettings } from '../config.js';
import { targetOnHost, resolveEnvironmentHosts, type Target } from '../environments.js';

/**
 * A fleet: one environment's hosts, each a full single-host Target (so every single-host function
 * works per host), and how a push rolls out over them. A config without environments, or an
 * environment with one host, is a fleet of one.
 */
export interface FleetTarget {
  env: string | null;
  project: string;
  /** The app's name on the boxes (the same on every host of the environment). */
  app: string;
  /** In config order; each host.name is set. */
  hosts: Target[];
  rollout: Rollout;
}

/** Hosts per batch: a fixed count, or a percentage of the fleet rounded up. */
export type BatchSize = { kind: 'count'; count: number } | { kind: 'percent'; percent: number };

export interface Rollout {
  batch: BatchSize;
  /** The short watch after each batch but the last. */
  bakeMs: number;
  /** The watch after the last batch; null: the release's own full window. */
  windowMs: number | null;
  /** Name of the host that alone runs the release phase and the pre-deploy backup. */
  primary: string;
  /** Hosts connected to and uploaded to at once. */
  concurrency: number;
  /** The port of the upload-once relay between hosts (rollout.relay.port). */
  relayPort: number;
}



export const DEFAULT_ROLLOUT: RolloutSettings = { batch: 1, bake: '30s', concurrency: 4 };

/** Pure: a host's name when the config gives none: the address, or address:port off port 22. */
export function defaultHostName(host: Pick<HostConfig, 'address' | 'port'>): string {
  return host.port === 22 || host.port === undefined ? host.address : `${host.address}:${host.port}`;
}

/** Pure: the name of a target's host (set at load; derived for targets built by hand). */
export function hostName(target: Pick<Target, 'host'>): string {
  return target.host.name ?? defaultHostName(target.host);
}

const BAKE_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** Pure: "30s" → 30000 (ms, s or m). */
export function bakeMs(text: string): number {
  const match = /^([0-9]{1,6})(ms|s|m)$/.exec(text);
  if (!match) throw new SlipwayError('config_invalid', `rollout.bake "${text}" is not a duration`, { hint: 'a number with ms, s or m, e.g. 30s' });
  return Number(match[1]) * BAKE_UNIT_MS[match[2]!]!;
}

/** Pure: 2 → count 2; "50%" → percent 50. */
export function parseBatch(batch: number | string): BatchSize {
  if (typeof batch === 'number') return { kind: 'count', count: batch };
  const match = /^(100|[1-9][0-9]?)%$/.exec(batch);
  if (!match) throw new SlipwayError('config_invalid', `rollout.batch "${batch}" is neither a count nor a percentage`, { hint: 'e.g. 2, or "50%"' });
  return { kind: 'percent', percent: Number(match[1]) };
}

/** Pure: how many hosts one batch switches in a fleet of `hosts` (at least 1, at most all). */
export function batchSizeFor(batch: BatchSize, hosts: number): number {
  const size = batch.kind === 'count' ? batch.count : Math.ceil((hosts * batch.percent) / 100);
  return Math.max(1, Math.min(hosts, size));
}

/** Pure: what the schema cannot say about one environment's hosts and rollout (paths from `where`). */
export function fleetProblems(where: string, env: Pick<EnvironmentConfig, 'hosts' | 'rollout'>): string[] {
  const problems: string[] = [];
  const hosts = env.hosts ?? [];
  const names = new Set<string>();
  const addresses = new Set<string>();
  hosts.forEach((host, i) => {
    const name = host.name ?? defaultHostName(host);
    if (names.has(name)) problems.push(`${where}/hosts/${i}/name: "${name}" names another host too; give each host its own "name"`);
    names.add(name);
    const address = `${host.address}:${host.port}`;
    if (addresses.has(address)) problems.push(`${where}/hosts/${i}: ${address} is listed twice`);
    addresses.add(address);
  });
  hosts.forEach((host, i) => {
    if (host.relay === undefined) return;
    if (isIP(host.relay) === 0) problems.push(`${where}/hosts/${i}/relay: "${host.relay}" is not an IP address; give the private address the other hosts reach this one at`);
    else if (/^(0\.0\.0\.0|::|0:0:0:0:0:0:0:0)$/.test(host.relay)) problems.push(`${where}/hosts/${i}/relay: ${host.relay} is a wildcard; give the one private address the other hosts reach this one at`);
  });
  const primary = env.rollout?.primary;
  if (primary !== undefined && hosts.length > 0 && !names.has(primary)) {
    problems.push(`${where}/rollout/primary: names no host of this environment (hosts: ${[...names].join(', ')})`);
  }
  return problems;
}

/** Pure: the rollout of a fleet from its settings (the first host is primary unless one is named). */
export function resolveRollout(settings: RolloutSettings | undefined, hosts: readonly Target[]): Rollout {
  const s = { ...DEFAULT_ROLLOUT, ...settings };
  return {
    batch: parseBatch(s.batch), bakeMs: bakeMs(s.bake), windowMs: s.window === undefined ? null : bakeMs(s.window),
    primary: s.primary ?? hostName(hosts[0]!), concurrency: s.concurrency, relayPort: s.relay?.port ?? RELAY_DEFAULT_PORT,
  };
}

/**
 * Pure: the fleet a command acts on: the environment named by --env (undefined: the default one),
 * every host of it. Same errors as resolveTarget for a missing or unknown environment.
 */
export function resolveFleet(config: DeployConfig, envName: string | undefined): FleetTarget {
  const { name, env, hosts } = resolveEnvironmentHosts(config, envName);
  const targets = hosts.map((host) => targetOnHost(config, name, host));
  const first = targets[0]!;
  return { env: first.env, project: first.project, app: first.app, hosts: targets, rollout: resolveRollout(env?.rollout, targets) };
}

/** Pure: a single-host target as a fleet of one (batch 1, itself primary). */
export function fleetOfOne(target: Target): FleetTarget {
  return { env: target.env, project: target.project, app: target.app, hosts: [target], rollout: resolveRollout(undefined, [target]) };
}

/**
 * Pure: the fleet limited to the named hosts (--hosts a,b), in fleet order; an unknown name is a
 * usage error listing the fleet's hosts. The primary moves to the first kept host when it is left out.
 */
export function selectHosts(fleet: FleetTarget, names: readonly string[]): FleetTarget {
  const known = fleet.hosts.map(hostName);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length > 0 || names.length === 0) {
    throw new SlipwayError('usage', `--hosts ${names.join(',') || '(empty)'}: ${unknown.length ? `no host named ${unknown.join(', ')}` : 'names no host'} in ${fleet.env ? `environment ${fleet.env}` : 'deploy.config.json'}`, {
      hint: `hosts: ${known.join(', ')}`,
    });
  }
  const hosts = fleet.hosts.filter((t) => names.includes(hostName(t)));
  const primary = names.includes(fleet.rollout.primary) ? fleet.rollout.primary : hostName(hosts[0]!);
  return { ...fleet, hosts, rollout: { ...fleet.rollout, primary } };
}

/** Pure: "a,b" → ["a","b"] (what --hosts takes). */
export function parseHostList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}
