// Shared by the issue 12 tests and bench rows: the fixtures and the deploy.spec.json the
// real-dependency app is deployed with.
import path from 'node:path';
import { REPO_ROOT } from './agent-process.js';

export const MULTI_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'multi-app-full');
export { DEPS_APP_DIR } from './npm-warm-cache.js';

/**
 * deploy.spec.json of the deps-app fixture: one web process (server.js) behind the catch-all
 * name on `listenPort`, built by `npm ci` + `npm run build` (mustache, a dev dependency) and
 * pruned to production dependencies, on the controller or on the host.
 */
export function depsSpec(on: 'controller' | 'host', listenPort: number, watch: Record<string, unknown> = { windowMs: 1000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true }): string {
  return `${JSON.stringify({
    processes: {
      web: { script: 'server.js', health: { path: '/health', intervalMs: 100, timeoutMs: 1000, retries: 300 } },
    },
    routes: [{ serverNames: ['_'], path: '/', process: 'web', listenPort }],
    build: { on, dirs: [{ path: '.', install: 'npm', commands: [['npm', 'run', 'build']], prune: true }], timeoutMs: 300_000 },
    watch,
  }, null, 2)}\n`;
}
