import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import type { StateStore } from './state/store.js';
import type { RolloutService, ProcessManager } from './rollout/rollout.js';
import type { Pm2DaemonStatus } from '../contract/api.js';
import type { CleanupResult } from './release/cleanup.js';
import { ReleaseService, type ReleaseRepository, type ReleaseServiceDeps } from './release/service.js';
import { allowedReleaseSpec } from './spec/release-spec.js';
import { SlotProbeCache } from './slot-probe.js';
import { StatusService } from './status.js';
import { hostGuard } from './plugins/host-guard.js';
import { authentication } from './plugins/authentication.js';
import { contentTypes } from './plugins/content-types.js';
import { auditLog } from './plugins/audit-log.js';
import { clientErrorHandler, errorHandler, frameworkErrors, type ErrorContext } from './plugins/error-handler.js';
import { healthRoutes } from './routes/health.js';
import { appRoutes } from './routes/apps.js';
import { releaseRoutes } from './routes/releases.js';
import { deploymentRoutes } from './routes/deployments.js';
import { lockRoutes } from './routes/locks.js';
import { fleetRoutes } from './routes/fleet.js';
import { backupRoutes, type BackupRouteOptions } from './routes/backups.js';
import { notificationRoutes } from './routes/notifications.js';
import { metricsRoutes } from './routes/metrics.js';
import { logRoutes, type LogRouteOptions } from './routes/logs.js';
import { requireApp } from './apps.js';
import { tlsRoutes, type TlsRouteOptions } from './routes/tls.js';
import { relayRoutes } from './routes/relay.js';
import { envRoutes } from './routes/env.js';
import { AppEnvFiles } from './env-files.js';
import { releaseSpecOf } from './spec/release-spec.js';
import type { RelayKeep } from './release/relay-keep.js';
import type { RelaySessions } from './release/relay-serve.js';
import type { RelayFetchOptions } from './release/relay-fetch.js';
import { createMetrics, type MetricsSource } from './metrics/registry.js';
import { doraFigures } from './metrics/dora.js';
import { doraHistory } from './metrics/history.js';
import type { Outbox } from './notify/outbox.js';

export interface ServerDeps {
  config: AgentConfig;
  token: string;
  state: StateStore;
  releases: ReleaseRepository;
  rollouts: RolloutService;
  processes: ProcessManager;
  health: { checkOnce(url: string, options: { timeoutMs: number; expectStatus: number }): Promise<{ ok: boolean; status?: number; error?: string; ms: number }> };
  cleanup: (app: string, actor: string) => Promise<CleanupResult>;
  backups: Omit<BackupRouteOptions, 'logger'>;
  logger: Logger;
  version: string;
  /** The PM2 daemon's state, answered without a PM2 call. */
  pm2Status?: () => Pm2DaemonStatus;
  /** The notification outbox, for GET /notifications. */
  outbox?: Outbox;
  /** What GET /apps/:app/logs reads: the slot processes' PM2 log tails (agent/rollout/slot-process.ts). */
  logs?: LogRouteOptions['logs'];
  /** Promotion notifications (agent/notify/notices.ts). */
  notifyPromotion?: ReleaseServiceDeps['notifyPromotion'];
  /** Certificates (agent/tls): GET /apps/:app/tls, POST /apps/:app/tls/runs. */
  tls?: Omit<TlsRouteOptions, 'requireApp'>;
  /** What GET /metrics and GET /apps/:app/dora read (the app status comes from the server's own view). */
  metrics?: Omit<MetricsSource, 'appStatus'>;
  /** The upload-once relay (agent/release/relay-*.ts): kept uploads and the sessions serving them. */
  relay?: { keep: RelayKeep; sessions: RelaySessions; fetch?: RelayFetchOptions };
}

/** JSON bodies are small: the largest real one is a rollback reason of 500 characters. */
const BODY_LIMIT_BYTES = 64 * 1024;
/** Longer than any name or id a path holds (app and job names ≤ 40, release ids ≤ 59). */
const MAX_PARAM_LENGTH = 100;

/** The keys the app's live release requires (its effective spec's requiredEnv); null without one. */
function liveRequiredEnv(deps: Pick<ServerDeps, 'config' | 'state'>, app: string): string[] | null {
  const live = deps.state.app(app)?.liveSlot;
  const releaseId = live ? deps.state.slot(app, live).releaseId : null;
  const row = releaseId ? deps.state.release(app, releaseId) : undefined;
  if (!row) return null;
  try {
    return releaseSpecOf(app, deps.config.apps[app]!, row.manifest, deps.state.appOverrides(app)?.overrides ?? null).spec.requiredEnv;
  } catch {
    return null;
  }
}

/**
 * The agent's HTTP API, composed: the plugins every request passes (in the order they act:
 * addressing, token, body types, audit, errors), then one plugin per resource.
 */
export function buildServer(deps: ServerDeps): FastifyInstance {
  const errors: ErrorContext = { home: deps.config.home, bodyLimitBytes: BODY_LIMIT_BYTES, maxParamLength: MAX_PARAM_LENGTH };
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Bad input is rejected, never "fixed": no coercion, no silent removal of unknown fields.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true, useDefaults: false } },
    frameworkErrors: frameworkErrors(errors),
    clientErrorHandler,
  });

  const status = new StatusService({
    config: deps.config, state: deps.state, probes: new SlotProbeCache(deps.processes, deps.health),
    hasRelease: (app, releaseId) => deps.releases.has(app, releaseId),
    ...(deps.pm2Status ? { pm2Status: deps.pm2Status } : {}),
    ...(deps.tls ? { tlsSummary: (app: string) => deps.tls!.service.summary(app) } : {}),
  });
  const releases = new ReleaseService({
    apps: deps.config.apps, state: deps.state, releases: deps.releases, cleanup: deps.cleanup, logger: deps.logger,
    checkManifest: (app, manifest, overrides) => { allowedReleaseSpec(app, deps.config.apps[app]!, manifest, overrides); },
    ...(deps.notifyPromotion ? { notifyPromotion: deps.notifyPromotion } : {}),
    ...(deps.relay ? {
      keepForRelay: async (partFile: string, sha256: string) => {
        await deps.relay!.keep.keep(partFile, sha256);
        deps.relay!.sessions.sweepAfterKeepAge();
      },
      trackArrival: (sha256: string, bytes: number) => deps.relay!.sessions.arrivals.track(sha256, bytes),
    } : {}),
  });

  void app.register(hostGuard);
  void app.register(authentication, { token: deps.token });
  void app.register(contentTypes);
  void app.register(auditLog, { record: (entry) => deps.state.audit(entry) });
  void app.register(errorHandler, errors);

  void app.register(healthRoutes, { version: deps.version });
  void app.register(appRoutes, { status });
  void app.register(releaseRoutes, { status, releases });
  void app.register(deploymentRoutes, { rollouts: deps.rollouts, status });
  void app.register(lockRoutes, { locks: deps.rollouts });
  void app.register(fleetRoutes, { state: deps.state, requireApp: (name) => requireApp(deps.config.apps, name) });
  void app.register(backupRoutes, { ...deps.backups, logger: deps.logger });
  const envFiles = new AppEnvFiles({ config: deps.config, logger: deps.logger, requiredEnv: (name) => liveRequiredEnv(deps, name) });
  void app.register(envRoutes, { files: envFiles, requireApp: (name) => requireApp(deps.config.apps, name) });
  if (deps.outbox) void app.register(notificationRoutes, { outbox: deps.outbox });
  if (deps.logs) void app.register(logRoutes, { state: deps.state, requireApp: (name) => requireApp(deps.config.apps, name), logs: deps.logs });
  if (deps.relay) void app.register(relayRoutes, { sessions: deps.relay.sessions, releases, ...(deps.relay.fetch ? { fetch: deps.relay.fetch } : {}) });
  if (deps.tls) void app.register(tlsRoutes, { ...deps.tls, requireApp: (name) => requireApp(deps.config.apps, name) });
  if (deps.metrics) {
    const source = deps.metrics;
    void app.register(metricsRoutes, {
      registry: createMetrics({ ...source, appStatus: (name) => status.app(name) }),
      apps: source.apps(),
      dora: (name, sinceMs) => {
        const until = (source.now ?? (() => new Date()))();
        return doraFigures(doraHistory(source.db, name), new Date(until.getTime() - sinceMs), until);
      },
    });
  }
  return app;
}
