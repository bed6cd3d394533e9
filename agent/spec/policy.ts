import type { HostBuildPolicy } from '../build/policy.js';
import type { AppSpec } from '../../contract/spec.js';

// What the box owner lets an app claim (agent.json apps.<app>), and the pure check of a release's
// spec against it. A spec that asks for more is refused at upload and again at rollout entry,
// each problem naming the spec field and the host setting that refused it.

/** What the box owner allows host builds (agent.json apps.<app>.build; schema in agent/build/policy.ts). */
export type BuildPolicy = HostBuildPolicy;

export interface AppPolicy {
  /** Where nginx listens for the app: the address, and the ports its routes may use. */
  listen: { host: string; ports: number[] };
  /** Server names the app's routes may use: exact, "*.example.com" (any subdomain), "_" (catch-all). */
  serverNames: string[];
  maxProcesses: number;
  /** The most instances over all processes of one slot. */
  maxInstances: number;
  build: BuildPolicy;
}

function list(values: readonly (string | number)[]): string {
  return values.length === 0 ? 'none' : values.join(', ');
}

/**
 * Pure: whether `allowed` (the host's list) covers the spec's server name `name`. Names compare
 * case-insensitively; "*.example.com" covers every name below example.com (a wildcard below it
 * too) but not example.com itself; "_" covers only "_".
 */
export function serverNameAllowed(name: string, allowed: readonly string[]): boolean {
  const n = name.toLowerCase();
  return allowed.some((entry) => {
    const a = entry.toLowerCase();
    if (a === n) return true;
    if (!a.startsWith('*.')) return false;
    const suffix = a.slice(1);
    const bare = n.startsWith('*') ? n.slice(1) : n;
    return bare.endsWith(suffix) && bare.length > suffix.length;
  });
}

/**
 * Pure: every way `spec` asks for more than `policy` allows app `app`, one line each:
 * `<spec field>: <what> (agent.json apps.<app>.<setting> allows ...)`. Empty when it fits.
 */
export function policyProblems(spec: AppSpec, policy: AppPolicy, app: string): string[] {
  const setting = (name: string) => `agent.json apps.${app}.${name}`;
  const problems: string[] = [];
  const names = Object.keys(spec.processes);
  if (names.length > policy.maxProcesses) {
    problems.push(`processes: ${names.length} processes is more than this host allows (${setting('maxProcesses')} is ${policy.maxProcesses})`);
  }
  const instances = names.reduce((sum, name) => sum + spec.processes[name]!.instances, 0);
  if (instances > policy.maxInstances) {
    const biggest = [...names].sort((a, b) => spec.processes[b]!.instances - spec.processes[a]!.instances)[0]!;
    problems.push(`processes/${biggest}/instances: ${instances} instances over all processes is more than this host allows (${setting('maxInstances')} is ${policy.maxInstances})`);
  }
  for (const [i, route] of spec.routes.entries()) {
    if (route.listenPort === undefined) {
      if (policy.listen.ports.length === 0) problems.push(`routes/${i}: needs a listen port, and this host allows none (${setting('listen.ports')} is empty)`);
    } else if (!policy.listen.ports.includes(route.listenPort)) {
      problems.push(`routes/${i}/listenPort: ${route.listenPort} is not allowed here (${setting('listen.ports')} allows ${list(policy.listen.ports)})`);
    }
    for (const [j, name] of route.serverNames.entries()) {
      if (!serverNameAllowed(name, policy.serverNames)) {
        problems.push(`routes/${i}/serverNames/${j}: ${JSON.stringify(name)} is not allowed here (${setting('serverNames')} allows ${list(policy.serverNames)})`);
      }
    }
  }
  for (const [i, check] of spec.smoke.entries()) {
    if (check.host !== undefined && !serverNameAllowed(check.host, policy.serverNames)) {
      problems.push(`smoke/${i}/host: ${JSON.stringify(check.host)} is not allowed here (${setting('serverNames')} allows ${list(policy.serverNames)})`);
    }
  }
  if (spec.build?.on === 'host') {
    if (!policy.build.allowHost) problems.push(`build/on: "host" is not allowed here (${setting('build.allowHost')} is false): build on the controller instead`);
    if (spec.build.timeoutMs > policy.build.timeoutMs) {
      problems.push(`build/timeoutMs: ${spec.build.timeoutMs} is longer than this host allows (${setting('build.timeoutMs')} is ${policy.build.timeoutMs})`);
    }
  }
  return problems;
}

/** The listen port of a route: its own, else the first the host allows. */
export function routeListenPort(route: { listenPort?: number | undefined }, policy: AppPolicy): number | null {
  return route.listenPort ?? policy.listen.ports[0] ?? null;
}

/** The policy fields of an app's config, and the legacy fields that imply policy. */
export interface PolicySource {
  listen?: { host?: string | undefined; ports?: number[] | undefined } | undefined;
  serverNames?: string[] | undefined;
  maxProcesses: number;
  maxInstances: number;
  build: BuildPolicy;
  public?: { listenHost: string; listenPort: number; serverNames: string[] } | undefined;
}

/**
 * Pure: the app's policy. A legacy `public` block adds its listen address, port and server names
 * to what `listen` and `serverNames` allow, so a legacy app's own routes always fit.
 */
export function policyOf(app: PolicySource): AppPolicy {
  const ports = [...(app.listen?.ports ?? [])];
  if (app.public && !ports.includes(app.public.listenPort)) ports.push(app.public.listenPort);
  const serverNames = [...(app.serverNames ?? [])];
  for (const name of app.public?.serverNames ?? []) if (!serverNames.some((n) => n.toLowerCase() === name.toLowerCase())) serverNames.push(name);
  return {
    listen: { host: app.listen?.host ?? app.public?.listenHost ?? '127.0.0.1', ports },
    serverNames,
    maxProcesses: app.maxProcesses,
    maxInstances: app.maxInstances,
    build: app.build,
  };
}
