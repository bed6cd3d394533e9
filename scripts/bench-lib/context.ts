// What every bench section shares: the plan (repetitions and sizes), the Slipway stack, the
// baselines, and the few operations several sections need.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { CONTROLLER_MAIN } from '../../test/helpers/agent-process.js';
import { APP, type Stack } from '../../test/helpers/stack.js';
import type { AgentApi } from './agent-api.js';
import type { BareNginx } from './bare-nginx.js';
import type { Capistrano } from './capistrano.js';
import type { Figure } from './report.js';
import { runTimed, type TimedRun } from './procs.js';

export interface Plan {
  uploadReps: number;
  uploadBigMB: number;
  uploadSmallMB: number;
  repushReps: number;
  rolloutReps: number;
  swapBackReps: number;
  switchReps: number;
  loadSwitches: number;
  loadRollbacks: number;
  /** Pushes of a new release (same routes) under wrk: no reload since issue 16. */
  loadPushes: number;
  deployments: number;
  getSeconds: number;
  backupMB: number;
  backupReps: number;
  /** Section 8: rounds of (unchanged lockfile, changed lockfile) deploys per tool. */
  depsReps: number;
  /** Section 8: pushes of the multi-process app (and as many of the one-process one). */
  multiReps: number;
}

export const FULL_PLAN: Plan = {
  uploadReps: 5, uploadBigMB: 100, uploadSmallMB: 5, repushReps: 3, rolloutReps: 5, swapBackReps: 3,
  switchReps: 10, loadSwitches: 20, loadRollbacks: 20, loadPushes: 20, deployments: 100, getSeconds: 10, backupMB: 100, backupReps: 5,
  depsReps: 3, multiReps: 5,
};

export const QUICK_PLAN: Plan = {
  uploadReps: 2, uploadBigMB: 20, uploadSmallMB: 5, repushReps: 1, rolloutReps: 2, swapBackReps: 1,
  switchReps: 5, loadSwitches: 5, loadRollbacks: 5, loadPushes: 5, deployments: 10, getSeconds: 3, backupMB: 20, backupReps: 2,
  depsReps: 1, multiReps: 2,
};

export interface BenchContext {
  quick: boolean;
  plan: Plan;
  stack: Stack;
  api: AgentApi;
  cap: Capistrano;
  bare: BareNginx;
  figures: Figure[];
  notes: string[];
  /** Samples shared between sections (e.g. the bare switch latency is the swap-back's baseline). */
  shared: { bareSwitchMs: number[] };
  log(message: string): void;
}

export function deployCli(stack: Stack, args: string[], options: { timeoutMs?: number; env?: Record<string, string>; onLine?: Parameters<typeof runTimed>[1]['onLine'] } = {}): Promise<TimedRun> {
  return runTimed([process.execPath, CONTROLLER_MAIN, '--json', ...args], {
    cwd: stack.repo.dir,
    env: { ...process.env, SSH_AUTH_SOCK: '', ...options.env },
    timeoutMs: options.timeoutMs ?? 180_000,
    ...(options.onLine ? { onLine: options.onLine } : {}),
  });
}

/** Parsed JSON lines of a `deploy --json` run (stdout). */
export function jsonLines(run: TimedRun): { at: number; value: Record<string, unknown> }[] {
  const out: { at: number; value: Record<string, unknown> }[] = [];
  for (const line of run.lines) {
    if (line.stream !== 'stdout' || !line.text.trim().startsWith('{')) continue;
    try {
      out.push({ at: line.at, value: JSON.parse(line.text) as Record<string, unknown> });
    } catch {
      // not JSON: ignore
    }
  }
  return out;
}

export function requireCliOk(run: TimedRun, what: string, expected = 0): void {
  if (run.code !== expected) {
    throw new Error(`${what}: deploy exited ${run.code}${run.timedOut ? ' (timed out)' : ''}, expected ${expected}:\n${(run.stdout + run.stderr).slice(-3000)}`);
  }
}

/** ssh(1) with nothing from root's own configuration: the raw baseline. */
export function sshArgv(stack: Stack, remoteCommand: string): string[] {
  const s = stack.sshd;
  return [
    'ssh', '-F', '/dev/null', '-p', String(s.port), '-i', s.clientKeyPath,
    '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${s.knownHostsPath}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    `${s.user}@127.0.0.1`, remoteCommand,
  ];
}

/**
 * Removes an uploaded, never-deployed release behind the agent's back (its directory, its kept
 * tarball and its row), so the same tarball can be uploaded again. Only for the bench's own upload releases.
 */
export async function forgetRelease(stack: Stack, releaseId: string): Promise<void> {
  await fs.rm(path.join(stack.home, 'releases', APP, releaseId), { recursive: true, force: true });
  // Its kept tarball too: the next upload must not rename over an old one (ext4 then writes the
  // new file out at once, auto_da_alloc), which a first upload of a release never does.
  await fs.rm(path.join(stack.home, 'artifacts', APP, `${releaseId}.tar.gz`), { force: true });
  const db = openDatabase(path.join(stack.home, 'agent.db'));
  try {
    new StateStore(db).deleteRelease(APP, releaseId);
  } finally {
    db.close();
  }
}

/** The release the public URL serves now (through nginx). */
export async function liveRelease(url: string): Promise<string | null> {
  const res = await fetch(url).catch(() => null);
  if (!res?.ok) return null;
  const body = (await res.json().catch(() => null)) as { release?: string } | null;
  return body?.release ?? null;
}
