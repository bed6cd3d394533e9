import type { AgentConfig } from '../config.js';
import { otherSlot, type Slot } from '../../contract/names.js';
import type { AppConfigInput, TlsInput } from '../nginx/render-input.js';

import type { AppSpec } from '../../contract/spec.js';
import { policyOf, routeListenPort } from '../spec/policy.js';

/** Where nginx listens for the app: the policy's listen host and first port, for probes through nginx. */
export function publicUrlOf(config: AgentConfig, app: string, port?: number, scheme: 'http' | 'https' = 'http'): string {
  const policy = policyOf(config.apps[app]!);
  const host = policy.listen.host === '*' || policy.listen.host === '0.0.0.0' ? '127.0.0.1' : policy.listen.host;
  const listenPort = port ?? policy.listen.ports[0] ?? 80;
  return `${scheme}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${listenPort}`;
}

/** A Host header that selects a server block listing `name`. */
export function probeHostFor(name: string): string {
  if (name === '_') return 'localhost';
  return name.startsWith('*') ? `probe${name.slice(1)}` : name;
}

/** The Host header that makes nginx pick the app's (first) server block when probing through it. */
export function probeHostOf(config: AgentConfig, app: string): string {
  return probeHostFor(policyOf(config.apps[app]!).serverNames[0] ?? '_');
}

/** A request through nginx that reaches a slot's process: for switch proofs and watch rounds. */
export interface RouteProbe {
  url: string;
  host: string;
  process: string;
  /** The status the process answers there (its health check's), or null when only the markers count. */
  expectStatus: number | null;
  /** Request headers that make nginx send its markers (the agent's probe secret); see agent/nginx/probe-secret.ts. */
  headers?: Record<string, string>;
}

/**
 * Pure: the probe through nginx for a spec: its first route, on the route's listen port with its
 * first server name. On a "/" route the process's own health path is asked (its expected status
 * counts); under a longer prefix, the prefix itself (only nginx's markers count). Null for a spec
 * without routes: nginx serves nothing of it.
 */
export function routeProbeOf(config: AgentConfig, app: string, spec: AppSpec, tls: TlsInput | null = null): RouteProbe | null {
  const route = spec.routes[0];
  if (!route) return null;
  const port = routeListenPort(route, policyOf(config.apps[app]!));
  if (port === null) return null;
  // With a certificate, the route's HTTPS twin: plain HTTP may only redirect there.
  const https = tls !== null && tls.certificate !== null && port === tls.httpPort;
  const health = spec.processes[route.process]?.health as { path?: string; expectStatus?: number } | undefined;
  const root = route.path === '/';
  const probePath = root && health?.path ? health.path : route.path;
  return {
    url: `${https ? publicUrlOf(config, app, tls.httpsPort, 'https') : publicUrlOf(config, app, port)}${probePath}`,
    host: probeHostFor(route.serverNames[0] ?? '_'),
    process: route.process,
    expectStatus: root && health?.expectStatus !== undefined ? health.expectStatus : null,
  };
}

/** The health URL of a process on its own port, bypassing nginx. */
export function processHealthUrl(port: number, healthPath: string): string {
  return `http://127.0.0.1:${port}${healthPath}`;
}

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
