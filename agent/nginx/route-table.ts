import { SLOTS, otherSlot, type Slot } from '../../contract/names.js';
import type { AppConfigInput, RouteInput } from './render-input.js';

// Pure: the union of both slots' routes as nginx serves it. Every server block and location of
// the include exists for both slots, so a flag flip moves every route at once without a reload;
// inside each location the flag-chosen slot picks its upstream, or 404 where that slot has no
// route covering the location.

/** nginx's defaults, written out so the include says what applies. */
export const DEFAULT_CLIENT_MAX_BODY_SIZE = '1m';
export const DEFAULT_READ_TIMEOUT_SECONDS = 60;

export interface UpstreamEntry { name: string; slot: Slot; process: string; port: number }

export interface LocationEntry {
  path: string;
  /** An exact-match location (`location = <path>`): see trailingSlashRedirects. */
  exact: boolean;
  /** The upstream each slot sends this location to; null: that slot answers 404 here (or redirects). */
  upstreams: Record<Slot, string | null>;
  /** Slots that answer with nginx's 301 to `<path>/` here (only in exact locations). */
  redirects: Record<Slot, boolean>;
  clientMaxBodySize: string;
  readTimeoutSeconds: number;
  websocket: boolean;
}

export interface ServerEntry {
  listenPort: number;
  /** As first spelled in the routes; nginx compares them case-insensitively. */
  serverNames: string[];
  locations: LocationEntry[];
}

export interface RouteTable {
  upstreams: UpstreamEntry[];
  servers: ServerEntry[];
  /** Whether any location passes WebSocket upgrades (the include then declares its Connection map). */
  websocket: boolean;
}

/** The upstream of one process of one slot: slipway_<app>_<slot>_<process>. */
export function upstreamName(app: string, slot: Slot, process: string): string {
  return `slipway_${app}_${slot}_${process}`;
}

/**
 * The per-app variable the WebSocket map sets: app names may hold "-", which ends an nginx
 * variable name, and never "_", so mapping "-" to "_" keeps two apps' variables apart.
 */
export function connectionVariable(app: string): string {
  return `slipway_${app.replace(/-/g, '_')}_connection`;
}

/** One (listenPort, server name): the routes each slot has there, by path. */
interface Host { listenPort: number; name: string; catchAll: boolean; paths: Record<Slot, Map<string, RouteInput>> }

function hostsOf(input: AppConfigInput): Host[] {
  const hosts = new Map<string, Host>();
  for (const slot of SLOTS) {
    for (const route of input.slots[slot].routes) {
      for (const name of route.serverNames) {
        const key = `${route.listenPort} ${name.toLowerCase()}`;
        let host = hosts.get(key);
        if (!host) {
          host = { listenPort: route.listenPort, name, catchAll: name === '_', paths: { blue: new Map(), green: new Map() } };
          hosts.set(key, host);
        }
        // Validation refuses a repeated (port, name, path) within a slot; the first would win anyway.
        if (!host.paths[slot].has(route.path)) host.paths[slot].set(route.path, route);
      }
    }
  }
  return withFallbacks([...hosts.values()]);
}

/** The suffix a leading wildcard matches ("*.shop.test" → ".shop.test"), or null for another name. */
function wildcardSuffix(name: string): string | null {
  return name.startsWith('*.') ? name.slice(1).toLowerCase() : null;
}

/**
 * A name the include has a block for may have no route in one slot, yet that slot alone would
 * still serve it through another of its names: nginx picks an exact name first, then the longest
 * leading wildcard ("*.shop.test" serves "a.shop.test" and every name under "*.a.shop.test"), and
 * "_" is the app's catch-all. So a slot without routes for a name takes those of its longest
 * matching wildcard, else of its "_", on the same port: each slot answers every name as its own
 * routes alone would, and a name only the other slot has does not turn this slot's catch-all
 * into a 404.
 */
function withFallbacks(hosts: Host[]): Host[] {
  const own = (host: Host, slot: Slot) => host.paths[slot].size > 0;
  return hosts.map((host) => {
    const paths = { ...host.paths };
    for (const slot of SLOTS) {
      if (own(host, slot) || host.catchAll) continue;
      const covered = wildcardSuffix(host.name) ?? `.${host.name.toLowerCase()}`;
      let fallback: Host | undefined;
      for (const other of hosts) {
        if (other === host || other.listenPort !== host.listenPort || !own(other, slot)) continue;
        const suffix = wildcardSuffix(other.name);
        if (suffix === null || !covered.endsWith(suffix) || covered === suffix) continue;
        if (!fallback || suffix.length > wildcardSuffix(fallback.name)!.length) fallback = other;
      }
      fallback ??= hosts.find((other) => other.catchAll && other.listenPort === host.listenPort && own(other, slot));
      if (fallback) paths[slot] = fallback.paths[slot];
    }
    return { ...host, paths };
  });
}

/**
 * The route a slot serves location `path` with: its longest route path that is a prefix of it.
 * nginx picks the longest matching location, so for any request landing in `path` this is the
 * route nginx would pick with that slot's routes alone.
 */
function coveringRoute(routes: Map<string, RouteInput>, path: string): RouteInput | null {
  let best: RouteInput | null = null;
  for (const [prefix, route] of routes) {
    if (path.startsWith(prefix) && (best === null || prefix.length > best.path.length)) best = route;
  }
  return best;
}

/**
 * nginx answers a request for "/api" with a 301 to "/api/" when a prefix location "/api/" exists
 * (with proxy_pass) and no location "/api". In the union of both slots' routes that would happen
 * for a slot that has no "/api/" route too, or not happen for the one that has it, whenever the
 * slots disagree: so where exactly one slot would redirect, an exact location for "/api" does per
 * slot what that slot's routes alone would do.
 */
function trailingSlashRedirects(host: Host, paths: Set<string>): string[] {
  const exact: string[] = [];
  for (const path of paths) {
    if (path.length < 2 || !path.endsWith('/')) continue;
    const bare = path.slice(0, -1);
    const redirects = SLOTS.filter((slot) => host.paths[slot].has(path) && !host.paths[slot].has(bare));
    if (redirects.length === 1) exact.push(bare);
  }
  return exact;
}

function locationsOf(input: AppConfigInput, host: Host): LocationEntry[] {
  const paths = new Set([...host.paths.blue.keys(), ...host.paths.green.keys()]);
  // Without a "/" location nginx would serve its own html root for every other path.
  paths.add('/');
  const entries = [...[...paths].map((path) => ({ path, exact: false })), ...trailingSlashRedirects(host, paths).map((path) => ({ path, exact: true }))];
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : Number(a.exact) - Number(b.exact)));
  return entries.map(({ path, exact }) => {
    const redirects = { blue: false, green: false };
    if (exact) for (const slot of SLOTS) redirects[slot] = host.paths[slot].has(`${path}/`) && !host.paths[slot].has(path);
    const covering = {
      blue: redirects.blue ? null : coveringRoute(host.paths.blue, path),
      green: redirects.green ? null : coveringRoute(host.paths.green, path),
    };
    const upstreams = Object.fromEntries(SLOTS.map((slot) => {
      const route = covering[slot];
      return [slot, route ? upstreamName(input.app, slot, route.process) : null];
    })) as Record<Slot, string | null>;
    // Settings cannot change per request: the slot about to serve decides (settingsFrom, else the
    // render-time slot), else the other's.
    const from = input.settingsFrom ?? input.slot;
    const settings = covering[from] ?? covering[otherSlot(from)];
    return {
      path,
      exact,
      upstreams,
      redirects,
      clientMaxBodySize: settings?.clientMaxBodySize ?? DEFAULT_CLIENT_MAX_BODY_SIZE,
      readTimeoutSeconds: settings?.readTimeoutSeconds ?? DEFAULT_READ_TIMEOUT_SECONDS,
      websocket: settings?.websocket ?? false,
    };
  });
}

/**
 * Pure: the include's upstreams and server blocks for a validated input. One server block per
 * (listenPort, set of names that route alike), so no name is claimed twice on a port (nginx would
 * ignore the second claim); per port, a block holding the catch-all "_" comes first, because the
 * first block of a port is the one nginx uses for a Host no block names.
 */
export function routeTable(input: AppConfigInput): RouteTable {
  const servers = new Map<string, ServerEntry & { catchAll: boolean; order: number }>();
  for (const host of hostsOf(input)) {
    const locations = locationsOf(input, host);
    const key = `${host.listenPort} ${JSON.stringify(locations)}`;
    const server = servers.get(key);
    if (server) {
      server.serverNames.push(host.name);
      server.catchAll ||= host.catchAll;
    } else {
      servers.set(key, { listenPort: host.listenPort, serverNames: [host.name], locations, catchAll: host.catchAll, order: servers.size });
    }
  }
  const ordered = [...servers.values()].sort((a, b) => a.listenPort - b.listenPort || Number(b.catchAll) - Number(a.catchAll) || a.order - b.order);

  const used = new Set(ordered.flatMap((server) => server.locations.flatMap((location) => SLOTS.map((slot) => location.upstreams[slot]))));
  const upstreams: UpstreamEntry[] = [];
  for (const slot of SLOTS) {
    for (const process of Object.keys(input.slots[slot].ports).sort()) {
      const name = upstreamName(input.app, slot, process);
      if (used.has(name)) upstreams.push({ name, slot, process, port: input.slots[slot].ports[process]! });
    }
  }
  return {
    upstreams,
    servers: ordered.map(({ listenPort, serverNames, locations }) => ({ listenPort, serverNames, locations })),
    websocket: ordered.some((server) => server.locations.some((location) => location.websocket)),
  };
}
