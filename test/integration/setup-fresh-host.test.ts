import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSsh, type SshSession } from '../../controller/ssh.js';
import { runDeployCli, startDeployCli, type DeployCliOptions } from '../helpers/agent-process.js';
import { cachedAptMirror, cachedFreshOsTree, startFreshHost, type FreshHost } from '../helpers/fresh-host.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';
import { createNetnsHost, type NetnsHost } from '../helpers/netns.js';
import { nextPatch, packageWithVersion, type PackageCopy } from '../helpers/package-copy.js';
import { waitFor } from '../helpers/wait.js';
import { VERSION } from '../../contract/version.js';

/**
 * `deploy setup` on a genuinely fresh Debian box (scripts/fresh-os-fixture: debootstrap tree with
 * its own sshd in a network namespace, apt served from the fixture's local repository), then a
 * push to it. One box for the whole file, the steps in order: an interrupted setup completes on
 * rerun, a push runs as the slipway user with a read-only release and a writable shared dir, a
 * second setup changes nothing, a conflicting nginx site is refused with nothing changed, --check
 * names a broken mode, the agent and app come back after a "reboot" through the unit's ExecStart,
 * a reload nginx refuses is reported with nginx's own reason (its error log, read through group
 * adm), and `deploy upgrade` from a controller of the next version replaces the agent while the
 * app keeps its processes and answers every request.
 */
const tree = await cachedFreshOsTree();
const mirror = tree === null ? null : await cachedAptMirror(tree);
// Where the suite must run (scripts/test sets it, CI sets CI), a missing fixture fails it: a skip
// there would hide that `deploy setup` was never tried on a fresh box.
if ((process.env.SLIPWAY_REQUIRE_FRESH_HOST === '1' || process.env.CI) && (tree === null || mirror === null)) {
  throw new Error(`the fresh-host fixture is not built (tree: ${tree ?? 'missing'}, apt repository: ${mirror ?? 'missing'}): run bash scripts/fresh-os-fixture as root first (scripts/test does)`);
}
const APP = 'fresh';
const SERVER_NAME = 'fresh.test';
const TOKEN_FILE = '/etc/slipway/token';

const SERVER_JS = `'use strict';
// Tries to write into its own release dir (must fail: releases are read-only) and into its
// shared dir (must work), and reports both with its uid.
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const attempt = (file) => { try { fs.writeFileSync(file, 'written by the app'); return 'ok'; } catch (error) { return error.code; } };
const report = {
  release: attempt(path.join(__dirname, 'written-by-app.txt')),
  shared: attempt('/var/lib/slipway/apps/${APP}/shared/written-by-app.txt'),
  uid: process.getuid(),
  releaseId: process.env.SLIPWAY_RELEASE,
};
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(report));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;
const SPEC = {
  processes: { web: { script: 'server.js', health: { path: '/health', intervalMs: 100, retries: 300 } } },
  routes: [{ serverNames: [SERVER_NAME], process: 'web' }],
  watch: { windowMs: 1000, intervalMs: 200 },
};

function get(address: string, host: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address, port: 80, path: urlPath, headers: { host }, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe.skipIf(tree === null || mirror === null)('deploy setup on a fresh Debian box', () => {
  let netns: NetnsHost | undefined;
  let host: FreshHost | undefined;
  let ssh: SshSession | undefined;
  let repo: AppRepo;
  let work: string;
  const figures: Record<string, number> = {};
  /** The package of the next version (the upgrade's); the steps after the upgrade use its controller. */
  let next: PackageCopy;
  const cli = (args: string[], timeoutMs = 600_000, options: Partial<DeployCliOptions> = {}) => runDeployCli(args, { cwd: repo.dir, timeoutMs, ...options });
  /** Every process of the slipway user but the agent and the PM2 daemon that runs it: the apps' PM2 daemon and the app's processes. */
  const appPids = async () => {
    const slipwayUid = Number((await onBox(['id', '-u', 'slipway'])).trim());
    const pids: number[] = [];
    for (const p of await boxProcesses()) {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${p.pid}/status`, 'utf8').catch(() => ''))?.[1]);
      if (uid === slipwayUid && !p.cmd.includes('dist/agent/main.js') && !p.cmd.includes('(/var/lib/slipway/.pm2)')) pids.push(p.pid);
    }
    return pids.sort((a, b) => a - b);
  };
  /** Runs the unit's ExecStart or ExecStop as systemd would (its user, directory and environment): the box has no systemd. */
  const runUnitLine = async (key: 'ExecStart' | 'ExecStop') => {
    const unit = await onBox(['cat', '/etc/systemd/system/slipway.service']);
    const user = /^User=(.+)$/m.exec(unit)![1]!;
    const env = [...unit.matchAll(/^Environment=(.+)$/gm)].map((m) => m[1]!);
    const argv = new RegExp(`^${key}=(.+)$`, 'm').exec(unit)![1]!.split(' ');
    const workingDirectory = /^WorkingDirectory=(.+)$/m.exec(unit)![1]!;
    await onBox(['runuser', '-u', user, '--', 'env', `--chdir=${workingDirectory}`, ...env, ...argv]);
  };
  /** The box's processes: pid and command line. */
  const boxProcesses = async () => {
    const list: { pid: number; cmd: string }[] = [];
    for (const pid of await netns!.pids()) {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim();
      if (cmd) list.push({ pid, cmd });
    }
    return list;
  };
  const onBox = async (argv: string[]) => (await ssh!.execChecked(argv, { step: argv.join(' '), timeoutMs: 60_000 })).stdout;

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'slipway-setup-'));
    netns = await createNetnsHost({ label: 'setup' });
    host = await startFreshHost({ netns, tree: tree!, aptMirror: mirror! });
    repo = await createAppRepo(path.join(work, 'app'), path.join(import.meta.dirname, '..', 'fixtures', 'sample-app'), {
      'server.js': SERVER_JS,
      'deploy.spec.json': `${JSON.stringify(SPEC, null, 2)}\n`,
      'deploy.config.json': `${JSON.stringify({
        app: APP,
        host: { address: host.address, port: 22, user: 'root', identityFile: host.clientKeyPath, knownHostsFile: host.knownHostsPath },
        agent: { port: 7070, tokenFile: TOKEN_FILE },
      }, null, 2)}\n`,
    });
    ssh = await connectSsh({ host: host.address, port: 22, username: 'root', privateKeyPath: host.clientKeyPath, knownHostsPath: host.knownHostsPath, agentSocket: '' });
  }, 300_000);

  afterAll(async () => {
    await ssh?.close();
    await host?.stop();
    await netns?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    console.log(`setup-fresh-host figures: ${JSON.stringify(figures)}`);
  });

  it('an interrupted setup leaves the box half done; the rerun completes it and the agent answers', async () => {
    const started = Date.now();
    const first = startDeployCli(['setup'], { cwd: repo.dir, timeoutMs: 600_000 });
    // Killed once the packages are in and the user exists, before Node.js and the agent are.
    let ended: { code: number | null; stderr: string } | null = null;
    const done = first.done.then((r) => { ended = r; return r; });
    await waitFor(async () => {
      if (ended) throw new Error(`setup ended before it could be interrupted (${ended.code}): ${ended.stderr}`);
      return (await ssh!.exec(['getent', 'passwd', 'slipway'])).exitCode === 0;
    }, { timeoutMs: 400_000, intervalMs: 100, description: 'the first setup to create the slipway user' });
    first.kill();
    await done;
    figures.interruptedAfterMs = Date.now() - started;
    expect(host!.aptMirror!.served.some((deb) => deb.startsWith('nginx_'))).toBe(true);
    expect((await ssh!.exec(['test', '-e', '/opt/slipway/agent/current'])).exitCode).not.toBe(0);

    const rerunStarted = Date.now();
    const rerun = await cli(['setup']);
    figures.setupRerunMs = Date.now() - rerunStarted;
    figures.setupTotalMs = Date.now() - started;
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toMatch(/ok +packages/);
    expect(rerun.stderr).toMatch(/changed +node/);
    expect(rerun.stderr).toMatch(/changed +agent install/);
    expect(rerun.stderr).toMatch(/setup: changed .*; agent 0\.1\.0 answers/);

    // Least privilege: the agent and its PM2 run as slipway; the token is for slipway and its group.
    expect((await onBox(['stat', '-c', '%a %U %G', TOKEN_FILE])).trim()).toBe('640 slipway slipway-api');
    expect((await onBox(['cat', '/etc/sudoers.d/slipway']))).toContain('slipway ALL=(root) NOPASSWD: /usr/sbin/nginx -t, /usr/sbin/nginx -s reload');
    expect((await onBox(['runuser', '-u', 'slipway', '--', 'sudo', '-n', '-l'])).trim()).toContain('/usr/sbin/nginx -t');
    expect((await ssh!.exec(['runuser', '-u', 'slipway', '--', 'sudo', '-n', '/usr/bin/id'])).exitCode).not.toBe(0);
    // nginx's error log is Debian's 0640 in group adm: the agent reads it through that group alone.
    expect((await onBox(['id', '-nG', 'slipway'])).trim().split(' ').sort()).toEqual(['adm', 'slipway']);
    expect((await onBox(['stat', '-c', '%a %G', '/var/log/nginx/error.log'])).trim()).toMatch(/^6[04]0 adm$/);
    const asSlipway = (groups: string) => ssh!.exec(['setpriv', '--reuid=slipway', '--regid=slipway', groups, 'head', '-c', '0', '/var/log/nginx/error.log']);
    expect((await asSlipway('--init-groups')).exitCode).toBe(0);
    expect((await asSlipway('--clear-groups')).stderr).toContain('Permission denied');
    // The probe secret: its own files, the agent's only; the rendered includes name the snippet.
    for (const file of ['/var/lib/slipway/nginx-probe.secret', '/var/lib/slipway/nginx-probe.conf']) {
      expect((await onBox(['stat', '-c', '%a %U %G', file])).trim()).toBe('600 slipway slipway');
    }
  }, 900_000);

  it('deploy env writes the env file as slipway, 0600; a push runs the app as slipway: its release is read-only to it, its shared dir writable', async () => {
    // deploy env writes the app's env file through the agent, which runs as slipway: the file is its own, 0600.
    const envSecret = 'fresh-host-secret-value-7f3a';
    const envSet = await cli(['env', 'set', 'FRESH_SECRET'], 120_000, { env: { FRESH_SECRET: envSecret } });
    expect(envSet.code, envSet.stderr).toBe(0);
    expect(`${envSet.stdout}${envSet.stderr}`).not.toContain(envSecret);
    expect((await onBox(['stat', '-c', '%a %U %G', `/var/lib/slipway/apps/${APP}/shared/.env`])).trim()).toBe('600 slipway slipway');
    const pushed = await cli(['push']);
    expect(pushed.code, pushed.stderr).toBe(0);
    const served = await waitFor(async () => {
      const res = await get(host!.address, SERVER_NAME, '/');
      return res.status === 200 ? JSON.parse(res.body) as { release: string; shared: string; uid: number; releaseId: string } : null;
    }, { timeoutMs: 30_000, description: `${SERVER_NAME} served by nginx on the box` });
    const slipwayUid = Number((await onBox(['id', '-u', 'slipway'])).trim());
    expect(served).toMatchObject({ release: 'EACCES', shared: 'ok', uid: slipwayUid });
    expect(slipwayUid).not.toBe(0);
    // No node process on the box runs as root: not the agent, not its PM2 daemons, not the app.
    const nodeUids = new Set<number>();
    for (const pid of await netns!.pids()) {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const exe = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (exe.startsWith('/opt/slipway/node/bin/node')) nodeUids.add(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]));
    }
    expect([...nodeUids]).toEqual([slipwayUid]);
    // The rendered include (0644) names the secret's file and holds no secret.
    const secret = (await onBox(['cat', '/var/lib/slipway/nginx-probe.secret'])).trim();
    const include = await onBox(['cat', `/etc/slipway/nginx/${APP}.conf`]);
    expect(include).toContain('include /var/lib/slipway/nginx-probe.conf;');
    expect(include).not.toContain(secret);
    expect((await get(host!.address, SERVER_NAME, '/')).body).not.toContain(secret);
  }, 300_000);

  it('a second setup changes nothing; a conflicting site is refused with nothing changed; --check names a broken mode', async () => {
    const againStarted = Date.now();
    const again = await cli(['setup']);
    figures.setupUnchangedMs = Date.now() - againStarted;
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('setup: nothing changed');
    expect(again.stderr).not.toMatch(/changed +\w/);

    await onBox(['chmod', '644', TOKEN_FILE]);
    await writeFile(path.join(host!.root, 'etc', 'nginx', 'sites-enabled', 'other-site'), `server {\n  listen 80;\n  server_name other.test ${SERVER_NAME};\n}\n`);
    const refused = await cli(['setup']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(`already serves ${SERVER_NAME} from a site of its own: nothing was changed`);
    expect(refused.stderr).toContain('/etc/nginx/sites-enabled/other-site');
    expect((await onBox(['stat', '-c', '%a', TOKEN_FILE])).trim()).toBe('644');

    await rm(path.join(host!.root, 'etc', 'nginx', 'sites-enabled', 'other-site'));
    await onBox(['chmod', '644', '/var/lib/slipway/nginx-probe.conf']);
    const checked = await cli(['setup', '--check']);
    expect(checked.code).toBe(3);
    expect(checked.stderr).toMatch(new RegExp(`drift +token: ${TOKEN_FILE} has mode 644, should be 640`));
    expect(checked.stderr).toMatch(/drift +probe secret: \/var\/lib\/slipway\/nginx-probe\.conf has mode 644, should be 600/);
    expect(checked.stderr).toContain('setup --check: drift in 2 step(s): token, probe secret');
    expect((await onBox(['stat', '-c', '%a', TOKEN_FILE])).trim()).toBe('644');

    const fixed = await cli(['setup']);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stderr).toMatch(/setup: changed token, probe secret;/);
    expect((await onBox(['stat', '-c', '%a', TOKEN_FILE])).trim()).toBe('640');
    expect((await onBox(['stat', '-c', '%a', '/var/lib/slipway/nginx-probe.conf'])).trim()).toBe('600');
  }, 600_000);

  it('after a "reboot" (every process of the box killed), the unit\'s ExecStart brings the agent and the app back', async () => {
    const before = JSON.parse((await get(host!.address, SERVER_NAME, '/')).body) as { releaseId: string };
    const survivors = new Set([host!.pid]);
    for (const pid of await netns!.pids()) {
      if (survivors.has(pid)) continue;
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await ssh!.close();
    await waitFor(async () => (await netns!.pids()).every((p) => survivors.has(p)), { timeoutMs: 15_000, description: 'the box\'s processes to be gone' });
    ssh = await connectSsh({ host: host!.address, port: 22, username: 'root', privateKeyPath: host!.clientKeyPath, knownHostsPath: host!.knownHostsPath, agentSocket: '' });
    // As at boot: /run is empty; systemd starts nginx.service, then slipway.service as its unit says.
    await onBox(['sh', '-c', 'rm -f /run/nginx.pid /var/lib/slipway/.pm2/pm2.pid /var/lib/slipway/pm2/pm2.pid; /usr/sbin/nginx']);
    await runUnitLine('ExecStart');
    const after = await waitFor(async () => {
      const res = await get(host!.address, SERVER_NAME, '/').catch(() => null);
      return res?.status === 200 ? JSON.parse(res.body) as { releaseId: string } : null;
    }, { timeoutMs: 90_000, intervalMs: 250, description: `${SERVER_NAME} served again after the reboot` });
    expect(after.releaseId).toBe(before.releaseId);
    const status = await cli(['status']);
    expect(status.code, status.stderr).toBe(0);
  }, 300_000);

  it('deploy upgrade from a controller of the next version: the agent runs it, the app keeps its pids and answers every request, both controllers accept the pair', async () => {
    next = await packageWithVersion(work, nextPatch(VERSION));
    const agentPid = async () => (await boxProcesses()).find((p) => p.cmd.includes('dist/agent/main.js'))?.pid;
    const health = async () => JSON.parse(await onBox(['/opt/slipway/node/bin/node', '-e', "fetch('http://127.0.0.1:7070/health').then((r) => r.text()).then((t) => process.stdout.write(t))"])) as { version: string; apiVersion: number };
    const pidsBefore = await appPids();
    expect(pidsBefore.length).toBeGreaterThanOrEqual(2);
    const agentBefore = await agentPid();
    // The hard case, as after every boot: the apps' PM2 daemon is the agent's child (it spawned it).
    const appsDaemon = (await boxProcesses()).find((p) => p.cmd.includes('(/var/lib/slipway/pm2)'))!;
    expect(Number(/^PPid:\s+(\d+)/m.exec(await readFile(`/proc/${appsDaemon.pid}/status`, 'utf8'))![1])).toBe(agentBefore);
    expect((await health()).version).toBe(VERSION);

    // Requests through nginx, one after another, for the whole upgrade.
    let upgrading = true;
    const answers = { ok: 0, failed: [] as string[] };
    const traffic = (async () => {
      while (upgrading) {
        try {
          const res = await get(host!.address, SERVER_NAME, '/');
          if (res.status === 200) answers.ok++;
          else answers.failed.push(`status ${res.status}`);
        } catch (error) {
          answers.failed.push((error as Error).message);
        }
      }
    })();
    const started = Date.now();
    let upgraded;
    try {
      upgraded = await cli(['upgrade'], 600_000, { main: next.controllerMain });
    } finally {
      upgrading = false;
      await traffic;
    }
    figures.upgradeMs = Date.now() - started;
    figures.upgradeRequests = answers.ok;
    expect(upgraded.code, upgraded.stderr).toBe(0);
    expect(upgraded.stderr).toMatch(new RegExp(`upgrade: agent ${VERSION.replace(/\./g, '\\.')}-[0-9a-f]{12} → ${next.version.replace(/\./g, '\\.')}-[0-9a-f]{12} \\(pid [0-9]+\\)`));
    expect(answers.failed).toEqual([]);
    expect(answers.ok).toBeGreaterThan(0);

    expect(await health()).toMatchObject({ version: next.version });
    expect(await agentPid()).not.toBe(agentBefore);
    expect(await appPids()).toEqual(pidsBefore);
    expect((await onBox(['readlink', '/opt/slipway/agent/current'])).trim()).toMatch(new RegExp(`^${next.version.replace(/\./g, '\\.')}-[0-9a-f]{12}$`));
    // The version check on connect accepts the pair from either side (same API version).
    for (const main of [next.controllerMain, undefined]) {
      const status = await cli(['status'], 120_000, main ? { main } : {});
      expect(status.code, status.stderr).toBe(0);
    }
    // Upgrading again to the same agent changes nothing.
    const again = await cli(['upgrade'], 600_000, { main: next.controllerMain });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('nothing changed');
  }, 900_000);
  it('a host whose agent runs without group adm (set up before it was needed): --check names it; setup adds it and restarts only the agent\'s PM2 daemon', async () => {
    await onBox(['gpasswd', '-d', 'slipway', 'adm']);
    await runUnitLine('ExecStop');
    await runUnitLine('ExecStart');
    await waitFor(async () => (await cli(['status'], 120_000, { main: next.controllerMain })).code === 0, { timeoutMs: 60_000, intervalMs: 250, description: 'the agent to answer without adm' });
    const pidsBefore = await appPids();
    const checked = await cli(['setup', '--check'], 600_000, { main: next.controllerMain });
    expect(checked.code).toBe(3);
    expect(checked.stderr).toMatch(/drift +user: slipway is not in group adm/);
    expect(checked.stderr).toMatch(/drift +agent running: the running agent is not in group adm/);

    const fixed = await cli(['setup'], 600_000, { main: next.controllerMain });
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stderr).toMatch(/setup: changed user, agent running;/);
    const agent = (await boxProcesses()).find((p) => p.cmd.includes('dist/agent/main.js'))!;
    const adm = Number((await onBox(['getent', 'group', 'adm'])).split(':')[2]);
    expect(/^Groups:(.*)$/m.exec(await readFile(`/proc/${agent.pid}/status`, 'utf8'))![1]!.trim().split(/\s+/).map(Number)).toContain(adm);
    expect(await appPids()).toEqual(pidsBefore);
    expect((await cli(['setup'], 600_000, { main: next.controllerMain })).stderr).toContain('setup: nothing changed');
  }, 300_000);

  it('a reload nginx refuses (a route on a port another program holds) is reported with nginx\'s reason from its error log', async () => {
    const PORT = 8081;
    // The host owner allows the app a second port (agent.json is theirs) and restarts the agent to read it.
    const configPath = path.join(host!.root, 'etc', 'slipway', 'agent.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { apps: Record<string, { listen: { ports: number[] }; serverNames: string[] }> };
    config.apps[APP]!.listen.ports = [80, PORT];
    config.apps[APP]!.serverNames = [SERVER_NAME, 'alt.test'];
    await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
    const agentBefore = (await boxProcesses()).find((p) => p.cmd.includes('dist/agent/main.js'))!;
    process.kill(agentBefore.pid, 'SIGTERM');
    await waitFor(async () => (await boxProcesses()).some((p) => p.cmd.includes('dist/agent/main.js') && p.pid !== agentBefore.pid) && (await cli(['status'], 120_000, { main: next.controllerMain })).code === 0,
      { timeoutMs: 60_000, intervalMs: 250, description: 'PM2 to restart the agent with the new config' });

    // Another program on the box holds the port (nginx -t does not mind; the master's reload fails).
    const squatter: ChildProcess = spawn(netns!.exec[0]!, [...netns!.exec.slice(1), process.execPath, '-e', `require('node:net').createServer((s) => s.end()).listen(${PORT}, '0.0.0.0')`], { stdio: 'ignore' });
    try {
      await waitFor(() => new Promise<boolean>((resolve) => {
        const socket = net.connect(PORT, host!.address, () => { socket.destroy(); resolve(true); });
        socket.on('error', () => resolve(false));
      }), { timeoutMs: 15_000, description: `the squatter to listen on ${PORT} in the box's namespace` });
      await repo.commit({ 'deploy.spec.json': `${JSON.stringify({ ...SPEC, routes: [...SPEC.routes, { serverNames: ['alt.test'], listenPort: PORT, process: 'web' }] }, null, 2)}\n` }, 'a route on a taken port');
      const pushed = await cli(['push'], 600_000, { main: next.controllerMain });
      const output = pushed.stdout + pushed.stderr;
      expect(pushed.code, output).toBe(3);
      expect(output).toContain(`bind() to 0.0.0.0:${PORT} failed (98: Address already in use)`);
      expect(output).toContain('/var/log/nginx/error.log');
      expect(output).toContain(`ss -ltnp 'sport = :${PORT}'`);
      expect(output).not.toContain('could not be read');
    } finally {
      squatter.kill('SIGKILL');
    }
    // The live release still serves on port 80.
    expect((await get(host!.address, SERVER_NAME, '/')).status).toBe(200);
  }, 300_000);

});
