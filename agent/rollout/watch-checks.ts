import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { HealthChecker, ProcessManager } from './deps.js';
import { isHttpHealth, type SlotProcesses, type SlotTarget } from './slot-process.js';
import type { TrafficSwitch } from './traffic.js';
import type { WatchCheck } from './watch.js';

/** A release's smoke checks through nginx, one WatchCheck each (none for a release without any). */
export type SmokeChecks = (app: string, releaseId: string) => Promise<WatchCheck[]>;

/**
 * One round of the watch window, run concurrently: traffic through nginx on the release's first
 * route (status and the release marker), every listening process's own health endpoint, and every
 * process's PM2 state and restart count against the baseline taken when the window opened.
 */
export async function watchChecks(
  deps: {
    health: HealthChecker; processes: ProcessManager; slots: Pick<SlotProcesses, 'layout' | 'specOf'>; traffic: Pick<TrafficSwitch, 'probeOf'>;
    smokeChecks?: SmokeChecks | undefined;
  },
  { app, slot, releaseId }: SlotTarget,
  baselineRestarts: Record<string, number>,
): Promise<WatchCheck[]> {
  const spec = deps.slots.specOf(app, releaseId).spec;
  const layout = deps.slots.layout(app, slot);
  const timeoutFor = (healthTimeoutMs: number) => Math.min(healthTimeoutMs, Math.max(200, spec.watch.intervalMs * 2));
  const checks: Promise<WatchCheck>[] = [];
  const route = deps.traffic.probeOf(app, releaseId);
  if (route) {
    const routeHealth = spec.processes[route.process]?.health;
    const timeoutMs = timeoutFor(routeHealth && isHttpHealth(routeHealth) ? routeHealth.timeoutMs : 2_000);
    checks.push(deps.health.httpGet(route.url, { timeoutMs, headers: { ...route.headers, host: route.host } }).then((r): WatchCheck => {
      const statusOk = route.expectStatus === null ? r.status < 500 : r.status === route.expectStatus;
      if (!statusOk) return { name: 'public', ok: false, detail: `HTTP ${r.status} through nginx` };
      if (r.headers['x-slipway-release'] !== releaseId) return { name: 'public', ok: false, detail: `nginx served release ${r.headers['x-slipway-release'] ?? 'none'}` };
      return { name: 'public', ok: true, detail: 'ok' };
    }, (error: unknown): WatchCheck => ({ name: 'public', ok: false, detail: errorMessage(error) })));
  }
  const several = layout.length > 1;
  const who = (process: string) => (several ? `${process}: ` : '');
  for (const p of layout) {
    const health = spec.processes[p.process]?.health;
    if (p.port !== null && health && isHttpHealth(health)) {
      checks.push(deps.health.httpGet(`http://127.0.0.1:${p.port}${health.path}`, { timeoutMs: timeoutFor(health.timeoutMs) })
        .then((r): WatchCheck => ({ name: 'slot', ok: r.status === health.expectStatus, detail: `${who(p.process)}HTTP ${r.status}` }),
          (error: unknown): WatchCheck => ({ name: 'slot', ok: false, detail: `${who(p.process)}${errorMessage(error)}` })));
    }
    const baseline = baselineRestarts[p.pm2Name] ?? 0;
    checks.push(deps.processes.describe(p.pm2Name).then((proc): WatchCheck => {
      if (!proc) return { name: 'process', ok: false, detail: `${who(p.process)}not in PM2` };
      if (proc.status !== 'online') return { name: 'process', ok: false, detail: `${who(p.process)}PM2 status ${proc.status}` };
      if (proc.online !== undefined && proc.instances !== undefined && proc.online < proc.instances) {
        return { name: 'process', ok: false, detail: `${who(p.process)}${proc.online} of ${proc.instances} instances online` };
      }
      if (proc.restarts > baseline) return { name: 'process', ok: false, detail: `${who(p.process)}restarted (restarts ${baseline} → ${proc.restarts})` };
      return { name: 'process', ok: true, detail: 'online' };
    }, (error: unknown): WatchCheck => (error instanceof SlipwayError && error.code === 'pm2_daemon_down'
      // PM2's own death says nothing about the app (its processes live on and the watchdog re-homes
      // them): the public and slot checks still judge the release this round.
      ? { name: 'process', ok: true, detail: `unknown: ${error.message}` }
      : { name: 'process', ok: false, detail: `${who(p.process)}${errorMessage(error)}` })));
  }
  // The release's smoke checks (smoke.ts), when its spec has any.
  const smoke = deps.smokeChecks ? deps.smokeChecks(app, releaseId) : Promise.resolve([]);
  const [own, smokes] = await Promise.all([Promise.all(checks), smoke]);
  return [...own, ...smokes];
}
