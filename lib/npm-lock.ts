/**
 * package-lock.json (v2/v3 "packages" map) as a graph: where node finds a dependency, and the
 * installed locations a set of dependencies needs. Pure. Used to cut the project's lockfile for the
 * CLI package (scripts/cli-package.ts) and to pick the production node_modules of the agent package
 * (controller/setup/agent-package.ts).
 */

export interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  optional?: boolean;
  dev?: boolean;
  devOptional?: boolean;
  [key: string]: unknown;
}

export interface Lockfile { lockfileVersion: number; packages: Record<string, LockEntry> }

/** Where node finds package `name` required from the package installed at `from` ('' is the root). */
export function resolveInLock(packages: Record<string, LockEntry>, from: string, name: string): string | null {
  let base = from;
  for (;;) {
    const candidate = base === '' ? `node_modules/${name}` : `${base}/node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (base === '') return null;
    const nested = base.lastIndexOf('/node_modules/');
    base = nested < 0 ? '' : base.slice(0, nested);
  }
}

/**
 * The installed locations (e.g. `node_modules/a`, `node_modules/a/node_modules/b`) that the root's
 * `dependencies` need, with their dependencies, optional ones and peers, transitively; sorted.
 * `optional` marks a location reached only through optional edges. A missing required package
 * throws; a missing optional one is skipped.
 */
export function lockClosure(packages: Record<string, LockEntry>, dependencies: readonly string[], what = 'the package'): { location: string; optional: boolean }[] {
  const found = new Map<string, boolean>();
  const pending = dependencies.map((name) => ({ from: '', name, optional: false }));
  while (pending.length > 0) {
    const { from, name, optional } = pending.pop()!;
    const location = resolveInLock(packages, from, name);
    if (location === null) {
      if (optional) continue;
      throw new Error(`package-lock.json has no ${name} for ${from || what}: run npm install`);
    }
    const seen = found.get(location);
    // Reached again by a required edge: it is required after all (and its own edges are walked again as such).
    if (seen !== undefined && (seen === false || optional)) continue;
    found.set(location, optional);
    const entry = packages[location]!;
    for (const dep of Object.keys(entry.dependencies ?? {})) pending.push({ from: location, name: dep, optional });
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) pending.push({ from: location, name: dep, optional: true });
    for (const dep of Object.keys(entry.peerDependencies ?? {})) {
      pending.push({ from: location, name: dep, optional: optional || entry.peerDependenciesMeta?.[dep]?.optional === true });
    }
  }
  return [...found.keys()].sort().map((location) => ({ location, optional: found.get(location)! }));
}
