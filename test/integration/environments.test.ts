// Issue 13: two environments of one project on ONE stack: box apps shop-staging and shop, each
// allowed only its own server name by the host policy, one release artifact for both, the
// environment's spec overrides (server names, instances, env) applied by the agent.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppStatus, DeploymentSummary } from '../../contract/api.js';
import { startStack, type Stack } from '../helpers/stack.js';

const PROJECT = 'shop';
const STAGING_APP = 'shop-staging';

// Tells which box app and environment answered: SLIPWAY_APP is set by Slipway, SHOP_ENV by the overrides.
const ENV_SERVER = `'use strict';
const http = require('node:http');
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ app: process.env.SLIPWAY_APP, env: process.env.SHOP_ENV ?? null, release: process.env.SLIPWAY_RELEASE }));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

const SPEC = {
  processes: { web: { script: 'env-server.js', instances: 2, health: { path: '/health', intervalMs: 100 } } },
  routes: [{ serverNames: ['shop.test'], process: 'web' }],
  watch: { windowMs: 500, intervalMs: 100 },
};

function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('environments: staging and production of one project on one host', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ app: PROJECT, policy: { serverNames: ['shop.test'] } });
    // The box has a second app for staging, allowed only its own server name.
    const apps = stack.agentConfig.apps as Record<string, Record<string, unknown>>;
    apps[STAGING_APP] = { ...apps[PROJECT], serverNames: ['staging.shop.test'] };
    await fs.writeFile(stack.agentConfigPath, JSON.stringify(stack.agentConfig, null, 2));
    await stack.restartAgent();
    const plain = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as { host: unknown; agent: unknown };
    await stack.repo.commit({
      'env-server.js': ENV_SERVER,
      'deploy.spec.json': JSON.stringify(SPEC, null, 2),
      'deploy.config.json': JSON.stringify({
        app: PROJECT, agent: plain.agent,
        environments: {
          staging: {
            app: STAGING_APP, hosts: [plain.host],
            spec: { serverNames: ['staging.shop.test'], processes: { web: { instances: 1 } }, env: { SHOP_ENV: 'staging' } },
          },
          production: { hosts: [plain.host], spec: { env: { SHOP_ENV: 'production' } } },
        },
      }, null, 2),
    }, 'two environments');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a command without --env is refused naming the environments', async () => {
    const refused = await stack.deploy(['push']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/name one with --env \(staging, production\)/);
    const unknown = await stack.deploy(['status', '--env', 'qa']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no environment "qa".*staging, production/);
  });

  it('pushes one artifact to both; each box app serves its own server name with its own instances and env', async () => {
    await promisify(execFile)('git', ['tag', 'v1.0.0'], { cwd: stack.repo.dir });
    const staging = await stack.deploy(['push', '--env', 'staging', '--sha', 'v1.0.0', '--json']);
    expect(staging.code, staging.stderr).toBe(0);
    const lines = jsonLines(staging.stdout);
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.every((l) => l.env === 'staging')).toBe(true);
    const production = await stack.deploy(['push', '--env', 'production']);
    expect(production.code, production.stderr).toBe(0);

    // Through nginx: each server name reaches its own box app, with the environment's env.
    const stagingAnswer = JSON.parse((await stack.getHost('staging.shop.test')).body) as { app: string; env: string; release: string };
    const productionAnswer = JSON.parse((await stack.getHost('shop.test')).body) as { app: string; env: string; release: string };
    expect(stagingAnswer).toMatchObject({ app: STAGING_APP, env: 'staging' });
    expect(productionAnswer).toMatchObject({ app: PROJECT, env: 'production' });
    // One artifact: the same release id in both, its manifest naming the project.
    expect(stagingAnswer.release).toBe(productionAnswer.release);

    // Instances as PM2 runs them (status reads PM2): 1 on staging, 2 on production.
    const statusOf = async (env: string) => {
      const result = await stack.deploy(['status', '--env', env, '--json']);
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as AppStatus & { env: string };
    };
    const stagingStatus = await statusOf('staging');
    const productionStatus = await statusOf('production');
    const web = (s: AppStatus) => s.slots.find((slot) => slot.live)!.processes!.find((p) => p.name === 'web')!;
    expect(stagingStatus).toMatchObject({ app: STAGING_APP, env: 'staging', tag: 'v1.0.0' });
    expect(productionStatus).toMatchObject({ app: PROJECT, env: 'production' });
    expect(web(stagingStatus)).toMatchObject({ instances: 1, online: 1 });
    expect(web(productionStatus)).toMatchObject({ instances: 2, online: 2 });
    expect(stagingStatus.releases[0]!.manifest.app).toBe(PROJECT);

    // History rows carry their environment.
    const history = await stack.deploy(['history', '--env', 'staging', '--json']);
    const rows = JSON.parse(history.stdout) as DeploymentSummary[];
    expect(rows.map((r) => [r.kind, r.env, r.tag, r.outcome])).toEqual([['deploy', 'staging', 'v1.0.0', 'succeeded']]);

    // The app can tell where it runs.
    const info = JSON.parse(await fs.readFile(path.join(stack.home, 'releases', STAGING_APP, stagingAnswer.release, 'DEPLOYMENT_INFO.json'), 'utf8')) as Record<string, unknown>;
    expect(info).toMatchObject({ app: PROJECT, env: 'staging', tag: 'v1.0.0', releaseId: stagingAnswer.release });
  });

  it('overrides that do not fit are refused before anything changes: by the controller, and by the host policy', async () => {
    // The same project config with other staging overrides, kept outside the repository.
    const base = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as { environments: Record<string, { spec: unknown }> };
    const withStaging = async (spec: unknown) => {
      const file = path.join(stack.dir, `deploy.config.${Math.random().toString(36).slice(2)}.json`);
      base.environments.staging!.spec = spec;
      await fs.writeFile(file, JSON.stringify(base));
      return stack.deploy(['--config', file, 'push', '--env', 'staging']);
    };
    const unknownProcess = await withStaging({ processes: { api: { instances: 1 } } });
    expect(unknownProcess.code).toBe(2);
    expect(unknownProcess.stderr).toMatch(/environments\.staging\.spec\.processes\.api: names no process/);
    const before = (await stack.deploy(['status', '--env', 'staging', '--json'])).stdout;
    const notAllowed = await withStaging({ serverNames: ['shop.test'] });
    expect(notAllowed.code, notAllowed.stderr).toBe(3);
    expect(notAllowed.stderr).toMatch(/asks for more than this host allows/);
    const after = JSON.parse((await stack.deploy(['status', '--env', 'staging', '--json'])).stdout) as AppStatus;
    expect(after.specOverrides).toEqual((JSON.parse(before) as AppStatus).specOverrides);
    expect(JSON.parse((await stack.getHost('staging.shop.test')).body)).toMatchObject({ app: STAGING_APP, env: 'staging' });
  });
});
