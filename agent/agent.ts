import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import { loadOrCreateToken } from './auth.js';
import { openDatabase, type Db } from './state/db.js';
import { StateStore } from './state/store.js';
import { ReleaseStore } from './release/store.js';
import { stopUnpackThread } from './release/extract-thread.js';
import { RelayKeep } from './release/relay-keep.js';
import { RelaySessions } from './release/relay-serve.js';
import { Pm2Adapter } from './pm2.js';
import { NginxController } from './nginx/controller.js';
import { renderAppConfig } from './nginx/render.js';
import { ensureProbeSecret, probeHeaders } from './nginx/probe-secret.js';
import { AppLogReader } from './logs/app-logs.js';
import { LogRotationJob } from './logs/rotation.js';
import type { Slot } from '../contract/names.js';
import { checkOnce, httpGet, waitHealthy } from './health.js';
import { randomUUID } from 'node:crypto';
import { createRollouts } from './rollout/rollout.js';
import { buildServer } from './server.js';
import { recoverAfterRestart } from './rollout/recovery.js';
import { reconcileApp, tryAppLock, waitForAppLock, type ReconcileDeps, type SlotActivation } from './rollout/rehome.js';
import { Pm2Watchdog } from './pm2-watchdog.js';
import { cleanupReleases } from './release/cleanup.js';
import { CronJob } from './cron.js';
import { VERSION } from '../contract/version.js';
import { BackupService } from './backups/service.js';
import { BackupScheduler } from './backups/scheduler.js';
import { webhookNotifier } from './backups/notify.js';
import os from 'node:os';
import { Outbox } from './notify/outbox.js';
import { NotificationDelivery } from './notify/delivery.js';
import { Notices } from './notify/notices.js';
import { HostBuilder } from './build/host-build.js';
import { HostBuildStore } from './build/store.js';
import { checkNativePlatform, hostPlatform, isNativeAddon, manifestBuildPlatform } from './build/platform.js';
import { carriedSpecOf } from './spec/release-spec.js';
import { releasePreparation } from './rollout/release-preparation.js';
import { runSmokeChecks } from './rollout/smoke.js';
import { publicUrlOf } from './rollout/public-address.js';
import { SlipwayError } from '../contract/errors.js';
import { waitFor } from '../lib/wait.js';
import { TlsStore } from './tls/store.js';
import { TlsService } from './tls/service.js';
import { ACME_DEFAULTS } from './tls/config.js';
import type { TrafficSwitch } from './rollout/traffic.js';

export interface RunningAgent {
  server: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Wires the agent's parts together and starts listening; the only place that knows all of them. */
export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  mkdirSync(config.home, { recursive: true, mode: 0o700 });
  // mkdir's mode only applies to a new dir: a home that already exists (a mount point, a dir made
  // by hand) is tightened too.
  chmodSync(config.home, 0o700);
  for (const dir of ['incoming', 'releases', 'artifacts', 'apps']) mkdirSync(path.join(config.home, dir), { recursive: true, mode: 0o700 });
  if (config.legacyMoves) {
    logger.warn({ moves: config.legacyMoves }, 'agent.json uses legacy app fields; they keep working (translated into a legacy spec for releases without deploy.spec.json), but belong elsewhere now: see "moves"');
  }
  const token = await loadOrCreateToken(config.api.tokenFile);
  const probe = await ensureProbeSecret(config.home);
  const db: Db = openDatabase(path.join(config.home, 'agent.db'));
  const state = new StateStore(db);
  for (const app of Object.keys(config.apps)) state.ensureApp(app);
  // Notifications: queued in SQLite with what they report, delivered in the background.
  NotificationDelivery.checkConfig(config.notifications);
  const outbox = new Outbox(db, config.notifications);
  const delivery = new NotificationDelivery({ outbox, config: config.notifications, logger });
  const notices = new Notices({ config, state, outbox, wake: () => delivery.kick() });
  const backupWebhook = webhookNotifier({
    url: config.backups?.notifyWebhook, timeoutMs: config.backups?.notifyTimeoutMs ?? 5_000, host: os.hostname(), logger,
  });
  // Before anything else runs: resolve backup runs a crash interrupted and remove their temp files.
  const backups = new BackupService({
    config, db, logger,
    notify: async (notice) => {
      try {
        notices.backup(notice);
      } catch (error) {
        logger.error({ err: error }, 'could not queue a backup notification');
      }
      await backupWebhook(notice);
    },
  });
  await backups.recoverOnStart();

  // Locks written under another boot id belong to a dead agent process.
  const bootId = randomUUID();
  const releases = new ReleaseStore({
    home: config.home, limits: config.limits, uploadIdleTimeoutMs: config.limits.uploadIdleTimeoutMs, requireRoom: true,
    // Native addons built for another platform are refused before the release is stored.
    admit: (manifest, contents) => checkNativePlatform({
      app: manifest.app, releaseId: manifest.releaseId, built: manifestBuildPlatform(manifest), host: hostPlatform(),
      addons: () => contents.filter((c) => c.type === 'file' && isNativeAddon(c.path)).map((c) => c.path),
    }),
  });
  await releases.cleanupOrphans();
  // Uploads kept for a relay session: what no session will serve any more is swept now.
  const relayKeep = new RelayKeep(config.home);
  const relaySessions = new RelaySessions({ apps: config.apps, keep: relayKeep, logger });
  await relaySessions.sweep();
  // A crash between the release dir's rename and its database row leaves a dir SQLite does not know;
  // no slot can reference it, and the controller re-uploads it, so it is removed.
  for (const app of Object.keys(config.apps)) {
    for (const releaseId of await releases.list(app)) {
      if (!state.release(app, releaseId)) {
        logger.warn({ app, releaseId }, 'removing a release dir with no database row (left by a crash during upload)');
        await releases.remove(app, releaseId);
      }
    }
    // Kept tarballs follow their release: none without one (a crash between the row's and the
    // tarball's removal), none of another size than recorded (a crash before it was flushed).
    for (const releaseId of await releases.artifactIds(app)) {
      const row = state.release(app, releaseId);
      if (!row || !releases.has(app, releaseId) || await releases.artifactSize(app, releaseId) !== row.bytes) {
        logger.warn({ app, releaseId }, 'removing a kept release tarball with no release, or not the size recorded');
        await releases.removeArtifact(app, releaseId);
      }
    }
  }
  // PM2's control sockets live here and run whatever they are asked to: no one else may reach them.
  mkdirSync(config.pm2.home, { recursive: true, mode: 0o700 });
  chmodSync(config.pm2.home, 0o700);
  const processes = await Pm2Adapter.connect({ pm2Home: config.pm2.home, callTimeoutMs: config.pm2.callTimeoutMs });
  // The whole section: a field added to the config reaches the controller without a copy here.
  const nginx = new NginxController(config.nginx);
  const builder = new HostBuilder({
    config, builds: new HostBuildStore(db), logger,
    releaseDir: (app, releaseId) => releases.releaseDir(app, releaseId),
    hasRelease: (app, releaseId) => releases.has(app, releaseId),
  });
  const { prepareRelease, admitRelease } = releasePreparation({ config, state, builder, releaseDir: (app, releaseId) => releases.releaseDir(app, releaseId) });
  // TLS (agent/tls): the include renders the installed certificate; the service changes it only
  // under the app's lock, through the traffic switch built below.
  let trafficSwitch: TrafficSwitch | null = null;
  const trafficOf = () => {
    if (!trafficSwitch) throw new Error('the traffic switch is not wired yet');
    return trafficSwitch;
  };
  const tls = new TlsService({
    config, logger, store: new TlsStore(db, path.join(config.home, 'tls')),
    liveRoutes: (app) => trafficOf().liveRoutes(app),
    refreshInclude: (app, input) => trafficOf().refreshInclude(app, { tls: input }),
    withAppLock: async (app, holder, waitMs, fn) => {
      const lock = await waitFor(() => tryAppLock(state, bootId, app, holder, { action: 'tls' }), {
        timeoutMs: waitMs, intervalMs: 250,
        onTimeout: () => {
          const held = state.lock(app);
          return new SlipwayError('app_locked', `${app} is locked by ${held?.holder ?? '?'} for ${held?.action ?? '?'}; its TLS include was not changed`, {
            status: 409, hint: 'the next scheduled certificate run tries again, or run deploy tls --renew once the rollout ended',
          });
        },
      });
      try {
        return await fn();
      } finally {
        lock.release();
      }
    },
    notify: (event, input) => notices.tls(event, input),
  });
  const smokeChecks = async (app: string, releaseId: string) => {
    const manifest = state.release(app, releaseId)?.manifest;
    const spec = manifest ? carriedSpecOf(manifest) : null;
    // With a certificate installed, smoke checks go over HTTPS as clients do (plain HTTP redirects).
    const https = tls.renderInput(app);
    const port = spec?.routes[0]?.listenPort;
    const base = https?.certificate && (port === undefined || port === https.httpPort) ? publicUrlOf(config, app, https.httpsPort, 'https') : undefined;
    return spec && spec.smoke.length > 0 ? runSmokeChecks({ config, request: (url, options) => httpGet(url, options), ...(base ? { base } : {}) }, app, spec) : [];
  };
  const { rollouts, slots, traffic } = createRollouts({
    config,
    state,
    prepareRelease,
    admitRelease,
    smokeChecks,
    releaseDir: (app, releaseId) => releases.releaseDir(app, releaseId),
    hasRelease: (app, releaseId) => releases.has(app, releaseId),
    processes,
    nginx,
    health: { waitHealthy, httpGet },
    bootId,
    runBackup: (job, deploymentId, actor) => backups.runJobForDeployment(job, deploymentId, actor),
    // Every include the agent renders sends the release markers to its own probes only.
    renderNginx: (input) => renderAppConfig({ ...input, probeSecretFile: probe.snippetFile }, { templateDir: config.nginx.templateDir, template: config.apps[input.app]!.nginxTemplate }),
    probeHeaders: probeHeaders(probe.secret),
    tls: { renderInput: (app) => tls.renderInput(app) },
    logger,
    notices: {
      started: (d) => notices.started(d),
      ended: (d, result) => {
        notices.ended(d, result);
        // After the rollout's transaction; the run waits for its lock.
        if (result.outcome === 'succeeded') setImmediate(() => tls.afterRollout(d.app));
      },
      lockOverridden: (lock, actor) => notices.lockOverridden(lock, actor),
    },
    // Read once here: the crash-recovery tests park a rollout at a step to kill the agent there.
    faults: { pauseBefore: process.env.SLIPWAY_FAULT_PAUSE_BEFORE ?? null },
  });
  trafficSwitch = traffic;
  // The one place re-homing reaches into the rollout: starting a slot and the proven switch.
  const activation: SlotActivation = {
    startRelease: (app, slot, releaseId) => slots.startRelease(app, slot, releaseId),
    switchTraffic: async (app, slot, releaseId, options) => { await traffic.switchTraffic(app, slot, releaseId, options); },
    layout: (app, slot) => slots.layout(app, slot),
    checkHealth: (app, slot, retries) => slots.checkHealth(app, slot, retries),
    probeOf: (app, releaseId) => traffic.probeOf(app, releaseId),
  };
  const reconcile: ReconcileDeps = {
    config, state, processes, health: { waitHealthy }, activation, logger,
    releaseDir: (app, releaseId) => releases.releaseDir(app, releaseId),
  };
  const unreconciled = await recoverAfterRestart({ ...reconcile, health: { waitHealthy, httpGet }, bootId });
  const watchdogHolder = 'pm2-daemon-recovery@agent';
  const pm2Watchdog = new Pm2Watchdog({
    daemon: processes,
    apps: Object.keys(config.apps),
    rehomeApp: async (app) => { await reconcileApp(reconcile, app, { live: state.app(app)?.liveSlot ?? null }); },
    tryLock: (app) => tryAppLock(state, bootId, app, watchdogHolder, { takeReservation: true, logger }),
    // A rollout holding the lock fails fast on PM2 calls, but its watch window may run its course.
    waitLock: (app, cancelled) => waitForAppLock(state, bootId, app, watchdogHolder, { timeoutMs: 15 * 60_000, cancelled, logger }),
    intervalMs: config.pm2.watchdogIntervalMs,
    unreconciled,
    logger,
  });
  processes.onDaemonDown((health) => { if (!health.up) pm2Watchdog.noticeDown(health); });
  pm2Watchdog.start();
  const cleanup = (app: string, actor: string) => cleanupReleases({
    state, bootId, logger,
    keepReleases: config.retention.keepReleases,
    releasesRoot: path.join(config.home, 'releases'),
    removeRelease: (a, releaseId) => releases.remove(a, releaseId),
    processCwds: async () => (await processes.list()).map((p) => p.pmCwd),
    lastGood: (a) => {
      const live = state.app(a)?.liveSlot;
      return (live ? state.slot(a, live).releaseId : null) ?? rollouts.previousGoodRelease(a, null);
    },
  }, app, actor);
  const retentionJob = CronJob.start(config.retention.schedule, async () => {
    for (const app of Object.keys(config.apps)) {
      const result = await cleanup(app, 'retention@agent').catch((error: unknown) => {
        logger.error({ err: error, app }, 'scheduled release cleanup failed');
        return null;
      });
      if (result?.skipped) logger.info({ app, reason: result.skipped }, 'scheduled release cleanup skipped');
    }
  }, { noOverlap: true, onError: (error) => logger.error({ err: error }, 'scheduled release cleanup failed') });

  // Certificates: checked (and renewed when due) on a schedule and once at start; a run changes
  // nginx only when the certificate changed.
  const tlsJob = tls.apps().length === 0 ? null : CronJob.start(config.acme?.schedule ?? ACME_DEFAULTS.schedule, () => tls.runAll({ trigger: 'schedule', actor: 'agent' }),
    { noOverlap: true, onError: (error) => logger.error({ err: error }, 'scheduled TLS certificate run failed') });

  const backupScheduler = new BackupScheduler(backups, logger);
  const server = buildServer({
    config, token, state, releases, rollouts, processes, health: { checkOnce }, cleanup, logger, version: VERSION,
    backups: { service: backups, nextRun: (job) => backupScheduler.nextRun(job) },
    pm2Status: () => pm2Watchdog.status(),
    outbox,
    notifyPromotion: (event, input) => notices.promotion(event, input),
    logs: new AppLogReader({
      liveSlot: (app) => state.app(app)?.liveSlot ?? null,
      releaseOf: (app, slot) => state.slot(app, slot).releaseId,
      sources: (app, slot, process) => slots.logSources(app, slot, process),
      mask: (app) => slots.logMask(app),
    }),
    tls: { service: tls, nextRun: () => tlsJob?.nextRun() ?? null },
    metrics: {
      db,
      apps: () => Object.keys(config.apps),
      lockHeld: (app) => state.lock(app) !== undefined,
      backups: () => backups.overview({ nextRun: (job) => backupScheduler.nextRun(job) }).jobs,
      doraWindowMs: 30 * 86_400_000,
    },
    relay: { keep: relayKeep, sessions: relaySessions },
  });
  const url = await server.listen({ host: config.api.host, port: config.api.port });
  backupScheduler.start();
  delivery.start();
  if (tlsJob) void tls.runAll({ trigger: 'start', actor: 'agent' }).catch((error: unknown) => logger.error({ err: error }, 'TLS certificate run at start failed'));
  const logRotation = new LogRotationJob(processes, config.logs, (error) => logger.warn({ err: error }, 'log rotation failed; it is tried again at the next check'));
  logRotation.start();
  logger.info({ url, home: config.home, apps: Object.keys(config.apps) }, 'slipway-agent listening');
  return {
    server,
    url,
    async close() {
      retentionJob.stop();
      tlsJob?.stop();
      await tls.idle();
      await logRotation.stop();
      await delivery.stop();
      await pm2Watchdog.stop();
      await backupScheduler.stop();
      // Before the server: a POST /backups/:job/run waiting on a dump would hold server.close().
      await backups.close();
      // Relay listeners and their kept uploads end with the agent.
      await relaySessions.closeAll();
      await server.close();
      // After the server: no upload is still being received into it.
      await stopUnpackThread();
      await processes.disconnect();
      db.close();
    },
  };
}
