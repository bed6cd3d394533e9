import type { ProcessManager } from './rollout/rollout.js';

export interface SlotProbeResult {
  process: { status: string; pid: number | null; restarts: number; cwd: string | null; instances: number; online: number } | null;
  health: { ok: boolean; status?: number; error?: string; ms: number } | null;
}

interface HealthOnce {
  checkOnce(url: string, options: { timeoutMs: number; expectStatus: number }): Promise<{ ok: boolean; status?: number; error?: string; ms: number }>;
}

/**
 * Runtime facts about a slot (PM2 state, one health check) for status queries, shared by
 * concurrent callers and reused for `ttlMs`: a dashboard polling GET /apps/:app at hundreds of
 * requests per second costs one PM2 call and one health check per slot per second, not one each.
 */
export class SlotProbeCache {
  private readonly entries = new Map<string, { at: number; result: Promise<SlotProbeResult>; refreshing: boolean }>();

  constructor(private readonly processes: ProcessManager, private readonly health: HealthOnce, private readonly ttlMs = 1000) {}

  probe(input: { processName: string; port: number; healthPath: string; expectStatus: number; releaseId: string | null }): Promise<SlotProbeResult> {
    // Keyed by release too, so a rollout's change of release is never hidden by the cache.
    const key = `${input.processName}:${input.port}:${input.releaseId ?? '-'}`;
    const cached = this.entries.get(key);
    const age = cached ? Date.now() - cached.at : Infinity;
    if (cached && age < this.ttlMs) return cached.result;
    // Up to twice the ttl, the last answer is served while one refresh runs behind it: a steady
    // stream of queries never waits for PM2 (the one that did made the p99 at 200 rps ~30 ms).
    if (cached && age < 2 * this.ttlMs) {
      if (!cached.refreshing) {
        cached.refreshing = true;
        const next = this.measure(input);
        void next.then(
          () => { this.entries.set(key, { at: Date.now(), result: next, refreshing: false }); },
          () => { cached.refreshing = false; },
        );
      }
      return cached.result;
    }
    const result = this.measure(input);
    this.entries.set(key, { at: Date.now(), result, refreshing: false });
    return result;
  }

  private async measure(input: { processName: string; port: number; healthPath: string; expectStatus: number; releaseId: string | null }): Promise<SlotProbeResult> {
    // undefined: PM2 could not say (its daemon may be down while the app still serves).
    const proc = await this.processes.describe(input.processName).catch(() => undefined);
    const health = input.releaseId !== null && proc !== null && input.port > 0
      ? await this.health.checkOnce(`http://127.0.0.1:${input.port}${input.healthPath}`, { timeoutMs: 1000, expectStatus: input.expectStatus })
      : null;
    const process = proc ? {
      status: proc.status, pid: proc.pid, restarts: proc.restarts, cwd: proc.pmCwd,
      instances: proc.instances ?? 1, online: proc.online ?? (proc.status === 'online' ? 1 : 0),
    } : null;
    return { process, health };
  }
}
