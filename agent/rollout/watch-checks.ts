import type { AgentConfig } from '../config.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { pm2ProcessName } from '../../contract/names.js';
import type { HealthChecker, ProcessManager } from './deps.js';
import { probeHostOf, publicUrlOf, slotHealthUrlOf } from './public-address.js';
import type { SlotTarget } from './slot-process.js';
import type { WatchCheck } from './watch.js';

/** A release's smoke checks through nginx, one WatchCheck each (none for a release without any). */
export type SmokeChecks = (app: string, releaseId: string) => Promise<WatchCheck[]>;

/**
 * One round of the watch window, run concurrently: traffic through nginx (status and the release
 * marker), the slot's own health endpoint, and PM2's state and restart count against the baseline
 * taken when the window opened.
 */
export function watchChecks(
  deps: { config: AgentConfig; health: HealthChecker; processes: ProcessManager; smokeChecks?: SmokeChecks },
  { app, slot, releaseId }: SlotTarget,
  baselineRestarts: number,
): Promise<WatchCheck[]> {
  const { config } = deps;
  const appConfig = config.apps[app]!;
  const health = appConfig.health;
  const timeoutMs = Math.min(health.timeoutMs, Math.max(200, appConfig.watch.intervalMs * 2));
  const viaNginx = deps.health.httpGet(`${publicUrlOf(config, app)}${health.path}`, { timeoutMs, headers: { host: probeHostOf(config, app) } })
    .then((r): WatchCheck => {
      if (r.status !== health.expectStatus) return { name: 'public', ok: false, detail: `HTTP ${r.status} through nginx` };
      if (r.headers['x-slipway-release'] !== releaseId) return { name: 'public', ok: false, detail: `nginx served release ${r.headers['x-slipway-release'] ?? 'none'}` };
      return { name: 'public', ok: true, detail: 'ok' };
    }, (error: unknown): WatchCheck => ({ name: 'public', ok: false, detail: errorMessage(error) }));
  const direct = deps.health.httpGet(slotHealthUrlOf(config, app, slot), { timeoutMs })
    .then((r): WatchCheck => ({ name: 'slot', ok: r.status === health.expectStatus, detail: `HTTP ${r.status}` }),
      (error: unknown): WatchCheck => ({ name: 'slot', ok: false, detail: errorMessage(error) }));
  const processCheck = deps.processes.describe(pm2ProcessName(app, slot)).then((p): WatchCheck => {
    if (!p) return { name: 'process', ok: false, detail: 'not in PM2' };
    if (p.status !== 'online') return { name: 'process', ok: false, detail: `PM2 status ${p.status}` };
    if (p.restarts > baselineRestarts) return { name: 'process', ok: false, detail: `restarted (restarts ${baselineRestarts} → ${p.restarts})` };
    return { name: 'process', ok: true, detail: 'online' };
  }, (error: unknown): WatchCheck => (error instanceof SlipwayError && error.code === 'pm2_daemon_down'
    // PM2's own death says nothing about the app (its processes live on and the watchdog re-homes
    // them): the public and slot checks still judge the release this round.
    ? { name: 'process', ok: true, detail: `unknown: ${error.message}` }
    : { name: 'process', ok: false, detail: errorMessage(error) }));
  // The release's smoke checks (smoke.ts), when its spec has any.
  const smoke = deps.smokeChecks ? deps.smokeChecks(app, releaseId) : Promise.resolve([]);
  return Promise.all([viaNginx, direct, processCheck, smoke]).then(([a, b, c, rest]) => [a, b, c, ...rest]);
}
