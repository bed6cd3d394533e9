/**
 * Issue 10, "the controller's runtime dependencies": the `deploy` CLI packed on its own
 * (scripts/pack-cli) installs into an empty project offline, compiles nothing, brings neither
 * better-sqlite3 nor PM2, and runs from there.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { VERSION } from '../../contract/version.js';
import { packCli } from '../../scripts/cli-package.js';
import { REPO_ROOT } from '../helpers/agent-process.js';

/** Every directory name and every compiled addon (*.node) under `dir`. */
async function treeNames(dir: string): Promise<{ dirs: string[]; addons: string[] }> {
  const entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  return {
    dirs: entries.filter((e) => e.isDirectory()).map((e) => e.name),
    addons: entries.filter((e) => e.isFile() && e.name.endsWith('.node')).map((e) => path.join(e.parentPath, e.name)),
  };
}

describe('the deploy CLI as its own package (slipway-cli)', () => {
  let dir: string;
  let tarball: string;
  let dependencies: Record<string, string>;
  let project: string;
  let install: { exitCode: number | null; stdout: string; stderr: string };
  const deploy = (args: string[], cwd = project) => runCommand([path.join(project, 'node_modules', '.bin', 'deploy'), ...args], {
    cwd, timeoutMs: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
  });

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-cli-package-'));
    ({ tarball, dependencies } = await packCli(REPO_ROOT, dir));
    // A CI runner's checkout: an empty project, outside this repository so nothing resolves from its node_modules.
    project = path.join(dir, 'runner');
    await fs.mkdir(project);
    await fs.writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'ci-runner', private: true }));
    install = await runCommand(['npm', 'install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: project, timeoutMs: 300_000 });
  }, 400_000);
  afterAll(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('declares what the controller imports at runtime, and nothing of the agent\'s', () => {
    expect(Object.keys(dependencies).sort()).toEqual(expect.arrayContaining(['ajv', 'commander', 'ssh2', 'tar']));
    expect(Object.keys(dependencies)).not.toContain('better-sqlite3');
    expect(Object.keys(dependencies)).not.toContain('pm2');
  });

  it('installs offline into an empty project without better-sqlite3, PM2 or any native build', async () => {
    expect(install.exitCode, install.stderr).toBe(0);
    const { dirs, addons } = await treeNames(path.join(project, 'node_modules'));
    expect(dirs).toContain('ssh2');
    // fastify is the controller's too since deploy ui serves its page with it (pure JS, nothing compiled).
    expect(dirs.filter((name) => ['better-sqlite3', 'pm2', 'node-cron', 'nunjucks'].includes(name))).toEqual([]);
    expect(addons, 'nothing was compiled').toEqual([]);
  });

  it('deploy --version and --help run from the installed package', async () => {
    const version = await deploy(['--version']);
    expect(version.exitCode, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(VERSION);
    const help = await deploy(['--help']);
    expect(help.exitCode, help.stderr).toBe(0);
    for (const command of ['push', 'switch', 'rollback', 'status', 'history', 'releases', 'lock', 'backup', 'ui']) expect(help.stdout).toContain(command);
  });

  it('carries the page of deploy ui beside the module that serves it', () => {
    const staticDir = path.join(project, 'node_modules', 'slipway-cli', 'dist', 'controller', 'ui', 'static');
    for (const file of ['index.html', 'app.js', 'app.css']) expect(existsSync(path.join(staticDir, file)), file).toBe(true);
  });

  it('validates a deploy.config.json with its own schema validator (ajv from the package)', async () => {
    const app = path.join(dir, 'app');
    await fs.mkdir(app);
    await fs.writeFile(path.join(app, 'deploy.config.json'), JSON.stringify({ app: 'Shop;', host: { address: 'a b', user: 'deploy' }, agent: {} }));
    const result = await deploy(['status'], app);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/deploy\.config\.json has 2 problem\(s\)/);
    expect(existsSync(path.join(project, 'node_modules', 'slipway-cli', 'node_modules', 'ajv'))).toBe(true);
  });
});
