import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { startSshd, type SshdHandle } from './sshd.js';
import { startNginx, type NginxHandle } from './nginx.js';
import { createPm2Home, type Pm2Home } from './pm2.js';
import { freePort } from './ports.js';
import { REPO_ROOT, startAgentProcess, runDeployCli, startDeployCli, type AgentProcess, type BackgroundCli, type CliResult } from './agent-process.js';
import { createAppRepo, type AppRepo } from './git-repo.js';
import { DEPLOY_USER, ensureDeployUser } from './deploy-user.js';

export const SAMPLE_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'sample-app');
export const APP = 'sample';
export const REPO_TEMPLATE_DIR = path.join(REPO_ROOT, 'nginx');

export interface HttpAnswer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** GET through loopback with a fresh connection, so every answer reflects the current nginx config. */
export function httpGet(url: string, options: { host?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: options.timeoutMs ?? 5000, headers: options.host ? { host: options.host } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

export interface Stack {
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
  repo: AppRepo;
  envFile: string;
  deploy(args: string[], options?: { env?: NodeJS.ProcessEnv }): Promise<CliResult>;
  deployInBackground(args: string[]): BackgroundCli;
  get(pathname?: string): Promise<HttpAnswer>;
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
  /**
   * The agent's home (SLIPWAY_HOME) instead of <dir>/home, e.g. a small tmpfs the test mounted
   * to fill the disk. The caller owns it: stop() neither empties nor unmounts it.
   */
  homeDir?: string;
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
    const sshd = await startSshd({ user: DEPLOY_USER });
    cleanups.push(() => sshd.stop());
    const nginx = await startNginx();
    cleanups.push(() => nginx.stop());
    const pm2 = await createPm2Home();
    cleanups.push(() => pm2.cleanup());

    const home = options.homeDir ?? path.join(dir, 'home');
    const [agentPort, publicPort, bluePort, greenPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const tokenFile = path.join(dir, 'agent.token');
    // As on a VPS where the agent's token is readable by the deploy account only.
    await fs.writeFile(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    await fs.chown(tokenFile, deployUser.uid, deployUser.gid);
    const envFile = path.join(dir, 'sample.env');
    await fs.writeFile(envFile, 'SAMPLE_GREETING=hello\n', { mode: 0o600 });
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
      },
      apps: {
        [APP]: {
          slots: { blue: { port: bluePort }, green: { port: greenPort } },
          start: { script: 'server.js' },
          envFile,
          requiredEnv: ['SAMPLE_GREETING'],
          health: { path: '/health', timeoutMs: 1000, intervalMs: 100, retries: 50 },
          public: { listenHost: '127.0.0.1', listenPort: publicPort, serverNames: ['_'] },
          // A short watch window keeps tests fast; tests of the window itself override it.
          watch: { windowMs: 1000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true },
          ...options.appConfig,
        },
      },
      ...options.agentConfig,
    };
    const agentConfigPath = path.join(dir, 'agent.json');
    await fs.writeFile(agentConfigPath, JSON.stringify(agentConfig, null, 2));
    const agentLog = path.join(dir, 'agent.log');
    const start = (env: NodeJS.ProcessEnv = {}) => startAgentProcess({ configPath: agentConfigPath, logPath: agentLog, healthUrl: `http://127.0.0.1:${agentPort}/health`, env });
    let agent = await start();
    cleanups.push(() => agent.stop());

    const repo = await createAppRepo(path.join(dir, 'app'), SAMPLE_APP_DIR, {
      'deploy.config.json': JSON.stringify({
        app: APP,
        host: {
          address: sshd.host, port: sshd.port, user: sshd.user,
          identityFile: sshd.clientKeyPath, knownHostsFile: sshd.knownHostsPath,
        },
        agent: { port: agentPort, tokenFile },
      }, null, 2),
    });
    const publicUrl = `http://127.0.0.1:${publicPort}`;
    return {
      dir, home, sshd, nginx, pm2, agentConfigPath, agentConfig, agentPort, publicPort,
      slotPorts: { blue: bluePort, green: greenPort }, publicUrl, repo, envFile,
      get agent() { return agent; },
      deploy: (args, opts = {}) => runDeployCli(args, { cwd: repo.dir, ...(opts.env ? { env: opts.env } : {}) }),
      deployInBackground: (args) => startDeployCli(args, { cwd: repo.dir }),
      get: (pathname = '/') => httpGet(`${publicUrl}${pathname}`),
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
