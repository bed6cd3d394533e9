import os from 'node:os';
import type { DeploymentResult } from '../../contract/api.js';
import type { AgentConfig } from '../config.js';
import type { LockRow, StateStore } from '../state/store.js';
import type { Notice } from '../backups/notify.js';
import { publicUrlOf } from '../rollout/public-address.js';
import type { Deployment } from '../rollout/journal.js';
import { endedEventName, type NotifyEvent, type NotifyEventName } from './events.js';
import type { Outbox } from './outbox.js';

/** What the rollout tells the notifications about; called inside the rollout's own transactions. */
export interface RolloutNotices {
  started(deployment: Deployment): void;
  ended(deployment: Deployment, result: DeploymentResult): void;
  /** `deploy lock release --force` took away someone else's live lock. */
  lockOverridden?(lock: LockRow, actor: string): void;
}

/** Turns rollout and backup happenings into outbox events (fields from the release's manifest). */
export class Notices implements RolloutNotices {
  private readonly host = os.hostname();

  constructor(private readonly deps: { config: AgentConfig; state: StateStore; outbox: Outbox; wake: () => void }) {}

  started(d: Deployment): void {
    this.enqueue(this.eventOf('rollout_started', d, null, null, {}));
  }

  ended(d: Deployment, result: DeploymentResult): void {
    this.enqueue(this.eventOf(endedEventName(d.kind, result.outcome, result.phase), d, result.outcome, result.reason, result.stepDurationsMs));
  }

  lockOverridden(lock: LockRow, actor: string): void {
    const manifest = lock.releaseId ? this.deps.state.release(lock.app, lock.releaseId)?.manifest : undefined;
    this.enqueue({
      event: 'lock_overridden', app: lock.app, env: this.envOf(lock.app, lock.deploymentId), host: this.host, at: new Date().toISOString(), deploymentId: lock.deploymentId, kind: 'lock',
      releaseId: lock.releaseId, sha: manifest?.sha ?? null, tag: null, branch: manifest?.branch ?? null, actor, outcome: null,
      reason: `took the lock held by ${lock.holder} for ${lock.action} since ${lock.since}`, stepDurationsMs: {}, url: this.urlOf(lock.app),
    });
  }

  /** A promotion refused by the gate (on the target) or forced past it (on both sides). */
  promotion(event: 'promotion_refused' | 'promotion_forced', input: { app: string; env: string | null; releaseId: string; actor: string; reason: string; sha: string | null }): void {
    const manifest = this.deps.state.release(input.app, input.releaseId)?.manifest;
    this.enqueue({
      event, app: input.app, env: input.env, host: this.host, at: new Date().toISOString(), deploymentId: null, kind: 'promote',
      releaseId: input.releaseId, sha: manifest?.sha ?? input.sha, tag: null, branch: manifest?.branch ?? null, actor: input.actor,
      outcome: null, reason: input.reason, stepDurationsMs: {}, url: this.urlOf(input.app),
    });
  }

  /** A certificate run that failed (the serving config untouched) or installed a new certificate. */
  tls(event: 'tls_failed' | 'tls_installed', input: { app: string; actor: string; reason: string; outcome: string }): void {
    this.enqueue({
      event, app: input.app, env: this.envOf(input.app, null), host: this.host, at: new Date().toISOString(), deploymentId: null, kind: 'tls',
      releaseId: null, sha: null, tag: null, branch: null, actor: input.actor, outcome: input.outcome, reason: input.reason, stepDurationsMs: {}, url: this.urlOf(input.app),
    });
  }

  /** The environment of the lock's deployment, else the one the app was last deployed as. */
  private envOf(app: string, deploymentId: number | null): string | null {
    const deployment = deploymentId === null ? null : this.deps.state.deployment(deploymentId);
    return deployment?.env ?? this.deps.state.appOverrides(app)?.env ?? null;
  }

  /** A backup problem (every event but "skipped" means the app has no fresh verified backup). */
  backup(notice: Notice): void {
    if (notice.event === 'skipped') return;
    this.enqueue({
      event: 'backup_failed', app: notice.app, env: this.envOf(notice.app, null), host: this.host, at: new Date().toISOString(), deploymentId: null, kind: 'backup',
      releaseId: null, sha: null, tag: null, branch: null, actor: 'agent', outcome: notice.event,
      reason: `${notice.job}${notice.backupId === null ? '' : ` #${notice.backupId}`}: ${notice.message}`, stepDurationsMs: {}, url: null,
    });
  }

  private eventOf(event: NotifyEventName, d: Deployment, outcome: string | null, reason: string | null, steps: Record<string, number>): NotifyEvent {
    const manifest = this.deps.state.release(d.app, d.releaseId)?.manifest;
    return {
      event, app: d.app, env: d.env ?? null, host: this.host, at: new Date().toISOString(), deploymentId: d.id, kind: d.kind, releaseId: d.releaseId,
      sha: manifest?.sha ?? null, tag: d.tag ?? manifest?.tag ?? null, branch: manifest?.branch ?? null, actor: d.actor, outcome,
      reason: reason ?? d.note, stepDurationsMs: steps, url: this.urlOf(d.app),
    };
  }

  private urlOf(app: string): string | null {
    try {
      return publicUrlOf(this.deps.config, app);
    } catch {
      return null;
    }
  }

  private enqueue(event: NotifyEvent): void {
    if (this.deps.outbox.enqueue(event) > 0) queueMicrotask(this.deps.wake);
  }
}
