/**
 * The host side of `deploy upgrade` (controller/upgrade/upgrade.ts) through a HostShell (over SSH in deploy upgrade), with root's rights
 * (controller/setup/host-shell.ts), in the layout `deploy setup` made (controller/setup/layout.ts,
 * plan.ts). Every command an argv; paths go to the constant shell snippets as positional arguments.
 */
import path from 'node:path';
import { AGENT_PACKAGE_MARKER, parseAgentPackageMarker, type AgentPackageInfo } from '../setup/agent-package.js';
import type { HostShell } from '../setup/host-shell.js';
import type { HostLayout } from '../setup/layout.js';
import { AGENT_PROCESS_NAME, agentProcessFile, pm2Argv, pm2Environment } from '../setup/plan.js';
import type { RunningAgent, UpgradeHost } from './upgrade.js';

const UNPACK_MS = 15 * 60_000;
const PM2_MS = 120_000;

/**
 * argv of `argv` as the agent's user, in its PM2 daemon's environment: through runuser when
 * `runAs` names a user (on a host), as the caller itself when null (tests lay the layout out in a
 * temp dir, with no such user).
 */
export function asAgent(layout: HostLayout, argv: readonly string[], runAs: string | null = layout.user): string[] {
  const env = ['env', ...Object.entries(pm2Environment(layout)).map(([k, v]) => `${k}=${v}`)];
  return runAs === null ? [...env, ...argv] : ['runuser', '-u', runAs, '--', ...env, ...argv];
}

/** Pure: the slipway-agent entry of `pm2 jlist`'s output when PM2 has it online. */
export function onlineAgentOf(jlist: string): { pid: number; restarts: number } | null {
  const start = jlist.indexOf('[');
  if (start < 0) return null;
  let processes: { name?: unknown; pid?: unknown; pm2_env?: { status?: unknown; restart_time?: unknown } }[];
  try {
    processes = JSON.parse(jlist.slice(start)) as typeof processes;
  } catch {
    return null;
  }
  const agent = Array.isArray(processes) ? processes.find((p) => p.name === AGENT_PROCESS_NAME) : undefined;
  if (!agent || agent.pm2_env?.status !== 'online' || typeof agent.pid !== 'number' || agent.pid <= 0) return null;
  return { pid: agent.pid, restarts: typeof agent.pm2_env.restart_time === 'number' ? agent.pm2_env.restart_time : 0 };
}

export function upgradeHostOver(shell: HostShell, layout: HostLayout, options: { runAs?: string | null } = {}): UpgradeHost {
  const runAs = options.runAs === undefined ? layout.user : options.runAs;
  const pm2 = (args: string[]) => asAgent(layout, pm2Argv(layout, args), runAs);
  return {
    async currentInstall() {
      const link = await shell.run(['readlink', layout.agentCurrentLink]);
      const target = link.stdout.trim();
      return link.exitCode === 0 && target ? path.basename(target) : null;
    },
    async hasInstall(pkg: AgentPackageInfo) {
      const marker = await shell.run(['cat', path.join(layout.agentVersionsDir, pkg.version, AGENT_PACKAGE_MARKER)]);
      return marker.exitCode === 0 && parseAgentPackageMarker(marker.stdout)?.digest === pkg.digest;
    },
    async install(pkg, tarball) {
      // Unpacked beside its final name, which appears complete (marker included) in one rename.
      await shell.checked(['sh', '-c', 'set -e; rm -rf "$1.part"; install -d -m 755 "$1.part"; tar -xzf - -C "$1.part" --no-same-owner; chown -R root:root "$1.part"; rm -rf "$1"; mv "$1.part" "$1"', 'sh', path.join(layout.agentVersionsDir, pkg.version)],
        'unpack the agent', { stdin: await tarball(), timeoutMs: UNPACK_MS });
    },
    async pointCurrentAt(version) {
      // By a rename: `current` never dangles or is missing.
      await shell.checked(['sh', '-c', 'set -e; ln -sfn "$2" "$1.slipway-tmp"; mv -T "$1.slipway-tmp" "$1"', 'sh', layout.agentCurrentLink, version], 'switch agent/current');
    },
    async restartAgent() {
      // delete + start, not restart: PM2 keeps a process's resolved paths and env across a restart.
      await shell.run(pm2(['delete', AGENT_PROCESS_NAME]), { timeoutMs: PM2_MS });
      await shell.checked(pm2(['start', agentProcessFile(layout)]), 'start the agent under PM2', { timeoutMs: PM2_MS });
    },
    async runningAgent(): Promise<RunningAgent | null> {
      // `pm2 jlist` would start a daemon: ask only when one runs.
      const daemon = await shell.run(['sh', '-c', 'kill -0 "$(cat "$1")" 2>/dev/null', 'sh', path.join(layout.pm2Home, 'pm2.pid')]);
      if (daemon.exitCode !== 0) return null;
      const list = await shell.run(pm2(['jlist']), { timeoutMs: PM2_MS });
      const agent = list.exitCode === 0 ? onlineAgentOf(list.stdout) : null;
      if (!agent) return null;
      const cwd = await shell.run(['readlink', `/proc/${agent.pid}/cwd`]);
      if (cwd.exitCode !== 0) return null;
      return { ...agent, install: path.basename(cwd.stdout.trim()) };
    },
  };
}
