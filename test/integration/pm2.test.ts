import { expectSlipwayError } from '../helpers/expect-error.js';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet } from '../../agent/health.js';
import { Pm2Adapter } from '../../agent/pm2.js';
import { checkDaemonProcess, probeDaemon } from '../../agent/pm2-daemon.js';
import { findSlotOrphans, stopOrphans } from '../../agent/pm2-orphans.js';
import { procEnviron, procStat } from '../../agent/procfs.js';
import { isAlive } from '../helpers/nginx.js';
import { createPm2Home, writeProbeRelease, type Pm2Home } from '../helpers/pm2.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

interface Identity { label: string | null; pid: number; cwd: string; script: string }

async function identity(port: number): Promise<Identity> {
  const response = await httpGet(`http://127.0.0.1:${port}/`, { timeoutMs: 1_000 });
  return JSON.parse(response.body) as Identity;
}

async function appEnv(port: number): Promise<Record<string, string>> {
  const response = await httpGet(`http://127.0.0.1:${port}/env`, { timeoutMs: 1_000 });
  return (JSON.parse(response.body) as { env: Record<string, string> }).env;
}

function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)) {
    const at = entry.indexOf('=');
    env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

const SECRET = `agent-secret-${process.pid}`;

describe('Pm2Adapter against a real PM2 daemon', () => {
  let home: Pm2Home;
  let pm2: Pm2Adapter;
  let scratch: string;
  let fakeUserHome: string;
  let releaseA: string;
  let releaseB: string;
  let port: number;
  const saved = { HOME: process.env.HOME, SECRET: process.env.SLIPWAY_TEST_AGENT_SECRET };

  beforeAll(async () => {
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pm2-test-'));
    // A private $HOME proves nothing lands in ~/.pm2, whatever other processes do with the real one.
    fakeUserHome = path.join(scratch, 'user-home');
    await fs.mkdir(fakeUserHome);
    process.env.HOME = fakeUserHome;
    // The agent's own environment holds a secret the apps must never see.
    process.env.SLIPWAY_TEST_AGENT_SECRET = SECRET;
    releaseA = path.join(scratch, 'releases', 'a');
    releaseB = path.join(scratch, 'releases', 'b');
    await writeProbeRelease(releaseA);
    await writeProbeRelease(releaseB);
    await fs.symlink(releaseA, path.join(scratch, 'current'));
    port = await freePort();
    home = await createPm2Home();
    pm2 = await Pm2Adapter.connect({ pm2Home: home.pm2Home, callTimeoutMs: 15_000 });
  });

  afterAll(async () => {
    await pm2?.killDaemon().catch(() => undefined);
    await home?.cleanup();
    await fs.rm(scratch, { recursive: true, force: true });
    for (const [key, value] of [['HOME', saved.HOME], ['SLIPWAY_TEST_AGENT_SECRET', saved.SECRET]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it('starts an app with an absolute cwd and env; describe shows pm_cwd and the app answers', async () => {
    const pwd = process.env.PWD;
    const { pid } = await pm2.start({
      name: 'probe-blue',
      script: path.join(releaseA, 'server.cjs'),
      cwd: releaseA,
      env: { PORT: String(port), LABEL: 'release-a' },
    });
    // PM2 writes the app's cwd into the caller's PWD; the adapter puts it back.
    expect(process.env.PWD).toBe(pwd);
    const described = await pm2.describe('probe-blue');
    expect(described).toMatchObject({ name: 'probe-blue', pid, pmCwd: releaseA, restarts: 0 });
    expect(['online', 'launching']).toContain(described!.status);

    const seen = await waitFor(() => identity(port), { timeoutMs: 10_000, description: 'the probe app to answer' });
    expect(seen).toEqual({ label: 'release-a', pid, cwd: releaseA, script: path.join(releaseA, 'server.cjs') });
    expect((await pm2.list()).map((p) => p.name)).toEqual(['probe-blue']);
  });

  it('passes the app only the env it was given (plus PATH): nothing from the agent leaks', async () => {
    const env = await appEnv(port);
    expect(env.LABEL).toBe('release-a');
    expect(env.PORT).toBe(String(port));
    expect(env.PATH).toBe(process.env.PATH);
    expect(env.SLIPWAY_TEST_AGENT_SECRET).toBeUndefined();
    expect(env.HOME).toBeUndefined();
    expect(Object.values(env)).not.toContain(SECRET);
    // The secret was there to leak: the daemon inherited the agent's environment.
    expect(environOf(home.daemonPid()!).SLIPWAY_TEST_AGENT_SECRET).toBe(SECRET);
  });

  it('refuses to start a name that already exists, leaving the running process alone', async () => {
    const before = await pm2.describe('probe-blue');
    const error = await expectSlipwayError(pm2.start({
      name: 'probe-blue', script: path.join(releaseB, 'server.cjs'), cwd: releaseB, env: { PORT: String(port), LABEL: 'release-b' },
    }), 'pm2_name_in_use');
    expect(error.hint).toContain('delete it first');
    expect(await pm2.describe('probe-blue')).toMatchObject({ pid: before!.pid, pmCwd: releaseA });
    expect((await identity(port)).label).toBe('release-a');
  });

  it('keeps the env isolated across an autorestart after a crash', async () => {
    const before = await pm2.describe('probe-blue');
    process.kill(before!.pid!, 'SIGKILL');
    const after = await waitFor(async () => {
      const now = await pm2.describe('probe-blue');
      return now && now.status === 'online' && now.pid !== before!.pid && now.restarts === 1 ? now : null;
    }, { timeoutMs: 10_000, description: 'PM2 to restart the killed app' });
    const seen = await waitFor(async () => {
      const id = await identity(port);
      return id.pid === after.pid ? id : null;
    }, { timeoutMs: 10_000, description: 'the restarted app to answer' });
    expect(seen.cwd).toBe(releaseA);
    expect((await appEnv(port)).SLIPWAY_TEST_AGENT_SECRET).toBeUndefined();
  });

  it('delete then start with a new release dir changes pm_cwd and the running code', async () => {
    const old = await pm2.describe('probe-blue');
    await pm2.delete('probe-blue');
    expect(await pm2.describe('probe-blue')).toBeNull();
    // delete returns once the process is gone, so the port is free for the new one.
    expect(isAlive(old!.pid!)).toBe(false);

    const { pid } = await pm2.start({
      name: 'probe-blue', script: path.join(releaseB, 'server.cjs'), cwd: releaseB, env: { PORT: String(port), LABEL: 'release-b' },
    });
    expect(await pm2.describe('probe-blue')).toMatchObject({ pid, pmCwd: releaseB, restarts: 0 });
    const seen = await waitFor(async () => {
      const id = await identity(port);
      return id.pid === pid ? id : null;
    }, { timeoutMs: 10_000, description: 'the new release to answer' });
    expect(seen).toEqual({ label: 'release-b', pid, cwd: releaseB, script: path.join(releaseB, 'server.cjs') });
  });

  it('refuses a symlinked cwd, relative paths and a missing script before PM2 sees them', async () => {
    const base = { name: 'probe-green', env: { PORT: String(await freePort()) } };
    const viaSymlink = await expectSlipwayError(pm2.start({
      ...base, script: path.join(releaseA, 'server.cjs'), cwd: path.join(scratch, 'current'),
    }), 'pm2_invalid_start');
    expect(viaSymlink.message).toContain(`resolves to ${releaseA}`);
    await expectSlipwayError(pm2.start({ ...base, script: 'server.cjs', cwd: releaseA }), 'pm2_invalid_start');
    await expectSlipwayError(pm2.start({ ...base, script: path.join(releaseA, 'missing.cjs'), cwd: releaseA }), 'pm2_invalid_start');
    await expectSlipwayError(pm2.start({ ...base, name: 'all', script: path.join(releaseA, 'server.cjs'), cwd: releaseA }), 'pm2_invalid_name');
    expect(await pm2.describe('probe-green')).toBeNull();
    expect((await pm2.list()).map((p) => p.name)).toEqual(['probe-blue']);
  });

  it('deleting a name PM2 does not know is fine; stopping one is a clear error', async () => {
    await expect(pm2.delete('never-started')).resolves.toBeUndefined();
    await expectSlipwayError(pm2.stop('never-started'), 'pm2_not_found');
    expect((await pm2.list()).map((p) => p.name)).toEqual(['probe-blue']);
  });

  it('stop keeps the process registered but not running', async () => {
    const running = await pm2.describe('probe-blue');
    await pm2.stop('probe-blue');
    const stopped = await pm2.describe('probe-blue');
    expect(stopped).toMatchObject({ status: 'stopped', pid: null, uptimeMs: 0 });
    expect(isAlive(running!.pid!)).toBe(false);
  });

  it('serialises concurrent calls', async () => {
    const portC = await freePort();
    const results = await Promise.all([
      pm2.start({ name: 'probe-c', script: path.join(releaseA, 'server.cjs'), cwd: releaseA, env: { PORT: String(portC) } }),
      pm2.describe('probe-c'),
      pm2.delete('probe-c'),
      pm2.describe('probe-c'),
    ]);
    // In call order: started, seen, deleted, gone.
    expect(results[1]).toMatchObject({ name: 'probe-c', pid: results[0].pid });
    expect(results[3]).toBeNull();
  });

  it('uses only the isolated PM2_HOME', async () => {
    expect(existsSync(path.join(fakeUserHome, '.pm2'))).toBe(false);
    const daemon = home.daemonPid();
    expect(daemon).not.toBeNull();
    expect(isAlive(daemon!)).toBe(true);
    expect(environOf(daemon!).PM2_HOME).toBe(home.pm2Home);
    expect(existsSync(path.join(home.pm2Home, 'rpc.sock'))).toBe(true);
    expect(existsSync(path.join(home.pm2Home, 'logs', 'probe-blue-out.log'))).toBe(true);
    // A second home in the same process is refused (PM2 keeps its paths in module state).
    await expectSlipwayError(Pm2Adapter.connect({ pm2Home: path.join(scratch, 'other-home') }), 'pm2_home_conflict');
  });

  it('killDaemon stops the apps and the daemon', async () => {
    const portD = await freePort();
    const { pid } = await pm2.start({ name: 'probe-d', script: path.join(releaseA, 'server.cjs'), cwd: releaseA, env: { PORT: String(portD) } });
    const daemon = home.daemonPid()!;
    await pm2.killDaemon();
    await waitFor(() => !isAlive(pid) && !isAlive(daemon), { timeoutMs: 10_000, description: 'app and daemon to exit' });
    await expectSlipwayError(pm2.list(), 'pm2_disconnected');
    expect(process.env.PM2_STATUS).toBeUndefined();
  });
});

/** Starts `fn` and says how long it took to settle, whichever way. */
async function timed<T>(promise: Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const started = Date.now();
  const [result] = await Promise.allSettled([promise]);
  return { ms: Date.now() - started, result: result! };
}

describe('Pm2Adapter when the PM2 daemon dies (SIGKILL of its God process)', () => {
  let home: Pm2Home;
  let pm2: Pm2Adapter;
  let scratch: string;
  let release: string;
  let script: string;
  let bluePort: number;
  let greenPort: number;
  let orphanPid: number;
  let firstDaemon: number;
  /** Every app pid this block started, killed by pid at the end whatever happened. */
  const started: number[] = [];
  const slotEnv = (slot: string, port: number) => ({ PORT: String(port), SLIPWAY_APP: 'probe', SLIPWAY_SLOT: slot, SLIPWAY_RELEASE: 'r'.repeat(40) });

  beforeAll(async () => {
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pm2-death-'));
    release = await fs.realpath(scratch).then((dir) => path.join(dir, 'release'));
    script = await writeProbeRelease(release);
    [bluePort, greenPort] = [await freePort(), await freePort()];
    home = await createPm2Home();
    pm2 = await Pm2Adapter.connect({ pm2Home: home.pm2Home, callTimeoutMs: 15_000 });
    const { pid } = await pm2.start({ name: 'probe-blue', script, cwd: release, env: slotEnv('blue', bluePort) });
    started.push(pid);
    orphanPid = pid;
    await waitFor(() => identity(bluePort).then((id) => id.pid === pid), { description: 'probe-blue to answer' });
    firstDaemon = home.daemonPid()!;
  });

  afterAll(async () => {
    await pm2?.killDaemon().catch(() => undefined);
    for (const pid of started) {
      if (isAlive(pid) && environOf(pid).PM2_HOME === home.pm2Home) process.kill(pid, 'SIGKILL');
    }
    await waitFor(() => started.every((pid) => !isAlive(pid)), { description: `pids ${started.join(', ')} to exit` });
    await home?.cleanup();
    await fs.rm(scratch, { recursive: true, force: true });
  });

  it('fails a call already waiting on the daemon, and every later call, within a second with pm2_daemon_down', async () => {
    expect(await probeDaemon(home.pm2Home)).toEqual({ up: true, pid: firstDaemon });
    // A stopped daemon never answers: the list waits on it, as a call in flight at a crash would.
    process.kill(firstDaemon, 'SIGSTOP');
    const waiting = timed(pm2.list());
    process.kill(firstDaemon, 'SIGKILL');
    const inFlight = await waiting;
    expect(inFlight.result.status).toBe('rejected');
    expect((inFlight.result as PromiseRejectedResult).reason).toMatchObject({ code: 'pm2_daemon_down' });
    expect(inFlight.ms).toBeLessThan(1_000);

    const calls: (() => Promise<unknown>)[] = [() => pm2.list(), () => pm2.describe('probe-blue'), () => pm2.delete('probe-blue'),
      () => pm2.start({ name: 'probe-green', script, cwd: release, env: slotEnv('green', greenPort) })];
    for (const call of calls) {
      const { ms, result } = await timed(call());
      expect(result.status).toBe('rejected');
      const error = (result as PromiseRejectedResult).reason as { code: string; message: string; hint: string };
      expect(error.code).toBe('pm2_daemon_down');
      // Dead, or (while the kernel has not reaped it) no longer readable as our daemon: down either way.
      expect(error.message).toMatch(new RegExp(`the PM2 daemon \\(pid ${firstDaemon}\\) is not running|pid ${firstDaemon} from pm2\\.pid is not the PM2 daemon`));
      expect(error.hint).toContain('deploy status');
      expect(ms).toBeLessThan(1_000);
    }
    expect(checkDaemonProcess(home.pm2Home)).toMatchObject({ up: false, pid: firstDaemon });
    expect((await probeDaemon(home.pm2Home)).up).toBe(false);
    // The app lives on outside PM2, and still answers.
    // Reparented once the kernel has carried out the daemon's exit (on a busy box, a moment after the kill).
    await waitFor(() => procStat(orphanPid)?.ppid !== firstDaemon, { timeoutMs: 10_000, description: `orphan ${orphanPid} to leave the dead daemon` });
    expect((await identity(bluePort)).pid).toBe(orphanPid);
  });

  it('restartDaemon brings up a new daemon that knows nothing of the old apps and never receives the refused calls', async () => {
    const { pid } = await pm2.restartDaemon();
    expect(pid).not.toBe(firstDaemon);
    expect(home.daemonPid()).toBe(pid);
    expect(await probeDaemon(home.pm2Home)).toEqual({ up: true, pid });
    expect(await pm2.list()).toEqual([]);
    expect(await pm2.describe('probe-green')).toBeNull();
  });

  it('finds the orphan by its environment (not a process PM2 runs), and stops it by pid', async () => {
    const { pid: managed } = await pm2.start({ name: 'probe-green', script, cwd: release, env: slotEnv('green', greenPort) });
    started.push(managed);
    const daemon = home.daemonPid()!;
    const orphans = findSlotOrphans(home.pm2Home, daemon);
    expect(orphans).toEqual([{ pid: orphanPid, startTime: procStat(orphanPid)!.startTime, app: 'probe', slot: 'blue', releaseId: 'r'.repeat(40) }]);
    // With no daemon named, PM2's own process counts as an orphan too: being older than the daemon is what tells them apart.
    expect(findSlotOrphans(home.pm2Home, null).map((o) => o.pid).sort()).toEqual([orphanPid, managed].sort());
    // A worker an app started detached (reparented away from the daemon, same environment) is not one either.
    const worker = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      env: { PATH: process.env.PATH, PM2_HOME: home.pm2Home, ...slotEnv('blue', bluePort) }, detached: true, stdio: 'ignore',
    });
    started.push(worker.pid!);
    await waitFor(() => procEnviron(worker.pid!)?.get('SLIPWAY_SLOT') === 'blue', { description: 'the detached worker to run' });
    expect(findSlotOrphans(home.pm2Home, daemon).map((o) => o.pid)).toEqual([orphanPid]);

    // A record whose start time no longer matches (a reused pid) is never signalled.
    await stopOrphans([{ ...orphans[0]!, startTime: orphans[0]!.startTime + 1 }], home.pm2Home);
    expect(isAlive(orphanPid)).toBe(true);

    await stopOrphans(orphans, home.pm2Home);
    expect(isAlive(orphanPid)).toBe(false);
    expect(isAlive(managed)).toBe(true);
    expect(isAlive(worker.pid!)).toBe(true);
    expect(await pm2.describe('probe-green')).toMatchObject({ status: 'online', pid: managed });
    expect(findSlotOrphans(home.pm2Home, daemon)).toEqual([]);
  });

  it('does not take a stale pid file for a live daemon', async () => {
    const fake = path.join(scratch, 'fake-home');
    await fs.mkdir(fake);
    await fs.writeFile(path.join(fake, 'pm2.pid'), String(process.pid));
    expect(checkDaemonProcess(fake)).toMatchObject({ up: false, pid: process.pid, reason: expect.stringContaining('stale pid file') });
    await fs.writeFile(path.join(fake, 'pm2.pid'), 'garbage');
    expect(checkDaemonProcess(fake)).toMatchObject({ up: false, pid: null });
  });
});
