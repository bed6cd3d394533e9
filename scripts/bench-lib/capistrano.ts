// The Capistrano 3 baseline (Debian's `capistrano` package): test/bench/Capfile deploys the same
// repository over the same private sshd as the same unprivileged deploy user, into its own
// deploy dir, and restarts the app with PM2 from an isolated PM2_HOME that user owns.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Stack } from '../../test/helpers/stack.js';
import { REPO_ROOT } from '../../test/helpers/agent-process.js';
import { createPm2Home, type Pm2Home } from '../../test/helpers/pm2.js';
import { freePort } from '../../test/helpers/ports.js';
import { ensureDeployUser } from '../../test/helpers/deploy-user.js';
import { runTimed, type TimedRun } from './procs.js';

export const CAP_DIR = path.join(REPO_ROOT, 'test', 'bench');
const PM2_BIN = path.join(REPO_ROOT, 'node_modules', 'pm2', 'bin', 'pm2');

export interface Capistrano {
  /** The app as Capistrano runs it: one process on one port, no proxy in front. */
  url: string;
  deployTo: string;
  deploy(): Promise<TimedRun>;
  rollback(): Promise<TimedRun>;
  stop(): Promise<void>;
}

export async function capistranoVersion(): Promise<string> {
  const run = await runTimed(['cap', '--version'], { timeoutMs: 30_000 }).catch(() => null);
  return run?.code === 0 ? run.stdout.trim().split('\n')[0] ?? 'unknown' : 'not installed';
}

export interface CapistranoOptions {
  /** Stage under test/bench/config/deploy/ (default `bench`: the sample app). */
  stage?: string;
  /** Repository to deploy (default the stack's). */
  repoDir?: string;
  /** More BENCH_CAP_* settings the stage reads. */
  env?: Record<string, string>;
}

export async function setUpCapistrano(stack: Stack, options: CapistranoOptions = {}): Promise<Capistrano> {
  const repoDir = options.repoDir ?? stack.repo.dir;
  const stage = options.stage ?? 'bench';
  const user = await ensureDeployUser();
  const pm2: Pm2Home = await createPm2Home();
  const deployTo = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-cap-'));
  const stop = async () => {
    await pm2.cleanup();
    await fs.rm(deployTo, { recursive: true, force: true });
  };
  try {
    await fs.chown(pm2.pm2Home, user.uid, user.gid);
    await fs.chown(deployTo, user.uid, user.gid);
    const gitConfig = path.join(deployTo, 'bench.gitconfig');
    await fs.writeFile(gitConfig, `[safe]\n\tdirectory = ${repoDir}\n\tdirectory = ${repoDir}/.git\n`, { mode: 0o644 });
    const appPort = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BENCH_CAP_REPO: repoDir,
      BENCH_CAP_BRANCH: 'main',
      BENCH_CAP_DEPLOY_TO: path.join(deployTo, 'app'),
      BENCH_CAP_LOG: path.join(stack.dir, `capistrano-${stage}.log`),
      BENCH_CAP_GITCONFIG: gitConfig,
      BENCH_CAP_USER: stack.sshd.user,
      BENCH_CAP_PORT: String(stack.sshd.port),
      BENCH_CAP_KEY: stack.sshd.clientKeyPath,
      BENCH_CAP_KNOWN_HOSTS: stack.sshd.knownHostsPath,
      BENCH_CAP_NODE: process.execPath,
      BENCH_CAP_PM2: PM2_BIN,
      BENCH_CAP_PM2_HOME: pm2.pm2Home,
      BENCH_CAP_APP_PORT: String(appPort),
      SSH_AUTH_SOCK: '',
      ...options.env,
    };
    const cap = async (task: string) => {
      const run = await runTimed(['cap', stage, task], { cwd: CAP_DIR, env, timeoutMs: 120_000 });
      if (run.code !== 0) throw new Error(`cap ${stage} ${task} failed (exit ${run.code}${run.timedOut ? ', timed out' : ''}):\n${run.stderr.slice(-3000)}`);
      return run;
    };
    return { url: `http://127.0.0.1:${appPort}/`, deployTo, deploy: () => cap('deploy'), rollback: () => cap('deploy:rollback'), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
