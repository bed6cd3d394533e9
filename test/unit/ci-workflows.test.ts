/**
 * The example GitHub Actions workflows (examples/github-actions/) as files: what a reviewer would
 * check by eye (triggers, approvals, concurrency, keys written 0600, no secret or input pasted into
 * a script), and the pure parts of the runner that test/integration/ci-workflows.test.ts runs them
 * with.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { parseDeployConfig } from '../../controller/config.js';
import { resolveTarget } from '../../controller/environments.js';
import {
  callsDeploy, expressionsIn, loadWorkflow, runJob, runSteps, shellArgv, substituteExpressions, type Workflow, type WorkflowJob,
} from '../helpers/workflow.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples', 'github-actions');
const FILES = ['staging.yml', 'production.yml', 'rollback.yml'] as const;

describe('workflow runner, pure parts', () => {
  it('substitutes ${{ }} expressions from the map and refuses one it does not have', () => {
    expect(substituteExpressions('a ${{ inputs.reason }} b ${{secrets.KEY}}', { 'inputs.reason': 'x y', 'secrets.KEY': 'k' }, 'here')).toBe('a x y b k');
    expect(expressionsIn('${{ a }} and ${{ b.c }}')).toEqual(['a', 'b.c']);
    expect(() => substituteExpressions('${{ github.event.head_commit.message }}', {}, 'step 3')).toThrow(/step 3: the expression \$\{\{ github\.event\.head_commit\.message \}\} is not in the test's expression map/);
  });

  it('finds deploy as a command, not as a word in quotes, comments or arguments', () => {
    expect(callsDeploy('deploy push --env staging')).toBe(true);
    expect(callsDeploy('set -e\n  deploy "${args[@]}"')).toBe(true);
    expect(callsDeploy('if [ -n "$X" ]; then deploy rollback; fi')).toBe(true);
    expect(callsDeploy('x && deploy status')).toBe(true);
    expect(callsDeploy('echo "deploy failed"')).toBe(false);
    expect(callsDeploy('# deploy push\necho hi')).toBe(false);
    expect(callsDeploy('npm run deploy-docs')).toBe(false);
    expect(callsDeploy('./deploy.sh')).toBe(false);
  });

  it('runs scripts with the shell GitHub uses on Linux', () => {
    expect(shellArgv(null, '/t/s.sh')).toEqual(['bash', '-e', '/t/s.sh']);
    expect(shellArgv('bash', '/t/s.sh')).toEqual(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '/t/s.sh']);
    expect(() => shellArgv('pwsh', '/t/s.sh')).toThrow(/not supported/);
  });

  it('merges workflow, job and step env (later wins) and takes the job default working directory', () => {
    const workflow: Workflow = {
      file: 'w.yml', on: 'push', env: { A: 'w', B: 'w' },
      jobs: { j: { env: { B: 'j', C: 'j' }, defaults: { run: { 'working-directory': 'app' } }, steps: [
        { uses: 'actions/checkout@v4' },
        { name: 'one', run: 'true', env: { C: 's', N: 3 } },
      ] } },
    };
    expect(runSteps(workflow, 'j')).toEqual([{
      job: 'j', index: 1, name: 'one', script: 'true', env: { A: 'w', B: 'j', C: 's', N: '3' }, shell: null, workingDirectory: 'app',
    }]);
    expect(() => runSteps(workflow, 'nope')).toThrow(/no job nope/);
  });
});

describe('workflow runner, a job run with bash', () => {
  it('runs run: steps in order with env and expressions, skips replaced ones, stops at the first failure with its code', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-workflow-'));
    try {
      const file = path.join(dir, 'w.yml');
      await fs.writeFile(file, [
        'on: { push: { branches: [main] } }',
        'env: { WHO: workflow }',
        'jobs:',
        '  j:',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - uses: actions/checkout@v4',
        '      - name: replaced',
        '        run: exit 9',
        '      - name: first',
        '        env: { SECRET: "${{ secrets.S }}" }',
        '        run: |',
        '          printf "%s %s %s\\n" "$WHO" "$SECRET" "$GITHUB_REF_NAME" > "$HOME/out"',
        '          false | true',
        '      - name: second',
        '        shell: bash',
        '        run: false | true; echo unreachable',
        '      - name: third',
        '        run: echo never',
      ].join('\n'));
      await fs.mkdir(path.join(dir, 'home'));
      const workflow = await loadWorkflow(file);
      const ctx = {
        workspace: dir, home: path.join(dir, 'home'), binDir: path.join(dir, 'bin'), temp: dir,
        expressions: { 'secrets.S': 'it\'s $(not run)' }, runnerEnv: { GITHUB_REF_NAME: 'main' },
        replaced: (step: { name: string }) => step.name === 'replaced',
      };
      const job = await runJob(workflow, 'j', ctx);
      // bash -e without pipefail lets `false | true` pass; shell: bash has pipefail and fails.
      expect(job.steps.map((s) => [s.name, s.exitCode])).toEqual([['first', 0], ['second', 1]]);
      expect(job).toMatchObject({ exitCode: 1, failed: { name: 'second' } });
      expect(await fs.readFile(path.join(dir, 'home', 'out'), 'utf8')).toBe("workflow it's $(not run) main\n");
      await expect(runJob(workflow, 'j', { ...ctx, expressions: {} })).rejects.toThrow(/steps\[2\] \(first\) env\.SECRET: the expression \$\{\{ secrets\.S \}\}/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('examples/github-actions', () => {
  const workflows = {} as Record<(typeof FILES)[number], Workflow>;
  const onlyJob = (file: (typeof FILES)[number]): WorkflowJob => {
    const jobs = Object.values(workflows[file].jobs);
    expect(jobs).toHaveLength(1);
    return jobs[0]!;
  };
  const deployScripts = (file: (typeof FILES)[number]) => runSteps(workflows[file], Object.keys(workflows[file].jobs)[0]!)
    .filter((s) => callsDeploy(s.script) && !/npm install -g/.test(s.script)).map((s) => s.script.trim());

  beforeAll(async () => {
    for (const file of FILES) workflows[file] = await loadWorkflow(path.join(EXAMPLES, file));
  });

  it('triggers: main → staging, a v* tag → production, a dispatch with a required reason → rollback', () => {
    expect(workflows['staging.yml'].on).toMatchObject({ push: { branches: ['main'] } });
    expect(workflows['production.yml'].on).toEqual({ push: { tags: ['v*'] } });
    expect(workflows['rollback.yml'].on).toMatchObject({
      workflow_dispatch: { inputs: { reason: { required: true, type: 'string' }, to: { required: false } } },
    });
  });

  it('deploy commands are the designed ones', () => {
    expect(deployScripts('staging.yml')).toEqual(['deploy push --env staging']);
    expect(deployScripts('production.yml')).toEqual(['deploy promote "$GITHUB_REF_NAME" --from staging --to production --yes']);
    const [rollback] = deployScripts('rollback.yml');
    expect(rollback).toContain('args=(rollback --env production --reason "$REASON")');
    expect(rollback).toMatch(/deploy "\$\{args\[@\]\}"$/);
  });

  it('production and rollback run in the protected "production" environment; staging in "staging"', () => {
    const envName = (job: WorkflowJob) => (typeof job.environment === 'string' ? job.environment : job.environment?.name);
    expect(envName(onlyJob('staging.yml'))).toBe('staging');
    expect(envName(onlyJob('production.yml'))).toBe('production');
    expect(envName(onlyJob('rollback.yml'))).toBe('production');
  });

  it('two deploys of one environment never overlap, and a running one is never cancelled', () => {
    const group = (file: (typeof FILES)[number]) => {
      const concurrency = (onlyJob(file).concurrency ?? workflows[file].concurrency) as { group: string; 'cancel-in-progress': boolean };
      expect(concurrency['cancel-in-progress'], file).toBe(false);
      return concurrency.group;
    };
    expect(group('production.yml')).toBe(group('rollback.yml'));
    expect(group('staging.yml')).not.toBe(group('production.yml'));
  });

  it('each job checks out with full history and tags, sets up Node 20, installs the CLI with scripts/pack-cli', () => {
    for (const file of FILES) {
      const steps = onlyJob(file).steps;
      const appCheckout = steps.find((s) => s.uses?.startsWith('actions/checkout@') && !s.with?.repository);
      expect(appCheckout?.with?.['fetch-depth'], file).toBe(0);
      expect(steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with?.['node-version'], file).toBe(20);
      const install = steps.find((s) => s.name === 'Install the deploy CLI');
      expect(install?.run, file).toMatch(/bash scripts\/pack-cli --out /);
      expect(install?.run, file).toMatch(/npm install -g .*slipway-cli-\*\.tgz/);
      expect(existsSync(path.join(REPO_ROOT, 'scripts', 'pack-cli'))).toBe(true);
    }
  });

  it('SSH keys and known_hosts come from secrets through env, are written with umask 077 and chmod 0600', () => {
    const written: Record<string, string[]> = {};
    for (const file of FILES) {
      const sshSteps = runSteps(workflows[file], Object.keys(workflows[file].jobs)[0]!).filter((s) => s.script.includes('~/.ssh/'));
      expect(sshSteps, file).toHaveLength(1);
      const step = sshSteps[0]!;
      expect(step.script).toMatch(/^umask 077$/m);
      const files = [...step.script.matchAll(/> (~\/\.ssh\/\S+)/g)].map((m) => m[1]!);
      expect(files).toContain('~/.ssh/known_hosts');
      const chmod = step.script.match(/^chmod 0600 (.+)$/m)?.[1]?.split(' ') ?? [];
      expect(chmod.sort(), file).toEqual([...files].sort());
      for (const value of Object.values(step.env)) expect(value).toMatch(/^\$\{\{ secrets\.SLIPWAY_[A-Z_]+ \}\}$/);
      written[file] = files;
    }
    expect(written['production.yml']).toEqual(expect.arrayContaining(['~/.ssh/slipway_staging', '~/.ssh/slipway_production']));
  });

  it('no secret, input or event text is pasted into a script (only into env:)', () => {
    for (const file of FILES) {
      for (const step of runSteps(workflows[file], Object.keys(workflows[file].jobs)[0]!)) {
        expect(expressionsIn(step.script), `${file}: ${step.name}`).toEqual([]);
      }
    }
  });

  it('the example deploy.config.json names the keys the workflows write, and production is promoted from staging with approval', () => {
    const config = JSON.parse(readFileSync(path.join(EXAMPLES, 'deploy.config.json'), 'utf8')) as {
      environments: Record<string, { hosts: { identityFile: string; knownHostsFile: string }[]; requireApproval?: boolean; promotion?: { from: string } }>;
    };
    expect(Object.keys(config.environments).sort()).toEqual(['production', 'staging']);
    expect(config.environments.staging!.hosts.map((h) => h.identityFile)).toEqual(['~/.ssh/slipway_staging']);
    expect(config.environments.production!.hosts.map((h) => h.identityFile)).toEqual(['~/.ssh/slipway_production']);
    for (const env of Object.values(config.environments)) for (const host of env.hosts) expect(host.knownHostsFile).toBe('~/.ssh/known_hosts');
    expect(config.environments.production).toMatchObject({ requireApproval: true, promotion: { from: 'staging' } });

    // And the controller reads it as meant: staging on its own box app with its server name.
    const parsed = parseDeployConfig(config, path.join(EXAMPLES, 'deploy.config.json'));
    expect(resolveTarget(parsed, 'staging')).toMatchObject({
      env: 'staging', project: 'shop', app: 'shop-staging', specOverrides: { serverNames: ['staging.shop.example.com'] }, requireApproval: false,
    });
    expect(resolveTarget(parsed, 'production')).toMatchObject({
      env: 'production', project: 'shop', app: 'shop', specOverrides: null, requireApproval: true, promotion: { from: 'staging', maxAgeMs: 14 * 86_400_000 },
    });
    expect(resolveTarget(parsed, undefined).env).toBe('staging');
  });

  it('the README links every example', () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    for (const file of [...FILES, 'deploy.config.json']) expect(readme).toContain(`(examples/github-actions/${file})`);
  });
});
