import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { startSshd, type SshdHandle } from './sshd.js';
import { startNginx, type NginxHandle } from './nginx.js';
import { createPm2Home, type Pm2Home } from './pm2.js';
import { freePort } from './ports.js';
import { REPO_ROOT, startAgentProcess, runDeployCli, startDeployCli, type AgentProcess, type BackgroundCli, type CliResult } from './agent-process.js';
import { createAppRepo, type AppRepo } from './git-repo.js';
import { DEPLOY_USER, ensureDeployUser } from './deploy-user.js';
import type { NetnsHost } from './netns.js';
import { runCommand } from '../../lib/exec.js';
import { PROBE_HEADER, probeSecretPath } from '../../agent/nginx/probe-secret.js';

export const SAMPLE_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'sample-app');
export const APP = 'sample';
export const REPO_TEMPLATE_DIR = path.join(REPO_ROOT, 'nginx');

export interface HttpAnswer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** GET through loopback with a fresh connection, so every answer reflects the current nginx config. */
export function httpGet(url: string, options: { host?: string; timeoutMs?: number; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers = { ...options.headers, ...(options.host ? { host: options.host } : {}) };
    const req = http.get(url, { agent: false, timeout: options.timeoutMs ?? 5000, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** The agent's probe secret as a request header (none before the agent first started). */
async function probeHeadersOf(home: string): Promise<Record<string, string>> {
  const secret = await fs.readFile(probeSecretPath(home), 'utf8').catch(() => null);
  return secret ? { [PROBE_HEADER]: secret.trim() } : {};
}

export interface Stack {
  /** The app the stack deploys (APP unless StackOptions.app says otherwise). */
  app: string;
  dir: string;
  home: string;
  sshd: SshdHandle;
  nginx: NginxHandle;
  pm2: Pm2Home;
  agent: AgentProcess;
  agentConfigPath: string;
  agentConfig: Record<string, unknown>;
  agentPort: number;
  publicPort: number;
  slotPorts: { blue: number; green: number };
  publicUrl: string;
  /** Listen ports the host policy allows the app (policy stacks; [publicPort] otherwise). */
  listenPorts: number[];
  /** The slot port range of the host policy (policy stacks), else null. */
  portRange: { from: number; to: number } | null;
  repo: AppRepo;
  envFile: string;
  deploy(args: string[], options?: { env?: NodeJS.ProcessEnv; input?: string }): Promise<CliResult>;
  deployInBackground(args: string[]): BackgroundCli;
  /** GET through nginx as the agent's probes do (with its probe secret), so the X-Slipway-* markers come back. */
  get(pathname?: string): Promise<HttpAnswer>;
  /** GET through nginx with a Host header, on the public port or another allowed listen port (as a probe, like get). */
  getHost(host: string, pathname?: string, port?: number): Promise<HttpAnswer>;
  /** The request header that makes nginx send its markers: the agent's probe secret, read from its home. */
  probeHeaders(): Promise<Record<string, string>>;
  /** Stops the agent (SIGTERM, or SIGKILL with `crash`) and starts it again with `env`. */
  restartAgent(options?: { env?: NodeJS.ProcessEnv; crash?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Patch applied to the app's agent config (health, start, ...). */
  appConfig?: Record<string, unknown>;
  /** Use this nginx template dir instead of the package's nginx/. */
  templateDir?: string;
  /** Top-level agent config fields merged over the defaults (retention, backups, ...). */
  agentConfig?: Record<string, unknown>;
  /** Fields merged over the agent's nginx settings (e.g. proveTimeoutMs). */
  nginxConfig?: Record<string, unknown>;
  /**
   * The agent's home (SLIPWAY_HOME) instead of <dir>/home, e.g. a small tmpfs the test mounted
   * to fill the disk. The caller owns it: stop() neither empties nor unmounts it.
   */
  homeDir?: string;
  /** App name in agent.json and deploy.config.json (default APP). */
  app?: string;
  /** Fixture copied into the app's repository (default the sample app). */
  appDir?: string;
  /** Content of the app's env file (default SAMPLE_GREETING=hello). */
  envFileContent?: string;
  /**
   * The host policy of issue 12 (DESIGN-12) instead of the legacy app config: top-level `ports`,
   * and for the app only what the box owner controls (listen, serverNames, limits, build, env
   * file). The app's processes, routes, health and watch come from deploy.spec.json in its repo.
   */
  policy?: HostPolicyOptions;
  /**
   * Run the box inside this network namespace (netns.ts; the caller creates and destroys it):
   * sshd on <address>:22, nginx and the app's listener on <address> (public port 80), the agent
   * API on the namespace's own loopback (:7070), the agent's PM2 daemon and apps inside too. The
   * controller (this process's CLI runs) reaches it over the veth; known_hosts names <address>.
   */
  netns?: NetnsHost;
  /**
   * The agent's token file instead of a fresh <dir>/agent.token: caller-owned (0600, readable by
   * the deploy user), e.g. one path shared by a fleet's boxes as /etc/slipway/agent.token is the
   * same path on every real host (fleet-lab.ts).
   */
  tokenFile?: string;
}

/** Fixed ports inside a namespace, as on a VPS: agent API, public, nginx default server, slots. */
const NETNS_PORTS = { agent: 7070, public: 80, nginxDefault: 8080, blue: 3001, green: 3002 };

export interface HostPolicyOptions {
  /** Server names the app may claim ("*.example.com" patterns, "_"); default ["_"]. */
  serverNames?: string[];
  /** Listen ports the app may use besides the public port: this many more free ports. */
  extraListenPorts?: number;
  /** Size of the slot port range, picked free on loopback (default 40). */
  portRangeSize?: number;
  maxProcesses?: number;
  maxInstances?: number;
  /** apps.<app>.build (allowHost, minFreeMemoryBytes, timeoutMs, nice, env). */
  build?: Record<string, unknown>;
  /** Keep the legacy fields (slots, start, health, public, watch, requiredEnv) next to the policy. */
  keepLegacy?: boolean;
}

/** Whether `port` can be bound on 127.0.0.1 right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A block of `size` consecutive ports free on loopback right now, away from the kernel's
 * ephemeral range (32768+ on Linux), so parallel tests with their own blocks rarely meet.
 */
export async function freePortRange(size: number): Promise<{ from: number; to: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const from = 21_000 + Math.floor(Math.random() * (11_000 - size));
    const checks = await Promise.all(Array.from({ length: size }, (_, i) => portIsFree(from + i)));
    if (checks.every(Boolean)) return { from, to: from + size - 1 };
  }
  throw new Error(`no block of ${size} free ports found on 127.0.0.1`);
}

/**
 * A whole Slipway installation on loopback: a private sshd the controller logs into, a private
 * nginx, an isolated PM2 home, the agent process, and a git repo of the sample app with its
 * deploy.config.json. Everything is started for real and stopped by pid in stop().
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-stack-'));
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    // The deploy user must reach the token file inside this dir, and nothing else in it.
    await fs.chmod(dir, 0o711);
    const deployUser = await ensureDeployUser();
    const netns = options.netns;
    const sshd = await startSshd({ user: DEPLOY_USER, ...(netns ? { listenAddress: netns.address, port: 22, spawnPrefix: netns.exec } : {}) });
    cleanups.push(() => sshd.stop());
    const nginx = await startNginx(netns ? { listenHost: netns.address, port: NETNS_PORTS.nginxDefault, spawnPrefix: netns.exec } : {});
    cleanups.push(() => nginx.stop());
    const pm2 = await createPm2Home();
    cleanups.push(() => pm2.cleanup());

    const home = options.homeDir ?? path.join(dir, 'home');
    const [agentPort, publicPort, bluePort, greenPort] = netns
      ? [NETNS_PORTS.agent, NETNS_PORTS.public, NETNS_PORTS.blue, NETNS_PORTS.green]
      : [await freePort(), await freePort(), await freePort(), await freePort()];
    const listenHost = netns?.address ?? '127.0.0.1';
    const tokenFile = options.tokenFile ?? path.join(dir, 'agent.token');
    if (!options.tokenFile) {
      // As on a VPS where the agent's token is readable by the deploy account only.
      await fs.writeFile(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
      await fs.chown(tokenFile, deployUser.uid, deployUser.gid);
    }
    const app = options.app ?? APP;
    const envFile = path.join(dir, `${app}.env`);
    await fs.writeFile(envFile, options.envFileContent ?? 'SAMPLE_GREETING=hello\n', { mode: 0o600 });
    const policy = options.policy;
    const listenPorts = [publicPort];
    for (let i = 0; i < (policy?.extraListenPorts ?? 0); i++) listenPorts.push(await freePort());
    const portRange = policy ? await freePortRange(policy.portRangeSize ?? 40) : null;
    const legacyAppConfig = {
      slots: { blue: { port: bluePort }, green: { port: greenPort } },
      start: { script: 'server.js' },
      envFile,
      requiredEnv: ['SAMPLE_GREETING'],
      health: { path: '/health', timeoutMs: 1000, intervalMs: 100, retries: 50 },
      public: { listenHost, listenPort: publicPort, serverNames: ['_'] },
      // A short watch window keeps tests fast; tests of the window itself override it.
      watch: { windowMs: 1000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true },
    };
    const policyAppConfig = policy ? {
      ...(policy.keepLegacy ? legacyAppConfig : {}),
      envFile,
      listen: { host: listenHost, ports: listenPorts },
      serverNames: policy.serverNames ?? ['_'],
      ...(policy.maxProcesses !== undefined ? { maxProcesses: policy.maxProcesses } : {}),
      ...(policy.maxInstances !== undefined ? { maxInstances: policy.maxInstances } : {}),
      ...(policy.build ? { build: policy.build } : {}),
    } : null;
    const agentConfig = {
      home,
      api: { host: '127.0.0.1', port: agentPort, tokenFile },
      pm2: { home: pm2.pm2Home },
      nginx: {
        command: nginx.command,
        pidFile: nginx.pidFile,
        includeDir: nginx.includeDir,
        errorLogPath: nginx.errorLogPath,
        ...(options.templateDir ? { templateDir: options.templateDir } : {}),
        ...options.nginxConfig,
      },
      ...(portRange ? { ports: portRange } : {}),
      apps: {
        [app]: {
          ...(policyAppConfig ?? legacyAppConfig),
          ...options.appConfig,
        },
      },
      ...options.agentConfig,
    };
    const agentConfigPath = path.join(dir, 'agent.json');
    await fs.writeFile(agentConfigPath, JSON.stringify(agentConfig, null, 2));
    const agentLog = path.join(dir, 'agent.log');
    const healthUrl = `http://127.0.0.1:${agentPort}/health`;
    // Inside a namespace the agent's loopback is not ours: ask from in there.
    const healthy = netns
      ? async () => (await runCommand([...netns.exec, 'curl', '-sf', '-o', '/dev/null', '--max-time', '2', healthUrl], { timeoutMs: 5_000 })).exitCode === 0
      : undefined;
    const start = (env: NodeJS.ProcessEnv = {}) => startAgentProcess({
      configPath: agentConfigPath, logPath: agentLog, healthUrl, env,
      ...(netns ? { spawnPrefix: netns.exec, healthy } : {}),
    });
    let agent = await start();
    cleanups.push(() => agent.stop());

    const repo = await createAppRepo(path.join(dir, 'app'), options.appDir ?? SAMPLE_APP_DIR, {
      'deploy.config.json': JSON.stringify({
        app,
        host: {
          address: sshd.host, port: sshd.port, user: sshd.user,
          identityFile: sshd.clientKeyPath, knownHostsFile: sshd.knownHostsPath,
        },
        agent: { port: agentPort, tokenFile },
      }, null, 2),
    });
    const publicUrl = `http://${listenHost}:${publicPort}`;
    const installCache = path.join(dir, 'installs');
    return {
      app, dir, home, sshd, nginx, pm2, agentConfigPath, agentConfig, agentPort, publicPort,
      slotPorts: { blue: bluePort, green: greenPort }, publicUrl, listenPorts, portRange, repo, envFile,
      get agent() { return agent; },
      // The controller's install cache of this stack only (never the user's ~/.cache), gone with it.
      deploy: (args, opts = {}) => runDeployCli(args, { cwd: repo.dir, env: { SLIPWAY_BUILD_CACHE: installCache, ...opts.env }, ...(opts.input === undefined ? {} : { input: opts.input }) }),
      deployInBackground: (args) => startDeployCli(args, { cwd: repo.dir, env: { SLIPWAY_BUILD_CACHE: installCache } }),
      get: async (pathname = '/') => httpGet(`${publicUrl}${pathname}`, { headers: await probeHeadersOf(home) }),
      getHost: async (host, pathname = '/', port = publicPort) => httpGet(`http://${listenHost}:${port}${pathname}`, { host, headers: await probeHeadersOf(home) }),
      probeHeaders: () => probeHeadersOf(home),
      async restartAgent(opts = {}) {
        if (opts.crash) await agent.kill('SIGKILL');
        else await agent.stop();
        agent = await start(opts.env);
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
