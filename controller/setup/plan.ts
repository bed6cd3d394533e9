/**
 * What `deploy setup` writes on a host, as text: the agent config, the sudoers rule, the systemd
 * unit, the PM2 process file of the agent, the nginx hook; and the conflict check against the
 * host's existing nginx sites. Pure: controller/setup/steps.ts puts these on the host.
 */
import path from 'node:path';
import type { HostLayout } from './layout.js';
import { AGENT_MAIN } from './agent-package.js';

/** The agent's PM2 process, as `deploy upgrade` restarts it. */
export const AGENT_PROCESS_NAME = 'slipway-agent';
/** Debian's and Ubuntu's nginx binary and pid file. */
export const NGINX_BIN = '/usr/sbin/nginx';
export const NGINX_PID_FILE = '/run/nginx.pid';
/** Packages setup installs when missing (Debian/Ubuntu names). */
export const REQUIRED_PACKAGES = ['nginx', 'sudo'] as const;

export interface AppPolicy {
  /** Ports nginx may listen on for the app, e.g. [80]. */
  listenPorts: number[];
  serverNames: string[];
}

export interface SetupInput {
  layout: HostLayout;
  app: string;
  policy: AppPolicy;
  agentPort: number;
  /** Where the agent keeps its token and the controller reads it (deploy.config.json agent.tokenFile). */
  tokenFile: string;
}

/** The PM2 home of the apps: the agent's own daemon, apart from the one that runs the agent. */
export function appsPm2Home(layout: HostLayout): string {
  return path.join(layout.home, 'pm2');
}

/** The PM2 process file that starts the agent (what the unit's ExecStart passes to `pm2 start`). */
export function agentProcessFile(layout: HostLayout): string {
  return path.join(layout.etcDir, 'slipway-agent.config.cjs');
}

/** The switch flags' root (agent config nginx.switchDir): nginx's workers read it, so it is outside the agent's home. */
export function switchDir(layout: HostLayout): string {
  return `${layout.nginxIncludeDir}-switch`;
}

/**
 * A new agent.json: the one app of this deploy config allowed what its spec's routes claim. An
 * existing agent.json is never rewritten (it is the host owner's): see withApp().
 */
export function agentConfig(input: SetupInput): Record<string, unknown> {
  const { layout } = input;
  return {
    home: layout.home,
    api: { host: '127.0.0.1', port: input.agentPort, tokenFile: input.tokenFile },
    pm2: { home: appsPm2Home(layout) },
    nginx: {
      command: ['sudo', '-n', NGINX_BIN],
      testArgs: ['-t'],
      reloadArgs: ['-s', 'reload'],
      pidFile: NGINX_PID_FILE,
      includeDir: layout.nginxIncludeDir,
      switchDir: switchDir(layout),
    },
    apps: { [input.app]: appPolicyConfig(input.policy) },
  };
}

function appPolicyConfig(policy: AppPolicy): Record<string, unknown> {
  return { listen: { host: '*', ports: policy.listenPorts }, serverNames: policy.serverNames };
}

/** Pure: `config` with the app added when it has none (an existing app's policy is the owner's); null when nothing changes. */
export function withApp(config: Record<string, unknown>, app: string, policy: AppPolicy): Record<string, unknown> | null {
  const apps = (config.apps ?? {}) as Record<string, unknown>;
  if (apps[app] !== undefined) return null;
  return { ...config, apps: { ...apps, [app]: appPolicyConfig(policy) } };
}

/** The config's fields setup relies on, where they differ from what it writes: drift that --check names. */
export function configDrift(config: Record<string, unknown>, input: SetupInput): string[] {
  const want = agentConfig(input);
  const problems: string[] = [];
  const get = (value: Record<string, unknown>, ...keys: string[]): unknown => keys.reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], value);
  for (const keys of [['home'], ['api', 'port'], ['api', 'tokenFile'], ['nginx', 'command'], ['nginx', 'includeDir']]) {
    const have = JSON.stringify(get(config, ...keys));
    const expected = JSON.stringify(get(want, ...keys));
    if (have !== expected) problems.push(`${keys.join('.')} is ${have ?? 'missing'}, setup writes ${expected}`);
  }
  if ((config.apps as Record<string, unknown> | undefined)?.[input.app] === undefined) problems.push(`apps.${input.app} is missing`);
  return problems;
}

/** The sudoers drop-in: the agent's user may run exactly `nginx -t` and `nginx -s reload` as root, without a password. */
export function sudoersRule(layout: HostLayout): string {
  return [
    '# Slipway (deploy setup): the agent\'s user may test and reload nginx as root, and nothing else.',
    `${layout.user} ALL=(root) NOPASSWD: ${NGINX_BIN} -t, ${NGINX_BIN} -s reload`,
    '',
  ].join('\n');
}

/** conf.d/slipway.conf: includes the agent's rendered server blocks inside nginx's http{} (Debian's nginx.conf includes conf.d/*.conf there). */
export function nginxHook(layout: HostLayout): string {
  return `# Slipway (deploy setup): the server blocks the agent renders.\ninclude ${layout.nginxIncludeDir}/*.conf;\n`;
}

/**
 * The environment the agent's PM2 daemon runs with (the unit's Environment= lines, and setup's
 * direct start). No PM2_HOME: PM2 hands its environment down to the agent, which refuses a
 * PM2_HOME other than its own apps' daemon (agent/pm2.ts); PM2's default, $HOME/.pm2, is the
 * layout's pm2Home.
 */
export function pm2Environment(layout: HostLayout): Record<string, string> {
  if (path.join(layout.home, '.pm2') !== layout.pm2Home) throw new Error(`the layout's pm2Home (${layout.pm2Home}) must be <home>/.pm2`);
  return {
    HOME: layout.home,
    PATH: `${path.dirname(layout.nodeBin)}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
  };
}

/** The PM2 binary of the live agent install. */
export function pm2Bin(layout: HostLayout): string {
  return path.join(layout.agentCurrentLink, 'node_modules', 'pm2', 'bin', 'pm2');
}

/** argv of `pm2 <args>` for the agent's daemon (run as the agent's user, with pm2Environment()). */
export function pm2Argv(layout: HostLayout, args: readonly string[]): string[] {
  return [layout.nodeBin, pm2Bin(layout), ...args];
}

/** The unit's ExecStart: start (or adopt) the agent's PM2 daemon with the agent in it. */
export function execStart(layout: HostLayout): string[] {
  return pm2Argv(layout, ['start', agentProcessFile(layout)]);
}

/**
 * The systemd unit. Type=forking: `pm2 start` starts the daemon and returns; the daemon's pid file
 * is the main pid. Only the agent runs in this daemon; the agent starts its own PM2 daemon for the
 * apps (agent config pm2.home) and brings the live slots back itself after a reboot (recovery), so
 * no `pm2 save`/`resurrect` dump can go stale.
 */
export function systemdUnit(layout: HostLayout): string {
  const env = pm2Environment(layout);
  return [
    '# Slipway (deploy setup): PM2 as the agent\'s user, with the agent in it; the agent brings the apps back.',
    '[Unit]',
    'Description=Slipway agent (PM2 daemon of the slipway user)',
    'After=network-online.target nginx.service',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=forking',
    `User=${layout.user}`,
    `Group=${layout.user}`,
    `WorkingDirectory=${layout.home}`,
    ...Object.entries(env).map(([k, v]) => `Environment=${k}=${v}`),
    `PIDFile=${path.join(layout.pm2Home, 'pm2.pid')}`,
    `ExecStart=${execStart(layout).join(' ')}`,
    `ExecStop=${pm2Argv(layout, ['kill']).join(' ')}`,
    'Restart=on-failure',
    'LimitNOFILE=65536',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The PM2 process file of the agent (CommonJS: PM2 require()s it), as ecosystem.config.js runs it. */
export function agentProcessConfig(layout: HostLayout): string {
  const app = {
    name: AGENT_PROCESS_NAME,
    // Through env(1), which execs node in the same process: PM2 puts its own PM2_HOME into the
    // environment of what it starts, and the agent refuses a PM2_HOME other than its apps' daemon.
    // The V8 flags: see ecosystem.config.js.
    script: '/usr/bin/env',
    args: ['-u', 'PM2_HOME', layout.nodeBin, '--max-semi-space-size=1', '--interrupt-budget=675840', path.join(layout.agentCurrentLink, AGENT_MAIN), 'run', '--config', layout.configFile],
    cwd: layout.agentCurrentLink,
    interpreter: 'none',
    exec_mode: 'fork',
    instances: 1,
    autorestart: true,
    exp_backoff_restart_delay: 200,
    kill_timeout: 15000,
    // Stopping the agent (deploy upgrade, setup) signals the agent alone: PM2's default tree kill
    // would also end the apps' PM2 daemon, which the agent spawned and so is its child until the
    // agent's first restart, and every app with it.
    treekill: false,
    max_memory_restart: '256M',
    env: { NODE_ENV: 'production', PATH: pm2Environment(layout).PATH },
  };
  return `// Slipway (deploy setup): the agent under the slipway user's PM2 daemon.\nmodule.exports = { apps: [${JSON.stringify(app, null, 2)}] };\n`;
}

export interface NginxConflict { file: string; serverName: string }

/**
 * Pure: server names of `names` that a site outside Slipway's own files already serves, in the
 * output of `nginx -T` (each file's text follows a `# configuration file <path>:` line). Names
 * compare case-insensitively; a site's `_` (catch-all) conflicts only with an app that claims `_`.
 */
export function nginxConflicts(dump: string, names: readonly string[], ownFiles: (file: string) => boolean): NginxConflict[] {
  const wanted = new Map(names.map((n) => [n.toLowerCase(), n]));
  const conflicts: NginxConflict[] = [];
  let file = '';
  for (const rawLine of dump.split('\n')) {
    const header = /^# configuration file (.+):$/.exec(rawLine);
    if (header) {
      file = header[1]!;
      continue;
    }
    if (ownFiles(file)) continue;
    const line = rawLine.replace(/#.*$/, '');
    for (const match of line.matchAll(/(?:^|[;{}\s])server_name\s+([^;]+);/g)) {
      for (const name of match[1]!.trim().split(/\s+/)) {
        const ours = wanted.get(name.toLowerCase());
        if (ours !== undefined && !conflicts.some((c) => c.file === file && c.serverName === ours)) conflicts.push({ file, serverName: ours });
      }
    }
  }
  return conflicts;
}

/** Pure: what the app's spec routes claim, as the host policy setup writes for it (no spec: port 80, catch-all). */
export function policyFromRoutes(routes: readonly { serverNames: string[]; listenPort?: number | undefined }[] | undefined): AppPolicy {
  if (!routes || routes.length === 0) return { listenPorts: [80], serverNames: ['_'] };
  const ports = [...new Set(routes.map((r) => r.listenPort ?? 80))].sort((a, b) => a - b);
  const names: string[] = [];
  for (const r of routes) for (const n of r.serverNames) if (!names.some((m) => m.toLowerCase() === n.toLowerCase())) names.push(n);
  return { listenPorts: ports, serverNames: names };
}

/** Pure: the supplementary group ids in a /proc/<pid>/status text ("Groups:\t4 998 999"). */
export function processGroups(procStatus: string): number[] {
  const line = /^Groups:(.*)$/m.exec(procStatus)?.[1] ?? '';
  return line.trim().split(/\s+/).filter(Boolean).map(Number).filter(Number.isInteger);
}
