/**
 * The example GitHub Actions workflows (examples/github-actions/) run as written against a real
 * host (one stack: sshd, nginx, PM2, agent, with the box apps shop-staging and shop), with the
 * example deploy.config.json (only its host addresses, ports and agent endpoint pointed at the
 * stack). How a job is run here is in test/helpers/workflow.ts; in short, the shell steps run
 * with bash as on a runner (the SSH key step included), the CLI install step is replaced by a
 * `deploy` on PATH, `uses:` steps by this repository checkout and this node.
 *
 * The expression map (every `${{ ... }}` the steps that run use; another is an error):
 *   secrets.SLIPWAY_STAGING_SSH_KEY      the stack's client private key (the deploy user's)
 *   secrets.SLIPWAY_PRODUCTION_SSH_KEY   the same key (both environments are on one stack)
 *   secrets.SLIPWAY_KNOWN_HOSTS          the stack's known_hosts line for its sshd
 *   inputs.reason, inputs.to             the dispatch inputs of each rollback run
 * and the runner's variables per event: GITHUB_EVENT_NAME, GITHUB_REF, GITHUB_REF_NAME,
 * GITHUB_REF_TYPE, GITHUB_SHA (plus HOME, RUNNER_TEMP, GITHUB_WORKSPACE, CI from the runner).
 *
 * The story: main → staging; tag v1.0.0 → production; tag v1.1.0 pushed before staging ran it →
 * refused (exit 3, production untouched); staging runs it, the production job re-run → live;
 * a rollback without a reason → exit 2; with one → production back on v1.0.0's release, the
 * reason recorded verbatim.
 */
import { promises as fs, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { readState, releaseOfCommit } from '../helpers/state.js';
import { describeJob, loadWorkflow, runJob, writeDeployShim, type JobResult } from '../helpers/workflow.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples', 'github-actions');
const PROJECT = 'shop';
const STAGING_APP = 'shop-staging';
const PRODUCTION_NAME = 'shop.example.com';
const STAGING_NAME = 'staging.shop.example.com';

/** The app's spec: the sample app behind one route, a short watch window. */
const SPEC = {
  processes: { web: { script: 'server.js', health: { path: '/health', intervalMs: 100, retries: 100 } } },
  routes: [{ serverNames: [PRODUCTION_NAME], process: 'web' }],
  watch: { windowMs: 1000, intervalMs: 200 },
};

interface ExampleConfig {
  agent: Record<string, unknown>;
  environments: Record<string, { hosts: Record<string, unknown>[] }>;
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const result = await runCommand(['git', ...args], { cwd, timeoutMs: 30_000 });
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
}

describe('examples/github-actions run against a real host: staging push, promotion, rollback', () => {
  let stack: Stack;
  let runnerDir: string;
  let binDir: string;
  let secrets: Record<string, string>;
  /** HOME of the last job run (every run starts with a fresh one, as on a hosted runner). */
  let home = '';
  const shas: { a?: string; b?: string } = {};

  /** The release nginx serves for `host`, or the HTTP status when it serves none. */
  const served = async (host: string): Promise<string> => {
    const answer = await stack.getHost(host, '/');
    return answer.status === 200 ? (JSON.parse(answer.body) as { release: string }).release : `HTTP ${answer.status}`;
  };

  /** One run of a workflow's only job, for an event: the checkout is moved to the event's commit first. */
  async function runWorkflow(file: string, event: { name: 'push' | 'workflow_dispatch'; ref: string; inputs?: Record<string, string> }): Promise<JobResult> {
    const workflow = await loadWorkflow(path.join(EXAMPLES, file));
    const repo = stack.repo.dir;
    const isTag = event.ref.startsWith('refs/tags/');
    const refName = event.ref.replace(/^refs\/(tags|heads)\//, '');
    // actions/checkout: a tag detached, a branch checked out by name.
    await git(repo, 'checkout', '-q', ...(isTag ? ['--detach', event.ref] : [refName]));
    const sha = await git(repo, 'rev-parse', 'HEAD');
    const runDir = await fs.mkdtemp(path.join(runnerDir, 'run-'));
    const temp = path.join(runDir, 'temp');
    home = path.join(runDir, 'home');
    await Promise.all([fs.mkdir(temp), fs.mkdir(home)]);
    const jobId = Object.keys(workflow.jobs)[0]!;
    return runJob(workflow, jobId, {
      workspace: repo,
      home,
      binDir,
      temp,
      expressions: {
        ...secrets,
        ...Object.fromEntries(Object.entries(event.inputs ?? {}).map(([key, value]) => [`inputs.${key}`, value])),
      },
      runnerEnv: {
        GITHUB_EVENT_NAME: event.name, GITHUB_REF: event.ref, GITHUB_REF_NAME: refName,
        GITHUB_REF_TYPE: isTag ? 'tag' : 'branch', GITHUB_SHA: sha,
      },
      replaced: (step) => step.name === 'Install the deploy CLI',
    });
  }

  beforeAll(async () => {
    stack = await startStack({ app: PROJECT, policy: { serverNames: [PRODUCTION_NAME] } });
    // A second box app for staging, allowed only the staging name: the staging override of
    // serverNames is what lets its releases pass the host policy.
    const agentConfig = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8')) as { apps: Record<string, Record<string, unknown>> };
    agentConfig.apps[STAGING_APP] = { ...agentConfig.apps[PROJECT], serverNames: [STAGING_NAME] };
    await fs.writeFile(stack.agentConfigPath, JSON.stringify(agentConfig, null, 2));
    await stack.restartAgent();

    // The example config, pointed at the stack: keys and known_hosts stay where the workflows write them.
    const config = JSON.parse(await fs.readFile(path.join(EXAMPLES, 'deploy.config.json'), 'utf8')) as ExampleConfig;
    const stackConfig = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as {
      host: { address: string; port: number; user: string }; agent: Record<string, unknown>;
    };
    for (const env of Object.values(config.environments)) {
      for (const host of env.hosts) Object.assign(host, { address: stackConfig.host.address, port: stackConfig.host.port, user: stackConfig.host.user });
    }
    config.agent = stackConfig.agent;
    shas.a = await stack.repo.commit({
      'deploy.config.json': `${JSON.stringify(config, null, 2)}\n`,
      'deploy.spec.json': `${JSON.stringify(SPEC, null, 2)}\n`,
    }, 'deploy with environments (examples/github-actions/deploy.config.json)');

    runnerDir = path.join(stack.dir, 'runner');
    binDir = path.join(runnerDir, 'bin');
    await writeDeployShim(binDir);
    const key = readFileSync(stack.sshd.clientKeyPath, 'utf8').trimEnd();
    secrets = {
      'secrets.SLIPWAY_STAGING_SSH_KEY': key,
      'secrets.SLIPWAY_PRODUCTION_SSH_KEY': key,
      'secrets.SLIPWAY_KNOWN_HOSTS': readFileSync(stack.sshd.knownHostsPath, 'utf8').trimEnd(),
    };
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('staging.yml on a push to main: exit 0, the staging name serves the commit, keys written 0600', async () => {
    const job = await runWorkflow('staging.yml', { name: 'push', ref: 'refs/heads/main' });
    expect(job.exitCode, describeJob(job)).toBe(0);
    expect(job.steps.filter((s) => s.callsDeploy).map((s) => s.script.trim())).toEqual(['deploy push --env staging']);
    for (const file of ['slipway_staging', 'known_hosts']) {
      expect(statSync(path.join(home, '.ssh', file)).mode & 0o777, file).toBe(0o600);
    }
    const release = releaseOfCommit(stack.home, STAGING_APP, shas.a!);
    expect(await served(STAGING_NAME)).toBe(release);
    expect(readState(stack.home, PROJECT).releases).toEqual([]);
  });

  it('production.yml on tag v1.0.0: promoted with --yes, production serves the release staging ran', async () => {
    await git(stack.repo.dir, 'tag', '-a', 'v1.0.0', '-m', 'v1.0.0', shas.a!);
    const job = await runWorkflow('production.yml', { name: 'push', ref: 'refs/tags/v1.0.0' });
    expect(job.exitCode, describeJob(job)).toBe(0);
    const release = releaseOfCommit(stack.home, STAGING_APP, shas.a!);
    expect(releaseOfCommit(stack.home, PROJECT, shas.a!)).toBe(release);
    expect(await served(PRODUCTION_NAME)).toBe(release);
    expect(await served(STAGING_NAME)).toBe(release);
  });

  it('a tag staging never ran is refused (exit 3, production untouched); after staging runs it, the re-run promotes it', async () => {
    await git(stack.repo.dir, 'checkout', '-q', 'main');
    shas.b = await stack.repo.commit({ 'message.txt': 'version 1.1\n' }, 'v1.1');
    await git(stack.repo.dir, 'tag', '-a', 'v1.1.0', '-m', 'v1.1.0', shas.b);
    const a = releaseOfCommit(stack.home, PROJECT, shas.a!);

    const refused = await runWorkflow('production.yml', { name: 'push', ref: 'refs/tags/v1.1.0' });
    expect(refused.exitCode, describeJob(refused)).toBe(3);
    expect(refused.failed?.name).toBe('Promote to production');
    expect(`${refused.failed?.stdout}${refused.failed?.stderr}`).toMatch(/v1\.1\.0 .* never deployed to staging/);
    expect(await served(PRODUCTION_NAME)).toBe(a);

    const staging = await runWorkflow('staging.yml', { name: 'push', ref: 'refs/heads/main' });
    expect(staging.exitCode, describeJob(staging)).toBe(0);
    const b = releaseOfCommit(stack.home, STAGING_APP, shas.b);
    expect(await served(STAGING_NAME)).toBe(b);

    const rerun = await runWorkflow('production.yml', { name: 'push', ref: 'refs/tags/v1.1.0' });
    expect(rerun.exitCode, describeJob(rerun)).toBe(0);
    expect(rerun.failed).toBeNull();
    expect(`${rerun.steps.at(-1)?.stdout}${rerun.steps.at(-1)?.stderr}`).toMatch(/production requires approval:[\s\S]*approved \(--yes\)/);
    expect(await served(PRODUCTION_NAME)).toBe(b);
  });

  it('rollback.yml: no reason → exit 2 before deploy runs; with one → production back on v1.0.0, the reason recorded as text', async () => {
    const [a, b] = [releaseOfCommit(stack.home, PROJECT, shas.a!), releaseOfCommit(stack.home, PROJECT, shas.b!)];
    const noReason = await runWorkflow('rollback.yml', { name: 'workflow_dispatch', ref: 'refs/heads/main', inputs: { reason: '  ', to: '' } });
    expect(noReason.exitCode, describeJob(noReason)).toBe(2);
    expect(noReason.failed?.stdout).toContain('::error::a reason is required');
    expect(await served(PRODUCTION_NAME)).toBe(b);

    const reason = 'checkout "broken" after v1.1 $(touch pwned) `touch pwned`';
    const job = await runWorkflow('rollback.yml', { name: 'workflow_dispatch', ref: 'refs/heads/main', inputs: { reason, to: '' } });
    expect(job.exitCode, describeJob(job)).toBe(0);
    expect(await served(PRODUCTION_NAME)).toBe(a);
    expect(readState(stack.home, PROJECT).releases.find((r) => r.releaseId === b)?.rolledBack).toMatchObject({ reason });
    await expect(fs.stat(path.join(stack.repo.dir, 'pwned'))).rejects.toThrow(/ENOENT/);
    // Staging is another app: untouched by production's rollback.
    expect(await served(STAGING_NAME)).toBe(releaseOfCommit(stack.home, STAGING_APP, shas.b!));
  });
});
