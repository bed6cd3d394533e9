import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../state/db.js';
import type { AppStatus, SlotProcessStatus, Spread } from '../../contract/api.js';
import type { BackupJobView } from '../../contract/backups.js';
import { doraFigures } from './dora.js';
import { doraHistory } from './history.js';

// GET /metrics in the Prometheus text format (prom-client). Every series is computed at scrape
// time from SQLite and the agent's live view, so an agent restart loses no count: the totals are
// the history's, and they only grow as deployments are added.

export interface MetricsSource {
  db: Db;
  apps(): string[];
  /** The app's live view (slots with their process and health), as GET /apps/:app shows it. */
  appStatus(app: string): Promise<AppStatus>;
  lockHeld(app: string): boolean;
  backups(): BackupJobView[];
  /** The window the DORA gauges cover. */
  doraWindowMs: number;
  now?: () => Date;
}

/** Step durations are seconds to minutes: a backup or a build is the long tail. */
const STEP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
/** Only recent steps feed the histogram, so a scrape stays cheap on a long history. */
const MAX_STEP_ROWS = 20_000;

export function createMetrics(source: MetricsSource): Registry {
  const registry = new Registry();
  const now = source.now ?? (() => new Date());
  const { db } = source;

  new Counter({
    name: 'slipway_rollouts_total', help: 'Finished rollouts by app, environment (deploy --env; "" without), kind (deploy, switch, rollback) and outcome.',
    labelNames: ['app', 'env', 'kind', 'outcome'], registers: [registry],
    collect() {
      this.reset();
      const rows = db.prepare(`SELECT app, COALESCE(env, '') AS env, kind, outcome, COUNT(*) AS n FROM deployments WHERE outcome IS NOT NULL GROUP BY app, env, kind, outcome`).all() as
        { app: string; env: string; kind: string; outcome: string; n: number }[];
      for (const r of rows) this.inc({ app: r.app, env: r.env, kind: r.kind, outcome: r.outcome }, r.n);
    },
  });
  new Counter({
    name: 'slipway_swap_backs_total', help: 'Rollouts the watch window swapped back.', labelNames: ['app'], registers: [registry],
    collect() {
      this.reset();
      for (const r of db.prepare(`SELECT app, COUNT(*) AS n FROM deployments WHERE outcome = 'rolled_back' GROUP BY app`).all() as { app: string; n: number }[]) this.inc({ app: r.app }, r.n);
    },
  });
  new Counter({
    name: 'slipway_rollbacks_total', help: 'Rollbacks asked for by hand (deploy rollback).', labelNames: ['app', 'outcome'], registers: [registry],
    collect() {
      this.reset();
      const rows = db.prepare(`SELECT app, outcome, COUNT(*) AS n FROM deployments WHERE kind = 'rollback' AND outcome IS NOT NULL GROUP BY app, outcome`).all() as { app: string; outcome: string; n: number }[];
      for (const r of rows) this.inc({ app: r.app, outcome: r.outcome }, r.n);
    },
  });
  new Histogram({
    name: 'slipway_step_duration_seconds', help: 'Duration of rollout steps (preflight, backup, starting, healthy, switching, watching, ...).',
    labelNames: ['app', 'step'], buckets: STEP_BUCKETS, registers: [registry],
    collect() {
      this.reset();
      const rows = db.prepare(`SELECT d.app AS app, e.step AS step, e.elapsed_ms AS ms FROM events e JOIN deployments d ON d.id = e.deployment_id
        WHERE e.status = 'ok' AND e.elapsed_ms IS NOT NULL ORDER BY e.id DESC LIMIT ?`).all(MAX_STEP_ROWS) as { app: string; step: string; ms: number }[];
      for (const r of rows) this.observe({ app: r.app, step: r.step }, r.ms / 1000);
    },
  });
  new Counter({
    name: 'slipway_upload_bytes_total', help: 'Bytes of release tarballs received and kept records of.', labelNames: ['app'], registers: [registry],
    collect() {
      this.reset();
      for (const r of db.prepare(`SELECT app, SUM(bytes) AS n FROM releases GROUP BY app`).all() as { app: string; n: number }[]) this.inc({ app: r.app }, r.n ?? 0);
    },
  });
  new Gauge({
    name: 'slipway_live_release_info', help: 'The release serving traffic (value 1), with its slot, commit, environment and tag ("" when none).',
    labelNames: ['app', 'slot', 'release', 'sha', 'env', 'tag'], registers: [registry],
    async collect() {
      this.reset();
      for (const app of source.apps()) {
        const status = await source.appStatus(app);
        if (!status.liveSlot || !status.liveReleaseId) continue;
        const manifest = status.releases.find((r) => r.releaseId === status.liveReleaseId)?.manifest;
        // The tag of the deployment that put it live, else the one its manifest carries.
        const tag = status.tag ?? manifest?.tag ?? '';
        this.set({ app, slot: status.liveSlot, release: status.liveReleaseId, sha: manifest?.sha ?? '', env: status.env ?? '', tag }, 1);
      }
    },
  });
  new Gauge({
    name: 'slipway_slot_healthy', help: 'Whether a slot with a release answers its health check (1) or not (0); live=1 marks the slot serving traffic.',
    labelNames: ['app', 'slot', 'live'], registers: [registry],
    async collect() {
      this.reset();
      for (const app of source.apps()) {
        for (const slot of (await source.appStatus(app)).slots) {
          if (!slot.releaseId) continue;
          this.set({ app, slot: slot.slot, live: slot.live ? '1' : '0' }, slot.health?.ok ? 1 : 0);
        }
      }
    },
  });
  const processGauge = (name: string, help: string, value: (p: SlotProcessStatus) => number | null) => new Gauge({
    name, help, labelNames: ['app', 'slot', 'process'], registers: [registry],
    async collect() {
      this.reset();
      for (const app of source.apps()) {
        for (const slot of (await source.appStatus(app)).slots) {
          for (const p of slot.processes ?? []) {
            const v = value(p);
            if (v !== null) this.set({ app, slot: slot.slot, process: p.name }, v);
          }
        }
      }
    },
  });
  processGauge('slipway_process_restarts', 'PM2 restarts of each process of a slot since it was started.', (p) => p.restarts);
  processGauge('slipway_process_instances_online', 'Instances PM2 reports online, per process of a slot (compare with slipway_process_instances).', (p) => p.online);
  processGauge('slipway_process_instances', 'Instances the release\'s spec asks for, per process of a slot.', (p) => p.instances);
  processGauge('slipway_process_healthy', 'Whether a listening process answers its own health check (1) or not (0).', (p) => (p.health ? (p.health.ok ? 1 : 0) : null));
  new Gauge({
    name: 'slipway_lock_held', help: 'Whether the app\'s deploy lock is held (1) or free (0).', labelNames: ['app'], registers: [registry],
    collect() {
      this.reset();
      for (const app of source.apps()) this.set({ app }, source.lockHeld(app) ? 1 : 0);
    },
  });
  const backupGauge = (name: string, help: string, value: (job: BackupJobView, at: number) => number | null) => new Gauge({
    name, help, labelNames: ['app', 'job'], registers: [registry],
    collect() {
      this.reset();
      const at = now().getTime();
      for (const job of source.backups()) {
        const v = value(job, at);
        if (v !== null) this.set({ app: job.app, job: job.job }, v);
      }
    },
  });
  backupGauge('slipway_backup_last_success_timestamp_seconds', 'When the job\'s last successful dump ended (unix time).',
    (j) => (j.lastSuccessAt ? Date.parse(j.lastSuccessAt) / 1000 : null));
  backupGauge('slipway_backup_verified_age_seconds', 'Age of the newest verified backup.', (j) => (j.lastVerified ? j.lastVerified.ageMs / 1000 : null));
  backupGauge('slipway_backup_last_size_bytes', 'Size of the last successful dump.', (j) => j.lastRun?.bytes ?? null);
  backupGauge('slipway_backup_last_verified', 'Whether the job\'s last run was verified (1) or not (0).', (j) => (j.lastRun ? (j.lastRun.status === 'verified' ? 1 : 0) : null));

  const dora = () => {
    const until = now();
    const since = new Date(until.getTime() - source.doraWindowMs);
    return source.apps().map((app) => ({ app, figures: doraFigures(doraHistory(db, app), since, until) }));
  };
  new Gauge({
    name: 'slipway_dora_deployments_per_day', help: 'DORA deployment frequency over the window (deploys that moved traffic, per day).', labelNames: ['app'], registers: [registry],
    collect() { this.reset(); for (const { app, figures } of dora()) this.set({ app }, figures.perDay); },
  });
  new Gauge({
    name: 'slipway_dora_change_failure_rate', help: 'DORA change failure rate over the window (0..1).', labelNames: ['app'], registers: [registry],
    collect() { this.reset(); for (const { app, figures } of dora()) if (figures.changeFailures.rate !== null) this.set({ app }, figures.changeFailures.rate); },
  });
  const spreadGauge = (name: string, help: string, pick: (f: ReturnType<typeof dora>[number]['figures']) => Spread) => new Gauge({
    name, help, labelNames: ['app', 'quantile'], registers: [registry],
    collect() {
      this.reset();
      for (const { app, figures } of dora()) {
        const { medianMs, p90Ms } = pick(figures);
        if (medianMs !== null) this.set({ app, quantile: '0.5' }, medianMs / 1000);
        if (p90Ms !== null) this.set({ app, quantile: '0.9' }, p90Ms / 1000);
      }
    },
  });
  spreadGauge('slipway_dora_lead_time_seconds', 'DORA lead time for changes (commit to live), by quantile.', (f) => f.leadTime);
  spreadGauge('slipway_dora_time_to_restore_seconds', 'DORA time to restore service, by quantile.', (f) => f.timeToRestore);
  return registry;
}
