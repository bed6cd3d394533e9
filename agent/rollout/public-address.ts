import type { AgentConfig } from '../config.js';
import { otherSlot, type Slot } from '../../contract/names.js';
import type { AppConfigInput } from '../nginx/render-input.js';

/** A loopback-reachable base URL for a listen address: "*" and the any-addresses become loopback. */
function baseUrl(listenHost: string, port: number): string {
  const host = listenHost === '*' || listenHost === '0.0.0.0' ? '127.0.0.1' : listenHost === '::' || listenHost === '[::]' ? '::1' : listenHost;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

/** A Host header that nginx matches to a server_name: a plain name as is, "*.x" as "probe.x", "_" as any name. */
function hostFor(serverNames: readonly string[]): string {
  const plain = serverNames.find((name) => name !== '_' && !name.startsWith('*'));
  if (plain !== undefined) return plain;
  const wildcard = serverNames.find((name) => name.startsWith('*'));
  return wildcard !== undefined ? `probe${wildcard.slice(1)}` : 'localhost';
}

/** Where a probe through nginx goes: one (listenPort, Host) of a route, and a path inside it. */
export interface ProbeTarget {
  /** http://<listen address>:<listenPort>, reachable from the box. */
  baseUrl: string;
  hostHeader: string;
  /** The route's process's health path when given, else the route's path. */
  path: string;
}

/**
 * Pure: the (listenPort, Host) through which the agent proves a reload (generation marker) and a
 * flip (slot and release markers): the first route of `slot`, else the first of the other slot
 * (every server block of the include carries the markers of whichever slot serves), with its
 * first non-wildcard server name. Null when neither slot has a route: the include then has no
 * server block and there is nothing to prove over HTTP.
 */
export function probeTargetOf(
  input: Pick<AppConfigInput, 'listenHost' | 'slots'>,
  slot: Slot,
  healthPath?: (slot: Slot, process: string) => string | undefined,
): ProbeTarget | null {
  for (const from of [slot, otherSlot(slot)]) {
    const route = input.slots[from].routes[0];
    if (route === undefined) continue;
    return {
      baseUrl: baseUrl(input.listenHost, route.listenPort),
      hostHeader: hostFor(route.serverNames),
      path: healthPath?.(from, route.process) ?? route.path,
    };
  }
  return null;
}

/** Where nginx serves a legacy-configured app on this box (agent.json apps.<app>.public), for probes through nginx. */
export function publicUrlOf(config: AgentConfig, app: string): string {
  const pub = config.apps[app]!.public;
  return baseUrl(pub.listenHost, pub.listenPort);
}

/** The Host header that makes nginx pick a legacy-configured app's server block when probing through it. */
export function probeHostOf(config: AgentConfig, app: string): string {
  return hostFor(config.apps[app]!.public.serverNames);
}

/** The health URL of a slot's own port, bypassing nginx. */
export function slotHealthUrlOf(config: AgentConfig, app: string, slot: Slot): string {
  const appConfig = config.apps[app]!;
  return `http://127.0.0.1:${appConfig.slots[slot].port}${appConfig.health.path}`;
}
