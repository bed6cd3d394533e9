import type { ProcessManager } from './rollout/rollout.js';

export interface SlotProbeResult {
  process: { status: string; pid: number | null; restarts: number; cwd: string | null } | null;
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
  private readonly entries = new Map<string, { at: number; result: Promise<SlotProbeResult> }>();

  constructor(private readonly processes: ProcessManager, private readonly health: HealthOnce, private readonly ttlMs = 1000) {}

  probe(input: { processName: string; port: number; healthPath: string; expectStatus: number; releaseId: string | null }): Promise<SlotProbeResult> {
    // Keyed by release too, so a rollout's change of release is never hidden by the cache.
    const key = `${input.processName}:${input.port}:${input.releaseId ?? '-'}`;
    const cached = this.entries.get(key);
    if (cached && Date.now() - cached.at < this.ttlMs) return cached.result;
    const result = this.measure(input);
    this.entries.set(key, { at: Date.now(), result });
    return result;
  }

  private async measure(input: { processName: string; port: number; healthPath: string; expectStatus: number; releaseId: string | null }): Promise<SlotProbeResult> {
    const proc = await this.processes.describe(input.processName).catch(() => null);
    const health = input.releaseId !== null && proc
      ? await this.health.checkOnce(`http://127.0.0.1:${input.port}${input.healthPath}`, { timeoutMs: 1000, expectStatus: input.expectStatus })
      : null;
    return { process: proc && { status: proc.status, pid: proc.pid, restarts: proc.restarts, cwd: proc.pmCwd }, health };
  }
}
