// The `pm2 deploy` baseline (PM2's own deploy flow, pm2-deploy 1.x, the version PM2 ships with):
// `pm2 deploy ecosystem.config.js bench` run in the app's repository, which logs in over SSH, runs
// `git fetch` + `git reset --hard origin/main` in one checkout on the box (fetched from a local
// bare repository, the app's "origin"), then the post-deploy hook: `npm ci --omit=dev` (offline,
// from the warmed cache) and `pm2 startOrReload ecosystem.config.js --env bench --update-env`.
//
// pm2-deploy's remote hook ends with `exit ${PIPESTATUS[0]}`, so the login shell of its deploy
// account must be bash (a /bin/sh account fails every hook with "Bad substitution"): the baseline
// logs into its own private sshd (same helper and settings as the stack's) as its own unprivileged
// account with /bin/bash, the way pm2-deploy's users run it.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { REPO_ROOT } from '../../test/helpers/agent-process.js';
import { ensureDeployUser } from '../../test/helpers/deploy-user.js';
import { createPm2Home, type Pm2Home } from '../../test/helpers/pm2.js';
import { freePort } from '../../test/helpers/ports.js';
import { startSshd, type SshdHandle } from '../../test/helpers/sshd.js';
import { runTimed, type TimedRun } from './procs.js';

const PM2_BIN = path.join(REPO_ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
export const PM2_DEPLOY_USER = 'slipway-pm2';
/** The file pm2 deploy reads locally and `pm2 startOrReload` reads on the box: it is committed in the app. */
export const ECOSYSTEM_FILE = 'ecosystem.config.js';

export interface Pm2Deploy {
  /** The app on the box: one PM2 process on its own port, no proxy in front. */
  url: string;
  /** Files to commit into the app's repository before the first deploy (the ecosystem file). */
  files: Record<string, string>;
  /** `pm2 deploy ... setup` + a first deploy (untimed); the repository must hold `files` by then. */
  setUp(): Promise<void>;
  /** Pushes the repository's main to its origin (a user does this before deploying; not timed). */
  push(): Promise<void>;
  /** `pm2 deploy ecosystem.config.js bench`. */
  deploy(): Promise<TimedRun>;
  stop(): Promise<void>;
}

async function git(cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const run = await runTimed(['git', ...args], { cwd, env: { ...process.env, ...env }, timeoutMs: 60_000 });
  if (run.code !== 0) throw new Error(`git ${args.join(' ')} failed (exit ${run.code}): ${run.stderr.slice(-1500)}`);
  return run.stdout.trim();
}

function ecosystemFile(options: {
  appPort: number; user: string; sshd: SshdHandle; bareRepo: string; deployPath: string; pm2Home: string; npmCache: string;
}): string {
  // pm2-deploy reads these values with a regular expression over the JSON: strings only, no double quotes.
  const postDeploy = [
    `export PATH=/usr/local/bin:/usr/bin:/bin PM2_HOME=${options.pm2Home} npm_config_cache=${options.npmCache} npm_config_offline=true npm_config_update_notifier=false`,
    'npm ci --omit=dev --no-audit --no-fund',
    `${process.execPath} ${PM2_BIN} startOrReload ${ECOSYSTEM_FILE} --env bench --update-env`,
  ].join(' && ');
  const deploy = {
    user: options.user,
    host: '127.0.0.1',
    port: String(options.sshd.port),
    key: options.sshd.clientKeyPath,
    ssh_options: ['IdentitiesOnly=yes', 'BatchMode=yes', 'StrictHostKeyChecking=yes', `UserKnownHostsFile=${options.sshd.knownHostsPath}`, 'GlobalKnownHostsFile=/dev/null'],
    ref: 'origin/main',
    repo: options.bareRepo,
    path: options.deployPath,
    'post-deploy': postDeploy,
  };
  return `// Written by the bench (scripts/bench-lib/pm2-deploy.ts): the app as PM2's own deploy flow runs it.
'use strict';
const { execFileSync } = require('node:child_process');
// The commit this checkout is at, so the app reports which release answers.
const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: __dirname, encoding: 'utf8' }).trim();

module.exports = {
  apps: [{
    name: 'deps',
    script: 'server.js',
    env_bench: { PORT: '${options.appPort}', SLIPWAY_RELEASE: sha, SLIPWAY_SLOT: 'pm2-deploy', NODE_ENV: 'production' },
  }],
  deploy: { bench: ${JSON.stringify(deploy, null, 2).replace(/\n/g, '\n  ')} },
};
`;
}

/** Sets up the baseline for the repository at `repoDir` (whose HEAD branch is main). */
export async function setUpPm2Deploy(repoDir: string, npmCacheFor: (owner: { uid: number; gid: number }) => Promise<string>): Promise<Pm2Deploy> {
  const owner = await ensureDeployUser(PM2_DEPLOY_USER, '/bin/bash');
  const npmCache = await npmCacheFor(owner);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-pm2deploy-'));
  const cleanups: (() => Promise<unknown>)[] = [() => fs.rm(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    await fs.chmod(dir, 0o755);
    const sshd = await startSshd({ user: PM2_DEPLOY_USER });
    cleanups.push(() => sshd.stop());
    // The box's PM2 (owned by the deploy account) and the laptop's (pm2 deploy connects to a local daemon).
    const remotePm2: Pm2Home = await createPm2Home();
    cleanups.push(() => remotePm2.cleanup());
    await fs.chown(remotePm2.pm2Home, owner.uid, owner.gid);
    const localPm2: Pm2Home = await createPm2Home();
    cleanups.push(() => localPm2.cleanup());
    const bareRepo = path.join(dir, 'origin.git');
    await git(dir, ['init', '-q', '--bare', '-b', 'main', bareRepo]);
    const chown = await runTimed(['chown', '-R', `${owner.uid}:${owner.gid}`, bareRepo], { timeoutMs: 30_000 });
    if (chown.code !== 0) throw new Error(`chown ${bareRepo}: ${chown.stderr}`);
    // The bare repository belongs to the deploy account; root pushes into it as the laptop would,
    // with a global git config of its own naming it safe (git drops -c settings for local transports).
    const rootGitConfig = path.join(dir, 'root.gitconfig');
    await fs.writeFile(rootGitConfig, `[safe]\n\tdirectory = ${bareRepo}\n`);
    const rootGit = (args: string[]) => git(repoDir, args, { GIT_CONFIG_GLOBAL: rootGitConfig });
    await git(repoDir, ['remote', 'add', 'origin', bareRepo]).catch(async () => git(repoDir, ['remote', 'set-url', 'origin', bareRepo]));
    const deployPath = path.join(dir, 'box');
    await fs.mkdir(deployPath);
    await fs.chown(deployPath, owner.uid, owner.gid);
    const appPort = await freePort();
    const files = { [ECOSYSTEM_FILE]: ecosystemFile({ appPort, user: PM2_DEPLOY_USER, sshd, bareRepo, deployPath, pm2Home: remotePm2.pm2Home, npmCache }) };
    // pm2-deploy logs to /tmp/pm2-deploy-$USER.log: a name of our own, removed at the end.
    const logUser = `slipway-bench-${randomBytes(4).toString('hex')}`;
    cleanups.push(() => fs.rm(`/tmp/pm2-deploy-${logUser}.log`, { force: true }));
    const env: NodeJS.ProcessEnv = { ...process.env, PM2_HOME: localPm2.pm2Home, USER: logUser, SSH_AUTH_SOCK: '' };
    const pm2 = async (args: string[], what: string) => {
      const run = await runTimed([process.execPath, PM2_BIN, 'deploy', ECOSYSTEM_FILE, 'bench', ...args], { cwd: repoDir, env, timeoutMs: 180_000 });
      if (run.code !== 0) throw new Error(`pm2 deploy ${what} failed (exit ${run.code}${run.timedOut ? ', timed out' : ''}):\n${(run.stdout + run.stderr).slice(-3000)}`);
      return run;
    };
    const push = async () => { await rootGit(['push', '-q', '-u', 'origin', 'main']); };
    return {
      url: `http://127.0.0.1:${appPort}/`,
      files,
      async setUp() {
        await push();
        await pm2(['setup'], 'setup');
        await pm2([], 'first deploy');
      },
      push,
      deploy: () => pm2([], 'deploy'),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
