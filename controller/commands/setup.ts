import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { packageRoot } from '../../contract/version.js';
import { loadSpec } from '../build/spec.js';
import type { Target } from '../environments.js';
import { EXIT, type ExitCode } from '../errors.js';
import { repoRoot } from '../git.js';
import type { Output } from '../output.js';
import { formatMs } from '../output.js';
import { connectHost, openAgentSession } from '../session.js';
import { packAgent } from '../setup/agent-package.js';
import { privilegedShell } from '../setup/host-shell.js';
import { hostLayout } from '../setup/layout.js';
import { NGINX_BIN, nginxConflicts, policyFromRoutes } from '../setup/plan.js';
import { SETUP_STEPS, type SetupContext } from '../setup/steps.js';

export interface SetupOptions {
  /** Report drift only; change nothing. */
  check: boolean;
  /** The app's repository (its deploy.spec.json at HEAD says which server names and ports the app claims). */
  cwd: string;
  /** How long to wait for the agent to answer after starting it. */
  agentTimeoutMs?: number;
}

/** Where packed agents are kept between runs: $XDG_CACHE_HOME/slipway/agent-packages (default ~/.cache). */
export function agentPackageCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'slipway', 'agent-packages');
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Pure: is this os-release a Debian or a derivative (Ubuntu)? */
export function isDebianLike(osRelease: string): boolean {
  const field = (name: string) => new RegExp(`^${name}="?([^"\\n]*)"?$`, 'm').exec(osRelease)?.[1] ?? '';
  return field('ID') === 'debian' || field('ID_LIKE').split(/\s+/).includes('debian');
}

/**
 * `deploy setup [--check]`: makes the target host a Slipway host (controller/setup/steps.ts), or
 * with --check reports how it differs from one. Refuses, before changing anything, a host that is
 * not Debian-like, a user without root's rights, and a host whose nginx already serves one of the
 * app's server names from a site of its own.
 */
export async function setup(target: Target, options: SetupOptions, out: Output): Promise<ExitCode> {
  const started = Date.now();
  const layout = hostLayout('/');
  const repo = await repoRoot(options.cwd);
  const spec = await loadSpec(repo, 'HEAD', 'HEAD');
  const policy = policyFromRoutes(spec?.spec.routes);
  const input = { layout, app: target.app, policy, agentPort: target.agent.port, tokenFile: target.agent.tokenFile };

  const packStarted = Date.now();
  const agent = await packAgent(packageRoot(), { cacheDir: agentPackageCacheDir() });
  out.info(`setup: packed agent ${agent.version} (${agent.files} files, ${(agent.bytes / 1048576).toFixed(1)} MiB) in ${formatMs(Date.now() - packStarted)}`, { step: 'pack', version: agent.version, bytes: agent.bytes });
  const ssh = await connectHost(target);
  try {
    const shell = await privilegedShell(ssh);
    const osRelease = (await shell.run(['cat', '/etc/os-release'])).stdout;
    if (!isDebianLike(osRelease)) {
      throw new SlipwayError('setup_not_privileged', `${ssh.remoteAddressLabel} is not a Debian or Ubuntu system: deploy setup installs with apt and Debian's nginx layout`, {
        hint: 'set the host up by hand (README "Using it on a server"), or use a Debian or Ubuntu server',
      });
    }
    // Before anything changes: a site of the host's own that serves one of the app's names.
    if ((await shell.run(['test', '-x', NGINX_BIN])).exitCode === 0) {
      const dump = await shell.run([NGINX_BIN, '-T'], { timeoutMs: 60_000 });
      const conflicts = nginxConflicts(dump.stdout, policy.serverNames, (file) => file === layout.nginxHookFile || file.startsWith(`${layout.nginxIncludeDir}/`));
      if (conflicts.length > 0) {
        throw new SlipwayError('setup_conflict', `nginx on ${ssh.remoteAddressLabel} already serves ${conflicts.map((c) => c.serverName).join(', ')} from a site of its own: nothing was changed`, {
          details: conflicts.map((c) => `${c.file}: server_name ${c.serverName}`),
          hint: `remove or rename that server_name in the file named above (or give ${target.app} other server names in deploy.spec.json), then run deploy setup again`,
        });
      }
    }
    const systemd = (await shell.run(['test', '-d', '/run/systemd/system'])).exitCode === 0;
    const nodeSha = await sha256File(process.execPath);
    const ctx: SetupContext = {
      shell, layout, input, sshUser: target.host.user, systemd,
      agent: { version: agent.version, digest: agent.digest, packageVersion: agent.packageVersion, tarball: () => readFile(agent.tarball) },
      node: { sha256: nodeSha, read: () => readFile(process.execPath) },
    };
    out.info(`setup: ${ssh.remoteAddressLabel} as ${shell.via === 'root' ? 'root' : `${target.host.user} with sudo`}, ${systemd ? 'systemd' : 'no systemd (the agent\'s PM2 is started directly, as the unit would)'}${options.check ? ', --check: nothing is changed' : ''}`, { via: shell.via, systemd });

    const changed: string[] = [];
    const drifted: { step: string; drift: string[] }[] = [];
    for (const step of SETUP_STEPS) {
      const stepStarted = Date.now();
      const drift = await step.check(ctx);
      if (drift.length === 0) {
        out.info(`  ok       ${step.name}`, { step: step.name, state: 'ok' });
        continue;
      }
      if (options.check) {
        drifted.push({ step: step.name, drift });
        out.info(`  drift    ${step.name}: ${drift.join('; ')}`, { step: step.name, state: 'drift', drift });
        continue;
      }
      await step.apply(ctx, drift);
      changed.push(step.name);
      out.info(`  changed  ${step.name}: ${drift.join('; ')} (${formatMs(Date.now() - stepStarted)})`, { step: step.name, state: 'changed', drift, ms: Date.now() - stepStarted });
    }

    if (options.check) {
      out.info(drifted.length === 0 ? 'setup --check: no drift' : `setup --check: drift in ${drifted.length} step(s): ${drifted.map((d) => d.step).join(', ')}`);
      out.data({ check: true, drift: drifted });
      return drifted.length === 0 ? EXIT.ok : EXIT.failedBeforeSwitch;
    }
    // The proof: the controller reaches the agent the way every command does (tunnel, token, version check).
    const health = await agentAnswers(target, options.agentTimeoutMs ?? 60_000);
    const totalMs = Date.now() - started;
    out.info(changed.length === 0
      ? `setup: nothing changed; agent ${health.version} answers (${formatMs(totalMs)})`
      : `setup: changed ${changed.join(', ')}; agent ${health.version} answers (${formatMs(totalMs)})`);
    out.data({ changed, agentVersion: agent.version, totalMs });
    return EXIT.ok;
  } finally {
    await ssh.close();
    await agent.dispose();
  }
}

async function agentAnswers(target: Target, timeoutMs: number): Promise<{ version: string }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const session = await openAgentSession(target);
      try {
        const health = await session.agent.get<{ version?: string }>('/health');
        return { version: health.version ?? 'unknown' };
      } finally {
        await session.close();
      }
    } catch (error) {
      last = error;
      if (error instanceof SlipwayError && error.code === 'agent_incompatible') throw error;
    }
    if (Date.now() > deadline) {
      throw new SlipwayError('setup_step_failed', `the agent did not answer within ${Math.round(timeoutMs / 1000)} s of setup: ${errorMessage(last)}`, {
        hint: `look at the agent's log on the host (runuser -u slipway -- env PM2_HOME=/var/lib/slipway/.pm2 /opt/slipway/node/bin/node /opt/slipway/agent/current/node_modules/pm2/bin/pm2 logs slipway-agent), fix it and run deploy setup again`,
      });
    }
    await delay(500);
  }
}
