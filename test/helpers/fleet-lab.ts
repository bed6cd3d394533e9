import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createNetnsHost, createNetnsLan, type NetnsHost, type NetnsLan } from './netns.js';
import { APP, SAMPLE_APP_DIR, httpGet, startStack, type Stack, type StackOptions } from './stack.js';
import { runDeployCli, startDeployCli, type BackgroundCli, type CliResult } from './agent-process.js';
import { createAppRepo, type AppRepo } from './git-repo.js';
import { ensureDeployUser } from './deploy-user.js';
import { readState, releaseOfCommit } from './state.js';

/**
 * A fleet on one machine (issue 15): N boxes, each a full stack (sshd on :22, nginx on :80, the
 * agent on the namespace's loopback :7070, its own PM2 home) in a network namespace of its own,
 * and ONE app repository whose deploy.config.json names them all as the hosts of one environment.
 * The boxes share one private LAN (test/helpers/netns.ts createNetnsLan): they reach each other
 * (a relay between hosts), and the controller reaches all of them through ONE uplink, the LAN
 * bridge's queue, which `uplinkMbit` shapes as a real controller's link would be.
 *
 * As on real hosts, every box has its token at the same path (one file here, shared) and its agent
 * on the same port; each host entry carries its own SSH settings (key, known_hosts).
 *
 * The controller always runs with `--config <lab.configPath>` (a file outside the repository, so
 * rewriting it never dirties the tree). `deployTo(i, ...)` runs it against host i alone through a
 * single-host config of its own: how a test puts one box on another release (drift) on purpose.
 */
export interface FleetLabHost {
  /** 0-based position in the environment's hosts list. */
  index: number;
  /** The host's name in the config: h1, h2, ... */
  name: string;
  /** The namespace's address: what the controller connects to (port 22). */
  address: string;
  netns: NetnsHost;
  stack: Stack;
  /** Single-host deploy.config.json for this box alone (no environments). */
  configPath: string;
}

/** One host entry of environments.<env>.hosts as the lab writes it. */
export interface FleetHostEntry {
  name?: string;
  address: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  [field: string]: unknown;
}

/** The deploy.config.json the lab writes (a plain object: tests edit it through writeConfig). */
export interface FleetConfig {
  app: string;
  agent: { port: number; tokenFile: string };
  defaultEnv: string;
  environments: Record<string, { hosts: FleetHostEntry[]; rollout?: Record<string, unknown>; [field: string]: unknown }>;
  [field: string]: unknown;
}

export interface FleetLabOptions {
  /** How many boxes (default 3). */
  hosts?: number;
  /** The environment's name (default production). */
  env?: string;
  /** environments.<env>.rollout, written as given (fleet-core's seam decides its shape). */
  rollout?: Record<string, unknown>;
  /** Give each host entry `name: hN` (default true; false leaves the default name, the address). */
  named?: boolean;
  /** SSH keepalive of every host entry (partition tests want a short bound). */
  keepalive?: { intervalMs: number; countMax: number };
  /** Passed to every box's startStack (appConfig, agentConfig, ...). */
  stack?: Omit<StackOptions, 'netns' | 'tokenFile'>;
  /** The controller's uplink to all hosts together, in Mbit/s (default: unshaped). */
  uplinkMbit?: number | null;
  /** Give each host entry `relay: <its LAN address>` (the relay between hosts; default false). */
  relay?: boolean;
}

export interface ServedAnswer { release: string; slot: string }

export interface FleetLab {
  env: string;
  app: string;
  dir: string;
  hosts: FleetLabHost[];
  /** The hosts' private LAN (the controller's uplink is its bridge). */
  lan: NetnsLan;
  /** The app's repository (the sample app unless stack.appDir says otherwise). */
  repo: AppRepo;
  /** The fleet's deploy.config.json (outside the repository). */
  configPath: string;
  /** A fresh copy of the config last written. */
  config(): FleetConfig;
  /** Rewrites the config file: `edit` changes a copy of the current one. */
  writeConfig(edit: (config: FleetConfig) => void): Promise<void>;
  /** `deploy --config <configPath> ...args` in the repository (the env is the config's defaultEnv). */
  deploy(args: string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult>;
  deployInBackground(args: string[], options?: { env?: NodeJS.ProcessEnv }): BackgroundCli;
  /** The CLI against host i alone (its single-host config). */
  deployTo(index: number, args: string[]): Promise<CliResult>;
  /** What host i's nginx serves at / (release id and slot from the sample app), or null if it does not answer. */
  served(index: number, timeoutMs?: number): Promise<ServedAnswer | null>;
  /** What every host serves, in host order. */
  servedAll(timeoutMs?: number): Promise<(ServedAnswer | null)[]>;
  /** The release id host i holds for commit `sha` (release ids cover the files, so look them up). */
  releaseOf(index: number, sha: string): string;
  /** The pid of the process serving host i's live slot (by its PM2 home and slot, read in /proc), or null. */
  liveSlotPid(index: number): number | null;
  /** Takes host i's veth down (a real, silent partition) / brings it back. */
  partition(index: number): Promise<void>;
  heal(index: number): Promise<void>;
  /** Stops every box by pid and destroys the namespaces. Idempotent. */
  stop(): Promise<void>;
}

/** Pure: the host entry the lab writes for one box. */
export function fleetHostEntry(stack: Pick<Stack, 'sshd'>, name: string | null, keepalive?: FleetLabOptions['keepalive']): FleetHostEntry {
  return {
    ...(name ? { name } : {}),
    address: stack.sshd.host,
    port: stack.sshd.port,
    user: stack.sshd.user,
    identityFile: stack.sshd.clientKeyPath,
    knownHostsFile: stack.sshd.knownHostsPath,
    ...(keepalive ? { keepaliveIntervalMs: keepalive.intervalMs, keepaliveCountMax: keepalive.countMax } : {}),
  };
}

/**
 * Brings the fleet up: namespaces one after the other (cheap ip commands), then the boxes in
 * parallel. Stop it in afterAll; anything it started is also stopped if it fails half-way.
 */
export async function startFleetLab(options: FleetLabOptions = {}): Promise<FleetLab> {
  const count = options.hosts ?? 3;
  const env = options.env ?? 'production';
  const app = options.stack?.app ?? APP;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-fleet-'));
  // The deploy user reaches the shared token inside this dir, and nothing else in it.
  await fs.chmod(dir, 0o711);
  const namespaces: NetnsHost[] = [];
  const stacks: (Stack | null)[] = [];
  let lan: NetnsLan | null = null;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(stacks.map((stack) => stack?.stop().catch(() => undefined)));
    for (const netns of namespaces) await netns.destroy().catch(() => undefined);
    await lan?.destroy().catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const deployUser = await ensureDeployUser();
    const tokenFile = path.join(dir, 'agent.token');
    await fs.writeFile(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    await fs.chown(tokenFile, deployUser.uid, deployUser.gid);

    lan = await createNetnsLan({ uplinkMbit: options.uplinkMbit ?? null });
    for (let i = 0; i < count; i++) namespaces.push(await createNetnsHost({ label: `fleet${i + 1}`, lan }));
    const started = await Promise.allSettled(namespaces.map(async (netns, i) => {
      const stack = await startStack({ ...options.stack, netns, tokenFile });
      stacks[i] = stack;
      return stack;
    }));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;

    const repo = await createAppRepo(path.join(dir, 'app'), options.stack?.appDir ?? SAMPLE_APP_DIR);
    const agent = { port: stacks[0]!.agentPort, tokenFile };
    const hosts: FleetLabHost[] = [];
    for (const [i, netns] of namespaces.entries()) {
      const stack = stacks[i]!;
      const configPath = path.join(dir, `host${i + 1}.config.json`);
      const { name: _name, ...single } = fleetHostEntry(stack, null, options.keepalive);
      await fs.writeFile(configPath, JSON.stringify({ app, host: single, agent }, null, 2));
      hosts.push({ index: i, name: `h${i + 1}`, address: netns.address, netns, stack, configPath });
    }

    const configPath = path.join(dir, 'deploy.config.json');
    let current: FleetConfig = {
      app,
      agent,
      defaultEnv: env,
      environments: {
        [env]: {
          hosts: hosts.map((h) => ({
            ...fleetHostEntry(h.stack, options.named === false ? null : h.name, options.keepalive),
            ...(options.relay ? { relay: h.address } : {}),
          })),
          ...(options.rollout ? { rollout: options.rollout } : {}),
        },
      },
    };
    const write = async (config: FleetConfig) => {
      await fs.writeFile(configPath, JSON.stringify(config, null, 2));
      current = config;
    };
    await write(current);

    const cliEnv = (extra: NodeJS.ProcessEnv = {}) => ({ SLIPWAY_BUILD_CACHE: path.join(dir, 'installs'), ...extra });
    const served = async (index: number, timeoutMs = 3_000): Promise<ServedAnswer | null> => {
      const host = hosts[index]!;
      try {
        const answer = await httpGet(`${host.stack.publicUrl}/`, { timeoutMs });
        if (answer.status !== 200) return null;
        const body = JSON.parse(answer.body) as { release?: string; slot?: string };
        return body.release && body.slot ? { release: body.release, slot: body.slot } : null;
      } catch {
        return null;
      }
    };
    return {
      env, app, dir, hosts, lan, repo, configPath,
      config: () => structuredClone(current),
      writeConfig: async (edit) => {
        const copy = structuredClone(current);
        edit(copy);
        await write(copy);
      },
      deploy: (args, opts = {}) => runDeployCli(['--config', configPath, ...args], {
        cwd: repo.dir, env: cliEnv(opts.env), ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      }),
      deployInBackground: (args, opts = {}) => startDeployCli(['--config', configPath, ...args], { cwd: repo.dir, env: cliEnv(opts.env) }),
      deployTo: (index, args) => runDeployCli(['--config', hosts[index]!.configPath, ...args], { cwd: repo.dir, env: cliEnv() }),
      served,
      servedAll: (timeoutMs) => Promise.all(hosts.map((_, i) => served(i, timeoutMs))),
      releaseOf: (index, sha) => releaseOfCommit(hosts[index]!.stack.home, app, sha),
      liveSlotPid: (index) => liveSlotPid(hosts[index]!.stack, app),
      partition: (index) => hosts[index]!.netns.partition(),
      heal: (index) => hosts[index]!.netns.heal(),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** PM2 gives every app it starts PM2_HOME, and the agent gives each slot SLIPWAY_SLOT: a reused pid never matches. */
function liveSlotPid(stack: Stack, app: string): number | null {
  const live = readState(stack.home, app).app?.liveSlot;
  if (!live) return null;
  for (const pid of stack.pm2.appPids()) {
    let environ: string[];
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (environ.includes(`PM2_HOME=${stack.pm2.pm2Home}`) && environ.includes(`SLIPWAY_SLOT=${live}`)) return pid;
  }
  return null;
}
