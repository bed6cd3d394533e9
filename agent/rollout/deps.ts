// What the rollout needs from the world outside it, as interfaces: the agent wires the real PM2
// adapter, nginx controller, HTTP checks and clock; the unit harness wires fakes.
import type { Slot } from '../../contract/names.js';
// Types only: the rollout never loads nginx's modules (nunjucks) itself.
import type { ApplyRequest, FlipRequest } from '../nginx/controller.js';
import type { AppConfigInput } from '../nginx/render-input.js';

/** What the rollout needs from PM2 (implemented by Pm2Adapter). */
export interface ProcessManager {
  start(spec: {
    name: string; script: string; cwd: string; args?: string[]; nodeArgs?: string[]; env: Record<string, string>;
    interpreter?: 'none'; instances?: number; killTimeoutMs?: number; maxMemoryRestart?: string;
  }): Promise<{ pid: number }>;
  delete(name: string): Promise<void>;
  describe(name: string): Promise<{
    status: string; pid: number | null; pmCwd: string | null; restarts: number;
    /** Cluster mode: instances under the name, and how many are online (absent: one). */
    instances?: number; online?: number; uptimeMs?: number;
    /** PM2's log files of the process, when known. */
    outLog?: string | null; errLog?: string | null;
  } | null>;
}

/** What the rollout needs from nginx (implemented by NginxController). */
export interface TrafficSwitcher {
  checkMasterRunning(): Promise<unknown>;
  /** The include on disk (null before the first deploy). */
  currentConfig(app: string): Promise<string | null>;
  /** Writes, `nginx -t`s, reloads and proves an include; restores the previous one on failure. */
  apply(input: ApplyRequest): Promise<unknown>;
  switchDirOf(app: string): string;
  /**
   * Creates the switch flag pointing at `slot` unless one exists; returns the slot it points at.
   * The flag names the release its slot runs (`releases`): an existing flag naming another one is
   * relabelled in place (same slot, so no traffic moves).
   */
  ensureFlag(app: string, slot: Slot, releases: Record<Slot, string | null>): Promise<Slot>;
  /** Moves traffic to `slot` (running `releaseId`) by the switch flag (no reload) and proves it; puts the flag back on failure. */
  flip(input: FlipRequest): Promise<unknown>;
}

/** What an app's nginx include is rendered from: both slots' releases, ports and routes. */
export type NginxRenderInput = AppConfigInput;

export interface HealthChecker {
  waitHealthy(url: string, options: {
    timeoutMs: number; intervalMs: number; retries: number; expectStatus: number; bodyContains?: string;
    /** Ends the wait at once (ok: false) when it aborts: a fleet abort during a health gate. */
    signal?: AbortSignal;
  }): Promise<{ ok: boolean; attempts: number; last: { status?: number; error?: string; bodyStart?: string } | undefined }>;
  httpGet(url: string, options: { timeoutMs: number; headers?: Record<string, string> }): Promise<{ status: number; headers: Record<string, string>; body: string }>;
}

/** Time as the rollout sees it: step durations, watch rounds, lock leases. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts (never rejects): a fleet abort wakes a watch window at once. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const wake = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    signal?.addEventListener('abort', wake, { once: true });
  }),
};

/**
 * Test-only fault injection: `pauseBefore` parks every rollout at that step or switch point
 * forever, so a test can kill -9 the agent exactly there. Null in production.
 */
export interface FaultInjection {
  pauseBefore: string | null;
}

export const NO_FAULTS: FaultInjection = { pauseBefore: null };
