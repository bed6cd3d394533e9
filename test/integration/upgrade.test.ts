import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';
import { Pm2Adapter } from '../../agent/pm2.js';
import type { HostShell } from '../../controller/setup/host-shell.js';
import { hostLayout, type HostLayout } from '../../controller/setup/layout.js';
import { AGENT_PACKAGE_MARKER, agentPackageMarker, agentPackageVersion, type AgentPackageInfo } from '../../controller/setup/agent-package.js';
import { agentProcessConfig, agentProcessFile, pm2Argv } from '../../controller/setup/plan.js';
import { asAgent, upgradeHostOver } from '../../controller/upgrade/host.js';
import { upgradeAgent, type UpgradeHost } from '../../controller/upgrade/upgrade.js';
import { runCommand } from '../../lib/exec.js';
import { SlipwayError } from '../../contract/errors.js';

// deploy upgrade on the layout deploy setup makes (hostLayout), laid out under a temp root on this
// machine: the agent runs as `slipway-agent` in a PM2 daemon of its own, the apps in the agent's
// PM2 daemon. Installs are small tarballs whose dist/ and node_modules are links to this checkout's
// (packing the real agent is deploy setup's test); the bad one's agent exits at start.
// The host commands run through a local HostShell (the same argv deploy upgrade sends over SSH):
// root logins over the test sshd run root's bash, whose ~/.bashrc here can stall each command for
// 60 s (test/helpers/sshd.ts); the SSH path of HostShell is setup's, tested on the fresh host.

/** HostShell on this machine, as root (the tests' user): what privilegedShell gives over SSH. */
function localRootShell(): HostShell {
  const run: HostShell['run'] = async (argv, options = {}) => {
    const result = await runCommand(argv, { timeoutMs: options.timeoutMs ?? 120_000, ...(options.stdin === undefined ? {} : { input: options.stdin }) });
    return { exitCode: result.exitCode, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
  };
  return {
    via: 'root',
    run,
    async checked(argv, step, options) {
      const result = await run(argv, options);
      if (result.exitCode !== 0) throw new SlipwayError('setup_step_failed', `${step} failed: ${result.stderr}`);
      return result;
    },
  };
}

type Package = AgentPackageInfo & { tarball(): Promise<Buffer> };

async function makePackage(dir: string, digestChar: string, kind: 'good' | 'bad'): Promise<Package> {
  const packageVersion = JSON.parse(await fs.readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')).version as string;
  const digest = digestChar.repeat(64);
  const info = { version: agentPackageVersion(packageVersion, digest), digest, packageVersion };
  const tree = path.join(dir, `tree-${info.version}`);
  await fs.mkdir(tree, { recursive: true });
  await fs.copyFile(path.join(REPO_ROOT, 'package.json'), path.join(tree, 'package.json'));
  await fs.symlink(path.join(REPO_ROOT, 'node_modules'), path.join(tree, 'node_modules'));
  if (kind === 'good') {
    await fs.symlink(path.join(REPO_ROOT, 'dist'), path.join(tree, 'dist'));
  } else {
    await fs.mkdir(path.join(tree, 'dist', 'agent'), { recursive: true });
    await fs.writeFile(path.join(tree, 'dist', 'agent', 'main.js'), 'console.error("bad agent: exits at start"); process.exit(1);\n');
  }
  await fs.writeFile(path.join(tree, AGENT_PACKAGE_MARKER), agentPackageMarker(info));
  const tarball = path.join(dir, `${info.version}.tgz`);
  const packed = await runCommand(['tar', '-czf', tarball, '-C', tree, '.'], { timeoutMs: 60_000 });
  expect(packed.exitCode, packed.stderr).toBe(0);
  return { ...info, tarball: () => fs.readFile(tarball) };
}

describe('deploy upgrade (agent replaced, apps untouched)', () => {
  let stack: Stack;
  let dir: string;
  let layout: HostLayout;
  let host: UpgradeHost;
  let appPm2: Pm2Adapter;
  let v1: Package;
  let v2: Package;
  let bad: Package;

  const health = async () => (await fetch(`http://127.0.0.1:${stack.agentPort}/health`).catch(() => null))?.ok === true;
  const appPids = async () => Object.fromEntries(await Promise.all(['blue', 'green'].map(async (slot) => [slot, (await appPm2.describe(`${APP}-${slot}`))?.pid ?? null])));
  const options = { health, timeoutMs: 60_000 };
  const agentLog = async () => {
    const logs = path.join(layout.pm2Home, 'logs');
    const files = (await fs.readdir(logs).catch(() => [] as string[])).filter((f) => f.startsWith('slipway-agent-error'));
    return (await Promise.all(files.map((f) => fs.readFile(path.join(logs, f), 'utf8')))).join('\n').slice(-2000);
  };

  beforeAll(async () => {
    stack = await startStack();
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    appPm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    // From here the agent runs under its own PM2 daemon, as deploy setup leaves it.
    await stack.agent.stop();

    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-upgrade-'));
    layout = hostLayout(path.join(dir, 'root'));
    for (const d of [layout.agentVersionsDir, layout.etcDir, layout.pm2Home, path.dirname(layout.nodeBin)]) await fs.mkdir(d, { recursive: true });
    await fs.symlink(process.execPath, layout.nodeBin);
    await fs.copyFile(stack.agentConfigPath, layout.configFile);
    await fs.writeFile(agentProcessFile(layout), agentProcessConfig(layout));
    [v1, v2, bad] = await Promise.all([makePackage(dir, 'a', 'good'), makePackage(dir, 'b', 'good'), makePackage(dir, 'c', 'bad')]);

    // Tests have no `slipway` user: PM2 runs as the test's own user, in the layout's environment.
    host = upgradeHostOver(localRootShell(), layout, { runAs: null });
  }, 240_000);

  afterAll(async () => {
    if (layout) {
      await runCommand(asAgent(layout, pm2Argv(layout, ['kill']), null), { timeoutMs: 60_000 }).catch(() => undefined);
      const pid = Number((await fs.readFile(path.join(layout.pm2Home, 'pm2.pid'), 'utf8').catch(() => '')).trim());
      if (pid > 0) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
    await appPm2?.disconnect();
    await stack?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('refuses a host deploy setup never set up', async () => {
    const error = await upgradeAgent(host, v1, options).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe('upgrade_layout_missing');
    expect((error as SlipwayError).hint).toContain('deploy setup');
  });

  it('replaces the agent: only slipway-agent restarts, the apps keep their PIDs and serve throughout', async () => {
    // The host as deploy setup leaves it: v1 installed, current → v1, the agent running from it.
    await host.install(v1, () => v1.tarball());
    await host.pointCurrentAt(v1.version);
    await host.restartAgent();
    await waitFor(async () => (await host.runningAgent())?.install === v1.version && await health(), { timeoutMs: 60_000, description: 'agent v1 up under PM2' })
      .catch(async (error: Error) => { throw new Error(`${error.message}\nagent log: ${await agentLog()}`); });
    const before = await appPids();
    expect(before[(await stack.get('/')).headers['x-slipway-slot'] as string]).toBeGreaterThan(0);
    const oldAgent = (await host.runningAgent())!;

    let failures = 0;
    let served = 0;
    let running = true;
    const traffic = (async () => {
      while (running) {
        const answer = await fetch(`${stack.publicUrl}/`).catch(() => null);
        if (answer?.status === 200) served += 1; else failures += 1;
        await answer?.arrayBuffer();
      }
    })();
    const outcome = await upgradeAgent(host, v2, options);
    running = false;
    await traffic;

    expect(outcome).toMatchObject({ kind: 'upgraded', from: v1.version, to: v2.version });
    const now = (await host.runningAgent())!;
    expect(now.install).toBe(v2.version);
    expect(now.pid).not.toBe(oldAgent.pid);
    expect(await fs.readlink(layout.agentCurrentLink)).toBe(v2.version);
    expect(await appPids()).toEqual(before);
    expect({ served: served > 0, failures }).toEqual({ served: true, failures: 0 });
    // The same package again: nothing to do.
    expect(await upgradeAgent(host, v2, options)).toEqual({ kind: 'unchanged', version: v2.version });
  });

  it('an agent that cannot start is replaced by the previous one again; the apps are untouched', async () => {
    const before = await appPids();
    const progress: string[] = [];
    const error = await upgradeAgent(host, bad, { ...options, report: (line) => progress.push(line) }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe('upgrade_rolled_back');
    expect((error as SlipwayError).message).toContain(`the previous agent ${v2.version} runs again`);
    expect(progress.join('\n')).toContain(`going back to ${v2.version}`);
    expect(await fs.readlink(layout.agentCurrentLink)).toBe(v2.version);
    expect((await host.runningAgent())?.install).toBe(v2.version);
    expect(await health()).toBe(true);
    expect(await appPids()).toEqual(before);
    expect((await stack.get('/')).status).toBe(200);
    // The failed install stays for a look, complete (its marker names it).
    expect(await host.hasInstall(bad)).toBe(true);
  });
});
