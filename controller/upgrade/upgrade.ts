/**
 * `deploy upgrade`: replaces the agent on a host set up by `deploy setup` while the apps keep
 * running. The apps run in the agent's own PM2 daemon (agent config pm2.home), apart from the
 * daemon that runs the agent (controller/setup/plan.ts), so restarting the `slipway-agent` process
 * touches no app process; the new agent's crash recovery finds the live slots running and healthy.
 *
 *   1. install /opt/slipway/agent/<new> beside the live one (skipped when the host has it)
 *   2. switch /opt/slipway/agent/current to it (one rename)
 *   3. restart only the slipway-agent PM2 process
 *   4. wait until PM2 runs it from the new install and it answers /health
 *   5. if it does not within the deadline (or PM2 keeps restarting it): switch `current` back,
 *      restart the previous agent, wait for it the same way, and fail with upgrade_rolled_back.
 *
 * Pure orchestration over an UpgradeHost (controller/upgrade/host.ts runs it over SSH), so the
 * compensation is visible in one place.
 */
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { AgentPackageInfo } from '../setup/agent-package.js';

/** The agent PM2 runs: its pid, the install dir it runs from (its cwd), PM2's restart count. */
export interface RunningAgent { pid: number; install: string; restarts: number }

export interface UpgradeHost {
  /** The install `current` points at, or null when there is none (the host was not set up). */
  currentInstall(): Promise<string | null>;
  /** Whether <agentVersionsDir>/<version> is a complete install of this package. */
  hasInstall(pkg: AgentPackageInfo): Promise<boolean>;
  install(pkg: AgentPackageInfo, tarball: () => Promise<Buffer>): Promise<void>;
  pointCurrentAt(version: string): Promise<void>;
  /** Deletes and starts the slipway-agent process from the process file (the apps' daemon is another one). */
  restartAgent(): Promise<void>;
  /** The slipway-agent process when PM2 has it online, else null. */
  runningAgent(): Promise<RunningAgent | null>;
}

export interface UpgradeOptions {
  /** Answers true when the agent's /health answers (through the tunnel, as every command reaches it). */
  health: () => Promise<boolean>;
  /** How long a started agent has to come up. */
  timeoutMs: number;
  pollMs?: number;
  /** PM2 restarts of a fresh agent that count as "it cannot start" before the deadline. */
  maxRestarts?: number;
  /** Progress lines. */
  report?: (message: string) => void;
}

export type UpgradeOutcome =
  | { kind: 'unchanged'; version: string }
  | { kind: 'upgraded'; from: string; to: string; agentPid: number };

const DEFAULT_POLL_MS = 250;
const DEFAULT_MAX_RESTARTS = 2;

type Startup = { ok: true; agent: RunningAgent } | { ok: false; reason: string };

/** Waits until PM2 runs the agent from `version` (a new pid, other than `oldPid`) and it answers /health. */
async function waitForAgent(host: UpgradeHost, version: string, oldPid: number | null, options: UpgradeOptions): Promise<Startup> {
  const deadline = Date.now() + options.timeoutMs;
  const maxRestarts = options.maxRestarts ?? DEFAULT_MAX_RESTARTS;
  let seen = 'PM2 has no online slipway-agent';
  for (;;) {
    const running = await host.runningAgent().catch((error: unknown) => { seen = errorMessage(error); return null; });
    if (running) {
      if (running.restarts > maxRestarts) return { ok: false, reason: `PM2 restarted it ${running.restarts} times: it exits at start` };
      if (running.install !== version) seen = `PM2 runs the agent from ${running.install}`;
      else if (running.pid === oldPid) seen = 'the previous agent process still runs';
      else if (await options.health().catch(() => false)) return { ok: true, agent: running };
      else seen = `pid ${running.pid} runs ${version} but does not answer /health`;
    }
    if (Date.now() >= deadline) return { ok: false, reason: `not up within ${Math.round(options.timeoutMs / 1000)} s (last seen: ${seen})` };
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.pollMs ?? DEFAULT_POLL_MS, Math.max(0, deadline - Date.now()))));
  }
}

export async function upgradeAgent(host: UpgradeHost, pkg: AgentPackageInfo & { tarball(): Promise<Buffer> }, options: UpgradeOptions): Promise<UpgradeOutcome> {
  const report = options.report ?? (() => undefined);
  const previous = await host.currentInstall();
  if (previous === null) {
    throw new SlipwayError('upgrade_layout_missing', 'the host has no Slipway agent install to upgrade (no /opt/slipway/agent/current)', {
      hint: 'set the host up first: deploy setup',
    });
  }
  const before = await host.runningAgent();
  if (previous === pkg.version && before?.install === pkg.version) return { kind: 'unchanged', version: pkg.version };

  if (!(await host.hasInstall(pkg))) {
    report(`installing agent ${pkg.version} beside ${previous}`);
    await host.install(pkg, () => pkg.tarball());
  }
  report(`switching the agent from ${previous} to ${pkg.version}; the apps keep running`);
  await host.pointCurrentAt(pkg.version);
  let started: Startup;
  try {
    await host.restartAgent();
    started = await waitForAgent(host, pkg.version, before?.pid ?? null, options);
  } catch (error) {
    started = { ok: false, reason: errorMessage(error) };
  }
  if (started.ok) return { kind: 'upgraded', from: previous, to: pkg.version, agentPid: started.agent.pid };

  // Compensation: the previous install back, its agent started and proven like the new one.
  report(`agent ${pkg.version} did not come up (${started.reason}); going back to ${previous}`);
  let restored: Startup;
  try {
    await host.pointCurrentAt(previous);
    await host.restartAgent();
    restored = await waitForAgent(host, previous, null, options);
  } catch (error) {
    restored = { ok: false, reason: errorMessage(error) };
  }
  if (!restored.ok) {
    throw new SlipwayError('upgrade_not_restored', `agent ${pkg.version} did not come up (${started.reason}), and the previous agent ${previous} did not come back either: ${restored.reason}`, {
      hint: 'the apps keep running, but nothing manages them: on the host, look at the agent\'s log (pm2 logs slipway-agent as the slipway user), then run deploy setup',
    });
  }
  throw new SlipwayError('upgrade_rolled_back', `agent ${pkg.version} did not come up (${started.reason}); the previous agent ${previous} runs again and the apps were not touched`, {
    hint: `look at why the new agent failed (pm2 logs slipway-agent as the slipway user on the host; its install stays in /opt/slipway/agent/${pkg.version}), fix it and run deploy upgrade again`,
  });
}
