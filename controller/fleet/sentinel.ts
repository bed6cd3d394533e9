import { setTimeout as delay } from 'node:timers/promises';
import type { AppStatus } from '../../contract/api.js';
import { errorMessage } from '../../contract/errors.js';
import { shortSha, type Slot } from '../../contract/names.js';
import type { FleetMember } from './session.js';

/**
 * The watch over hosts an earlier batch already switched, while later batches roll out (their bake
 * and the full window after the last): each agent's own window ended with its batch's bake, so the
 * controller keeps asking each of them for the app's status (the live slot and release, every
 * process's PM2 state and restart count, its health endpoint) once per watch interval. A host that
 * fails `threshold` rounds in a row (or cannot be asked) fails the rollout, which then reverts
 * every switched host, that one included. Traffic through nginx is not checked here (the agent's
 * status has no such probe); each host's own bake checked it after its switch.
 */

/** What a switched host must keep serving, and its restart counts when the watch began. */
export interface Watched {
  host: string;
  slot: Slot;
  releaseId: string;
  /** PM2 restarts per process name of the live slot, taken at the first round that saw them. */
  baseline: Map<string, number> | null;
}

/** Pure: what is wrong with one host's status against what it switched to (null: nothing). */
export function hostProblem(status: Pick<AppStatus, 'liveSlot' | 'liveReleaseId' | 'slots'>, watched: Watched): string | null {
  if (status.liveSlot !== watched.slot || status.liveReleaseId !== watched.releaseId) {
    return `serves ${status.liveSlot ?? 'nothing'}${status.liveReleaseId ? ` (${shortSha(status.liveReleaseId)})` : ''}, not ${watched.slot} (${shortSha(watched.releaseId)})`;
  }
  const slot = status.slots.find((s) => s.slot === watched.slot);
  if (!slot) return `slot ${watched.slot} is missing from its status`;
  const processes = slot.processes ?? (slot.process ? [{ pm2Name: slot.slot, status: slot.process.status, restarts: slot.process.restarts, health: slot.health, online: 1, instances: 1 }] : []);
  const problems: string[] = [];
  for (const p of processes) {
    const baseline = watched.baseline?.get(p.pm2Name);
    if (p.status !== 'online') problems.push(`${p.pm2Name}: PM2 status ${p.status ?? 'absent'}`);
    else if (p.online < p.instances) problems.push(`${p.pm2Name}: ${p.online} of ${p.instances} instances online`);
    else if (baseline !== undefined && p.restarts > baseline) problems.push(`${p.pm2Name}: restarted (restarts ${baseline} → ${p.restarts})`);
    if (p.health && !p.health.ok) problems.push(`${p.pm2Name}: health ${p.health.status !== undefined ? `HTTP ${p.health.status}` : p.health.error ?? 'failed'}`);
  }
  return problems.length ? problems.join('; ') : null;
}

/** Pure: the restart counts of the watched slot's processes, as the baseline. */
export function restartBaseline(status: Pick<AppStatus, 'slots'>, slot: Slot): Map<string, number> {
  const s = status.slots.find((x) => x.slot === slot);
  const processes = s?.processes ?? (s?.process ? [{ pm2Name: s.slot, restarts: s.process.restarts }] : []);
  return new Map(processes.map((p) => [p.pm2Name, p.restarts]));
}

/** Sets each host's restart baseline from its status now (a host that does not answer keeps none). */
export async function takeBaselines(members: readonly FleetMember[], app: string, hosts: readonly Watched[]): Promise<void> {
  await Promise.all(hosts.map(async (watched) => {
    const member = members.find((m) => m.name === watched.host)!;
    const status = await withTimeout(member.session.agent.get<AppStatus>(`/apps/${app}`), 5_000).catch(() => null);
    if (status && status.liveSlot === watched.slot) watched.baseline = restartBaseline(status, watched.slot);
  }));
}

export interface SentinelOptions { intervalMs: number; threshold: number }

export interface Sentinel {
  /** Resolves with the first host that failed and why; never resolves when all stay fine. */
  failed: Promise<{ host: string; reason: string }>;
  /** Ends the watch (the rollout is over, or failed elsewhere). */
  stop(): void;
}

/** Starts watching the given switched hosts, one status request per host per interval. */
export function watchSwitched(members: readonly FleetMember[], app: string, hosts: readonly Watched[], options: SentinelOptions): Sentinel {
  let stopped = false;
  const stop = new AbortController();
  const failed = new Promise<{ host: string; reason: string }>((resolve) => {
    if (hosts.length === 0) return;
    const streaks = new Map(hosts.map((h) => [h.host, 0]));
    void (async () => {
      while (!stopped) {
        const started = Date.now();
        const timeoutMs = Math.max(5_000, options.intervalMs * 3);
        await Promise.all(hosts.map(async (watched) => {
          const member = members.find((m) => m.name === watched.host)!;
          let problem: string | null;
          try {
            const status = await withTimeout(member.session.agent.get<AppStatus>(`/apps/${app}`), timeoutMs);
            if (watched.baseline === null && status.liveSlot === watched.slot) watched.baseline = restartBaseline(status, watched.slot);
            problem = hostProblem(status, watched);
          } catch (error) {
            problem = `status not answered: ${errorMessage(error)}`;
          }
          const streak = problem === null ? 0 : streaks.get(watched.host)! + 1;
          streaks.set(watched.host, streak);
          if (problem !== null && streak >= options.threshold && !stopped) {
            stopped = true;
            resolve({ host: watched.host, reason: `${problem} (${streak} round(s) in a row, watched after its batch)` });
          }
        }));
        if (stopped) return;
        await delay(Math.max(0, options.intervalMs - (Date.now() - started)), undefined, { signal: stop.signal }).catch(() => undefined);
      }
    })();
  });
  return {
    failed,
    stop: () => {
      stopped = true;
      stop.abort();
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}
