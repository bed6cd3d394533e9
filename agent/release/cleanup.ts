import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import type { StateStore } from '../state/store.js';
import { planReleaseCleanup } from './retention.js';

export interface CleanupDeps {
  state: StateStore;
  keepReleases: number;
  bootId: string;
  releasesRoot: string;
  removeRelease: (app: string, releaseId: string) => Promise<void>;
  /** Working directories of every process PM2 runs. */
  processCwds: () => Promise<string[]>;
  lastGood: (app: string) => string | null;
  logger: Logger;
}

export interface CleanupResult { app: string; removed: string[]; kept: string[]; skipped: string | null }

/**
 * Deletes releases retention does not protect. It takes the app's deploy lock for the duration,
 * so it never runs inside a rollout (and a rollout never starts during it).
 */
export async function cleanupReleases(deps: CleanupDeps, app: string, actor: string): Promise<CleanupResult> {
  const lockId = randomUUID();
  const taken = deps.state.acquireLock({
    app, lockId, holder: actor, action: 'cleanup', releaseId: null, expiresAt: null, bootId: deps.bootId, deploymentId: null,
  });
  if (!taken.ok) {
    return { app, removed: [], kept: [], skipped: `locked by ${taken.held.holder} for ${taken.held.action} since ${taken.held.since}` };
  }
  try {
    const appDir = path.join(deps.releasesRoot, app) + path.sep;
    const inUse = new Set((await deps.processCwds())
      .filter((cwd) => cwd.startsWith(appDir))
      .map((cwd) => cwd.slice(appDir.length).split(path.sep)[0]!));
    const referenced = new Set(deps.state.slots(app).map((s) => s.releaseId).filter((id): id is string => id !== null));
    const plan = planReleaseCleanup({
      releases: deps.state.releases(app).map((r) => ({ releaseId: r.releaseId, createdAt: r.createdAt })),
      keep: deps.keepReleases,
      referenced,
      inUse,
      lastGood: deps.lastGood(app),
    });
    for (const releaseId of plan.remove) {
      // Row first: a crash after it leaves a dir without a row, which startup removes.
      deps.state.deleteRelease(app, releaseId);
      await deps.removeRelease(app, releaseId);
      deps.logger.info({ app, releaseId }, 'release removed by retention');
    }
    return { app, removed: plan.remove, kept: plan.keep, skipped: null };
  } finally {
    deps.state.releaseLock(app, lockId);
  }
}
