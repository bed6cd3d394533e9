import type { AgentConfig } from '../config.js';

import type { AppSpec } from '../../contract/spec.js';
import { policyOf, routeListenPort } from '../spec/policy.js';

/** Where nginx listens for the app: the policy's listen host and first port, for probes through nginx. */
export function publicUrlOf(config: AgentConfig, app: string, port?: number): string {
  const policy = policyOf(config.apps[app]!);
  const host = policy.listen.host === '*' || policy.listen.host === '0.0.0.0' ? '127.0.0.1' : policy.listen.host;
  const listenPort = port ?? policy.listen.ports[0] ?? 80;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${listenPort}`;
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
}

/**
 * Pure: the probe through nginx for a spec: its first route, on the route's listen port with its
 * first server name. On a "/" route the process's own health path is asked (its expected status
 * counts); under a longer prefix, the prefix itself (only nginx's markers count). Null for a spec
 * without routes: nginx serves nothing of it.
 */
export function routeProbeOf(config: AgentConfig, app: string, spec: AppSpec): RouteProbe | null {
  const route = spec.routes[0];
  if (!route) return null;
  const port = routeListenPort(route, policyOf(config.apps[app]!));
  if (port === null) return null;
  const health = spec.processes[route.process]?.health as { path?: string; expectStatus?: number } | undefined;
  const root = route.path === '/';
  const probePath = root && health?.path ? health.path : route.path;
  return {
    url: `${publicUrlOf(config, app, port)}${probePath}`,
    host: probeHostFor(route.serverNames[0] ?? '_'),
    process: route.process,
    expectStatus: root && health?.expectStatus !== undefined ? health.expectStatus : null,
  };
}

/** The health URL of a process on its own port, bypassing nginx. */
export function processHealthUrl(port: number, healthPath: string): string {
  return `http://127.0.0.1:${port}${healthPath}`;
}

