/**
 * The steps of `deploy setup`, in order. Each one checks the host first and reports what differs
 * from what setup makes (its drift: `deploy setup --check` prints it and changes nothing); only
 * then, and only when something differs, it acts. Each action is atomic on its own (temp file and
 * rename, temp dir and rename, symlink swap), so a run that is interrupted anywhere leaves the
 * host in a state the next run checks and completes; a second run finds no drift: "nothing changed".
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { SlipwayError } from '../../contract/errors.js';
import type { HostLayout } from './layout.js';
import { AGENT_PACKAGE_MARKER, parseAgentPackageMarker, type AgentPackageInfo } from './agent-package.js';
import { dirState, fileState, writeHostFile, type HostShell } from './host-shell.js';
import {
  AGENT_PROCESS_NAME, NGINX_BIN, NGINX_PID_FILE, REQUIRED_PACKAGES, agentConfig, agentProcessConfig, agentProcessFile, appsPm2Home,
  configDrift, nginxHook, pm2Argv, pm2Environment, processGroups, sudoersRule, switchDir, systemdUnit, withApp, type SetupInput,
} from './plan.js';

export interface SetupContext {
  shell: HostShell;
  layout: HostLayout;
  input: SetupInput;
  /** The SSH user: joins the token's group unless it is root. */
  sshUser: string;
  /** The agent this controller installs; its tarball is read only when the host lacks it. */
  agent: AgentPackageInfo & { tarball(): Promise<Buffer> };
  node: { sha256: string; read(): Promise<Buffer> };
  /** Whether systemd runs on the host (PID 1): the unit is enabled and started through it. */
  systemd: boolean;
}

export interface SetupStep {
  name: string;
  /** What differs from what setup makes; empty when the step has nothing to do. Reads only. */
  check(ctx: SetupContext): Promise<string[]>;
  apply(ctx: SetupContext, drift: readonly string[]): Promise<void>;
}

const LONG_MS = 15 * 60_000;

function fileDrift(label: string, state: { mode: string; owner: string; group: string; sha256?: string } | null, want: { mode: string; owner: string; group: string; sha256?: string }): string[] {
  if (state === null) return [`${label} is missing`];
  const drift: string[] = [];
  if (want.sha256 !== undefined && state.sha256 !== want.sha256) drift.push(`${label} has other contents`);
  if (state.mode !== want.mode.replace(/^0/, '')) drift.push(`${label} has mode ${state.mode}, should be ${want.mode.replace(/^0/, '')}`);
  if (state.owner !== want.owner || state.group !== want.group) drift.push(`${label} is owned by ${state.owner}:${state.group}, should be ${want.owner}:${want.group}`);
  return drift;
}

async function sha256Text(text: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(text).digest('hex');
}

/** A root-owned text file setup writes whole: checked by content, mode and owner. */
function managedFile(name: string, file: (l: HostLayout) => string, content: (ctx: SetupContext) => string, meta: { mode: string; owner: 'root' }, after?: (ctx: SetupContext) => Promise<void>, validate?: readonly string[]): SetupStep {
  return {
    name,
    async check(ctx) {
      return fileDrift(file(ctx.layout), await fileState(ctx.shell, file(ctx.layout)), { ...meta, group: 'root', sha256: await sha256Text(content(ctx)) });
    },
    async apply(ctx) {
      await ctx.shell.checked(['install', '-d', '-m', '755', path.dirname(file(ctx.layout))], name);
      await writeHostFile(ctx.shell, file(ctx.layout), content(ctx), { ...meta, group: 'root' }, name, validate);
      await after?.(ctx);
    },
  };
}

/** runuser argv: `argv` as the agent's user, in the environment its PM2 daemon has. */
function asAgentUser(layout: HostLayout, argv: readonly string[]): string[] {
  // In its home, as the unit's WorkingDirectory: PM2 spawns its daemon in the caller's cwd (root's home is closed to it).
  return ['runuser', '-u', layout.user, '--', 'env', `--chdir=${layout.home}`, ...Object.entries(pm2Environment(layout)).map(([k, v]) => `${k}=${v}`), ...argv];
}

/**
 * The user step's drift when the agent's user cannot read nginx's error log. Why adm and not less:
 * Debian's nginx logs are 0640 in group adm and logrotate recreates them so, which makes adm the one
 * read-only way in that survives rotation without an ACL package or an edit of the distribution's
 * nginx.conf or logrotate file (a main-context error_log of our own would need either). The cost,
 * said plainly: the apps run as this user too, and adm reads the other logs in /var/log.
 */
const LOG_GROUP_DRIFT = (layout: HostLayout) => `${layout.user} is not in group ${layout.logGroup} (it reads nginx's error log through it)`;
const AGENT_GROUP_DRIFT = (layout: HostLayout) => `the running agent is not in group ${layout.logGroup}: its PM2 daemon started before ${layout.user} joined it`;

/** The running agent's install version (its cwd under /opt/slipway/agent/<version>) and pid, or why there is none. */
async function runningAgent(ctx: SetupContext): Promise<{ version: string; pid: number } | { problem: string }> {
  const { shell, layout } = ctx;
  // `pm2 jlist` would start a daemon: ask only when one runs.
  const daemon = await shell.run(['sh', '-c', 'kill -0 "$(cat "$1")" 2>/dev/null', 'sh', path.join(layout.pm2Home, 'pm2.pid')]);
  if (daemon.exitCode !== 0) return { problem: 'the agent\'s PM2 daemon is not running' };
  const list = await shell.run(asAgentUser(layout, pm2Argv(layout, ['jlist'])), { timeoutMs: 60_000 });
  if (list.exitCode !== 0) return { problem: 'pm2 jlist failed' };
  let processes: { name?: string; pid?: number; pm2_env?: { status?: string } }[];
  try {
    processes = JSON.parse(list.stdout.slice(list.stdout.indexOf('['))) as typeof processes;
  } catch {
    return { problem: 'pm2 jlist answered no JSON' };
  }
  const agent = processes.find((p) => p.name === AGENT_PROCESS_NAME);
  if (!agent || agent.pm2_env?.status !== 'online' || !agent.pid) return { problem: `${AGENT_PROCESS_NAME} is not online in PM2` };
  const cwd = await shell.run(['readlink', `/proc/${agent.pid}/cwd`]);
  return { version: path.basename(cwd.stdout.trim()), pid: agent.pid };
}

/** Whether process `pid` has the log group among its groups (false when it cannot be told). */
async function processHasLogGroup(ctx: SetupContext, pid: number): Promise<boolean> {
  const group = await ctx.shell.run(['getent', 'group', ctx.layout.logGroup]);
  const gid = Number(group.stdout.split(':')[2]);
  const status = await ctx.shell.run(['cat', `/proc/${pid}/status`]);
  return group.exitCode === 0 && status.exitCode === 0 && processGroups(status.stdout).includes(gid);
}

export const SETUP_STEPS: readonly SetupStep[] = [
  {
    name: 'packages',
    async check(ctx) {
      const result = await ctx.shell.run(['dpkg-query', '-W', '-f', '${Package} ${Status}\\n', ...REQUIRED_PACKAGES]);
      const installed = new Set(result.stdout.split('\n').filter((l) => l.endsWith(' install ok installed')).map((l) => l.split(' ')[0]));
      return REQUIRED_PACKAGES.filter((p) => !installed.has(p)).map((p) => `package ${p} is not installed`);
    },
    async apply(ctx, drift) {
      const missing = drift.map((d) => d.split(' ')[1]!);
      const env = ['env', 'DEBIAN_FRONTEND=noninteractive'];
      await ctx.shell.checked([...env, 'apt-get', '-q', 'update'], 'apt-get update', { timeoutMs: LONG_MS });
      await ctx.shell.checked([...env, 'apt-get', 'install', '-y', '-q', '--no-install-recommends', ...missing], `apt-get install ${missing.join(' ')}`, { timeoutMs: LONG_MS });
    },
  },
  {
    name: 'nginx running',
    async check(ctx) {
      const alive = await ctx.shell.run(['sh', '-c', 'kill -0 "$(cat "$1")" 2>/dev/null', 'sh', NGINX_PID_FILE]);
      return alive.exitCode === 0 ? [] : ['nginx is not running'];
    },
    async apply(ctx) {
      if (ctx.systemd) await ctx.shell.checked(['systemctl', 'enable', '--now', 'nginx.service'], 'start nginx');
      else await ctx.shell.checked([NGINX_BIN], 'start nginx');
    },
  },
  {
    name: 'user',
    async check(ctx) {
      const { layout, sshUser, shell } = ctx;
      const drift: string[] = [];
      if ((await shell.run(['getent', 'passwd', layout.user])).exitCode !== 0) drift.push(`user ${layout.user} is missing`);
      if ((await shell.run(['getent', 'group', layout.tokenGroup])).exitCode !== 0) drift.push(`group ${layout.tokenGroup} is missing`);
      const agentGroups = await shell.run(['id', '-nG', layout.user]);
      if (agentGroups.exitCode !== 0 || !agentGroups.stdout.trim().split(/\s+/).includes(layout.logGroup)) drift.push(LOG_GROUP_DRIFT(layout));
      if (sshUser !== 'root') {
        const groups = (await shell.run(['id', '-nG', sshUser])).stdout.trim().split(/\s+/);
        if (!groups.includes(layout.tokenGroup)) drift.push(`${sshUser} is not in group ${layout.tokenGroup} (it reads the API token through it)`);
      }
      return drift;
    },
    async apply(ctx, drift) {
      const { layout, sshUser, shell } = ctx;
      if (drift.some((d) => d.startsWith('group '))) await shell.checked(['groupadd', '--system', layout.tokenGroup], 'create the token group');
      if (drift.some((d) => d.startsWith('user '))) {
        await shell.checked(['useradd', '--system', '--user-group', '--home-dir', layout.home, '--no-create-home', '--shell', '/usr/sbin/nologin', '--comment', 'Slipway agent and apps', layout.user], 'create the agent user');
      }
      if (drift.includes(LOG_GROUP_DRIFT(layout))) await shell.checked(['usermod', '-a', '-G', layout.logGroup, layout.user], 'add the agent user to the log group');
      if (drift.some((d) => d.startsWith(`${sshUser} is not in group `))) await shell.checked(['usermod', '-a', '-G', layout.tokenGroup, sshUser], 'add the SSH user to the token group');
    },
  },
  {
    name: 'node',
    async check(ctx) {
      return fileDrift(ctx.layout.nodeBin, await fileState(ctx.shell, ctx.layout.nodeBin), { mode: '755', owner: 'root', group: 'root', sha256: ctx.node.sha256 });
    },
    async apply(ctx) {
      // Each level named: parents made by `install -d` would get the session's umask.
      await ctx.shell.checked(['install', '-d', '-m', '755', ctx.layout.optDir, ctx.layout.nodeDir, path.dirname(ctx.layout.nodeBin)], 'node');
      await writeHostFile(ctx.shell, ctx.layout.nodeBin, await ctx.node.read(), { mode: '755', owner: 'root', group: 'root' }, 'upload node');
    },
  },
  {
    name: 'agent install',
    async check(ctx) {
      const { layout, shell, agent } = ctx;
      const drift: string[] = [];
      const marker = await shell.run(['cat', path.join(layout.agentVersionsDir, agent.version, AGENT_PACKAGE_MARKER)]);
      if (marker.exitCode !== 0 || parseAgentPackageMarker(marker.stdout)?.digest !== agent.digest) drift.push(`agent ${agent.version} is not installed`);
      const current = (await shell.run(['readlink', layout.agentCurrentLink])).stdout.trim();
      if (current !== agent.version) drift.push(current ? `the live agent install is ${current}, this controller's is ${agent.version}` : `${layout.agentCurrentLink} is missing`);
      return drift;
    },
    async apply(ctx, drift) {
      const { layout, shell, agent } = ctx;
      const dir = path.join(layout.agentVersionsDir, agent.version);
      await shell.checked(['install', '-d', '-m', '755', layout.optDir, layout.agentVersionsDir], 'agent install');
      if (drift.some((d) => d.endsWith('is not installed'))) {
        // Unpacked beside its final name, which appears complete (marker included) in one rename.
        await shell.checked(['sh', '-c', 'set -e; rm -rf "$1.part"; install -d -m 755 "$1.part"; tar -xzf - -C "$1.part" --no-same-owner; chown -R root:root "$1.part"; rm -rf "$1"; mv "$1.part" "$1"', 'sh', dir],
          'unpack the agent', { stdin: await agent.tarball(), timeoutMs: LONG_MS });
      }
      // Swapped by a rename, so `current` never dangles or is missing.
      await shell.checked(['sh', '-c', 'set -e; ln -sfn "$2" "$1.slipway-tmp"; mv -T "$1.slipway-tmp" "$1"', 'sh', layout.agentCurrentLink, agent.version], 'switch agent/current');
    },
  },
  {
    name: 'directories',
    async check(ctx) {
      const drift: string[] = [];
      for (const d of directories(ctx.layout, ctx.input.app)) {
        const state = await dirState(ctx.shell, d.path);
        drift.push(...fileDrift(d.path, state, d));
      }
      return drift;
    },
    async apply(ctx) {
      for (const d of directories(ctx.layout, ctx.input.app)) await ctx.shell.checked(['install', '-d', '-m', d.mode, '-o', d.owner, '-g', d.group, d.path], `directory ${d.path}`);
    },
  },
  {
    name: 'agent config',
    async check(ctx) {
      const { layout, shell, input } = ctx;
      const state = await fileState(shell, layout.configFile);
      if (state === null) return [`${layout.configFile} is missing`];
      const drift = fileDrift(layout.configFile, state, { mode: '640', owner: 'root', group: layout.user });
      const text = (await shell.run(['cat', layout.configFile])).stdout;
      let config: Record<string, unknown>;
      try {
        config = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return [...drift, `${layout.configFile} is not valid JSON`];
      }
      return [...drift, ...configDrift(config, input).map((d) => `${layout.configFile}: ${d}`)];
    },
    async apply(ctx, drift) {
      const { layout, shell, input } = ctx;
      const meta = { mode: '640', owner: 'root', group: layout.user };
      const existing = await shell.run(['cat', layout.configFile]);
      let config: Record<string, unknown> | null = null;
      if (existing.exitCode === 0) {
        try {
          config = JSON.parse(existing.stdout) as Record<string, unknown>;
        } catch {
          throw new SlipwayError('setup_step_failed', `${layout.configFile} on the host is not valid JSON: setup does not overwrite the host owner's config`, {
            hint: `fix or remove ${layout.configFile} on the host, then run deploy setup again`,
          });
        }
      }
      const next = config === null ? agentConfig(input) : withApp(config, input.app, input.policy);
      const owned = drift.filter((d) => !d.startsWith(`${layout.configFile}:`));
      if (next === null && owned.length === 0) {
        // Other differences are the host owner's choices: reported, never overwritten.
        return;
      }
      await writeHostFile(shell, layout.configFile, `${JSON.stringify(next ?? config, null, 2)}\n`, meta, 'write the agent config');
    },
  },
  {
    name: 'token',
    async check(ctx) {
      const { shell, layout, input } = ctx;
      const want = { mode: '640', owner: layout.user, group: layout.tokenGroup };
      const state = await fileState(shell, input.tokenFile);
      if (state === null) return [`${input.tokenFile} is missing`];
      const length = await shell.run(['sh', '-c', 'tr -d "\\n" < "$1" | wc -c', 'sh', input.tokenFile]);
      const drift = fileDrift(input.tokenFile, state, want);
      if (Number(length.stdout.trim()) < 32) drift.push(`${input.tokenFile} holds no token of 32 characters or more`);
      return drift;
    },
    async apply(ctx, drift) {
      const { shell, layout, input } = ctx;
      const meta = { mode: '640', owner: layout.user, group: layout.tokenGroup };
      if (drift.some((d) => d.endsWith('is missing') || d.includes('holds no token'))) {
        // Made here, sent on stdin: never in an argv, a log or an error.
        await writeHostFile(shell, input.tokenFile, `${randomBytes(32).toString('base64url')}\n`, meta, 'write the API token');
      } else {
        await shell.checked(['chown', `${meta.owner}:${meta.group}`, input.tokenFile], 'token owner');
        await shell.checked(['chmod', meta.mode, input.tokenFile], 'token mode');
      }
    },
  },
  managedFile('sudoers rule', (l) => l.sudoersFile, (ctx) => sudoersRule(ctx.layout), { mode: '440', owner: 'root' }, undefined, ['visudo', '-c', '-q', '-f', '{}']),
  managedFile('nginx include', (l) => l.nginxHookFile, (ctx) => nginxHook(ctx.layout), { mode: '644', owner: 'root' }, async (ctx) => {
    const test = await ctx.shell.run([NGINX_BIN, '-t']);
    if (test.exitCode !== 0) {
      await ctx.shell.run(['rm', '-f', ctx.layout.nginxHookFile]);
      throw new SlipwayError('setup_step_failed', `nginx -t refused the configuration with ${ctx.layout.nginxHookFile}: it was removed again`, {
        details: test.stderr.split('\n').filter(Boolean).slice(-10), hint: 'fix the nginx configuration the lines above name, then run deploy setup again',
      });
    }
    await ctx.shell.checked([NGINX_BIN, '-s', 'reload'], 'reload nginx');
  }),
  managedFile('agent process file', (l) => agentProcessFile(l), (ctx) => agentProcessConfig(ctx.layout), { mode: '644', owner: 'root' }),
  managedFile('systemd unit', (l) => l.systemdUnit, (ctx) => systemdUnit(ctx.layout), { mode: '644', owner: 'root' }, async (ctx) => {
    if (!ctx.systemd) return;
    await ctx.shell.checked(['systemctl', 'daemon-reload'], 'systemctl daemon-reload');
    await ctx.shell.checked(['systemctl', 'enable', path.basename(ctx.layout.systemdUnit)], 'enable the unit');
  }),
  {
    name: 'agent running',
    async check(ctx) {
      const running = await runningAgent(ctx);
      if ('problem' in running) return [running.problem];
      const drift = running.version === ctx.agent.version ? [] : [`the running agent is ${running.version}, the installed one ${ctx.agent.version}`];
      if (!await processHasLogGroup(ctx, running.pid)) drift.push(AGENT_GROUP_DRIFT(ctx.layout));
      return drift;
    },
    async apply(ctx, drift) {
      const { shell, layout } = ctx;
      const pm2 = (args: string[], step: string) => shell.checked(asAgentUser(layout, pm2Argv(layout, args)), step, { timeoutMs: 120_000 });
      if (drift.includes(AGENT_GROUP_DRIFT(layout))) {
        // Groups are fixed when a process starts: only a new daemon has the new one. The apps run in
        // the agent's own daemon, not this one, and keep running.
        await pm2(['kill'], 'stop the agent\'s PM2 daemon');
      }
      const daemonDown = drift.some((d) => d.includes('PM2 daemon is not running')) || drift.includes(AGENT_GROUP_DRIFT(layout));
      if (daemonDown && ctx.systemd) {
        await shell.checked(['systemctl', 'start', path.basename(layout.systemdUnit)], 'start the unit');
        return;
      }
      if (daemonDown) {
        await pm2(['start', agentProcessFile(layout)], 'start the agent under PM2');
        return;
      }
      // Only the agent's process: the apps run in the agent's own PM2 daemon and keep running.
      if (drift.some((d) => d.startsWith('the running agent is') || d.includes('is not online'))) await shell.run(asAgentUser(layout, pm2Argv(layout, ['delete', AGENT_PROCESS_NAME])));
      // What the unit's ExecStart runs, as systemd would: this user, this environment.
      await pm2(['start', agentProcessFile(layout)], 'start the agent under PM2');
    },
  },
  {
    // Made by the agent at its start (agent/nginx/probe-secret.ts); nginx's master reads the snippet as root.
    name: 'probe secret',
    async check(ctx) {
      const { layout, shell } = ctx;
      const want = { mode: '600', owner: layout.user, group: layout.user };
      const drift: string[] = [];
      for (const file of [layout.probeSecretFile, layout.probeSnippetFile]) drift.push(...fileDrift(file, await fileState(shell, file), want));
      return drift;
    },
    async apply(ctx) {
      const { layout, shell } = ctx;
      // An agent started by the step before writes them as it starts: give it that time.
      const files = [layout.probeSecretFile, layout.probeSnippetFile];
      const deadline = Date.now() + 60_000;
      while ((await shell.run(['test', '-f', files[0]!, '-a', '-f', files[1]!])).exitCode !== 0) {
        if (Date.now() > deadline) {
          throw new SlipwayError('setup_step_failed', `the agent did not write its probe secret (${files.join(', ')}) within 60 s of its start`, {
            hint: 'the agent writes both files at its start: look at its log (pm2 logs slipway-agent as the slipway user), fix it and run deploy setup again',
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      for (const file of [layout.probeSecretFile, layout.probeSnippetFile]) {
        await shell.checked(['chown', `${layout.user}:${layout.user}`, file], 'probe secret owner');
        await shell.checked(['chmod', '600', file], 'probe secret mode');
      }
    },
  },
];

/** The directories setup owns: mode, owner, group. */
export function directories(layout: HostLayout, app: string): { path: string; mode: string; owner: string; group: string }[] {
  const root = { owner: 'root', group: 'root' };
  const agent = { owner: layout.user, group: layout.user };
  return [
    // nginx's workers search /etc/slipway for the switch flags; its files protect themselves (0640).
    { path: layout.etcDir, mode: '755', ...root },
    { path: layout.nginxIncludeDir, mode: '755', ...agent },
    { path: switchDir(layout), mode: '755', ...agent },
    { path: layout.optDir, mode: '755', ...root },
    { path: layout.agentVersionsDir, mode: '755', ...root },
    { path: layout.nodeDir, mode: '755', ...root },
    { path: path.dirname(layout.nodeBin), mode: '755', ...root },
    // The agent makes its home private at start (0700): the same here, or every run would see drift.
    { path: layout.home, mode: '700', ...agent },
    { path: layout.pm2Home, mode: '700', ...agent },
    { path: appsPm2Home(layout), mode: '700', ...agent },
    // The app's shared dir (env file, uploads): where its processes may write, unlike their releases.
    { path: path.join(layout.home, 'apps'), mode: '750', ...agent },
    { path: path.join(layout.home, 'apps', app), mode: '750', ...agent },
    { path: path.join(layout.home, 'apps', app, 'shared'), mode: '700', ...agent },
  ];
}
