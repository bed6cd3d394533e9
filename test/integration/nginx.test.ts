import { expectSlipwayError } from '../helpers/expect-error.js';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import http, { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { httpGet } from '../../agent/health.js';
import { NginxController, type NginxProbe } from '../../agent/nginx/controller.js';
import { renderAppConfig } from '../../agent/nginx/render.js';
import { legacyRenderInput } from '../../agent/nginx/legacy-input.js';
import { SlipwayError } from '../../contract/errors.js';
import { startNginx, type NginxHandle } from '../helpers/nginx.js';
import { squatPort } from '../helpers/port-squatter.js';
import { waitFor } from '../helpers/wait.js';

const TEMPLATE_DIR = fileURLToPath(new URL('../../nginx/', import.meta.url));
const HOST = 'shop.test';
const release = (n: number) => n.toString(16).padStart(40, '0');

interface Backend { port: number; server: Server }

async function startBackend(body: string): Promise<Backend> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('backend has no port');
  return { port: address.port, server };
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of (await fs.readdir(dir)).sort()) files[name] = await fs.readFile(path.join(dir, name), 'utf8');
  return files;
}

describe('NginxController against a real nginx', () => {
  let nginx: NginxHandle;
  let controller: NginxController;
  let controllerCommand: string[];
  let scratch: string;
  let commandLog: string;
  let blue: Backend;
  let green: Backend;
  let generation = 0;
  let switchDir: string;

  /** Every nginx invocation the controller makes, as argument strings (from the wrapper script). */
  const invocations = async () => (await fs.readFile(commandLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);

  /** An include whose default slot `slot` runs release(gen); the other slot has no release. */
  const render = (app: string, slot: 'blue' | 'green', gen: number, templateDir = TEMPLATE_DIR, port = nginx.port) =>
    renderAppConfig(legacyRenderInput({
      app, slot, generation: gen, switchDir: controller.switchDirOf(app),
      releases: { blue: slot === 'blue' ? release(gen) : null, green: slot === 'green' ? release(gen) : null },
      config: {
        slots: { blue: { port: blue.port }, green: { port: green.port } },
        public: { listenHost: '127.0.0.1', listenPort: port, serverNames: [`${app}.test`] },
      },
    }), { templateDir });

  const probe = (app: string, gen: number, port = nginx.port): NginxProbe => ({
    url: `http://127.0.0.1:${port}/`,
    hostHeader: `${app}.test`,
    // The generation marks the config; the release comes from the switch flag, which "shop" has none of.
    expectHeaders: { 'x-slipway-generation': String(gen) },
  });

  const get = (host: string, port = nginx.port) => httpGet(`http://127.0.0.1:${port}/`, { timeoutMs: 3_000, headers: { host } });

  beforeAll(async () => {
    nginx = await startNginx();
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-nginx-test-'));
    commandLog = path.join(scratch, 'nginx-commands.log');
    // Beside the include dir: nginx's workers ("nobody" here) must be able to reach the flags.
    switchDir = path.join(path.dirname(nginx.includeDir), 'switch');
    // A wrapper that records each invocation, so "no reload was sent" is observed, not inferred.
    const wrapper = path.join(scratch, 'nginx-wrapper');
    await fs.writeFile(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${commandLog}'\nexec nginx "$@"\n`, { mode: 0o755 });
    controllerCommand = [wrapper, ...nginx.command.slice(1)];
    controller = new NginxController({
      command: controllerCommand,
      pidFile: nginx.pidFile,
      includeDir: nginx.includeDir,
      switchDir,
      errorLogPath: nginx.errorLogPath,
      proveTimeoutMs: 3_000,
    });
    blue = await startBackend('hello from blue');
    green = await startBackend('hello from green');
  });

  afterAll(async () => {
    await nginx?.stop();
    for (const backend of [blue, green]) await new Promise((resolve) => backend?.server.close(resolve));
    await fs.rm(scratch, { recursive: true, force: true });
  });

  beforeEach(async () => {
    await fs.rm(commandLog, { force: true });
  });

  it('answers 404 from the default server while no app is configured', async () => {
    const response = await get(HOST);
    expect(response.status).toBe(404);
    expect(response.headers['x-slipway-generation']).toBeUndefined();
  });

  it('applies a first config and serves its markers and backend through nginx', async () => {
    generation += 1;
    const config = render('shop', 'blue', generation);
    const timings = await controller.apply({ app: 'shop', config, probe: probe('shop', generation) });

    expect(timings.testMs).toBeGreaterThanOrEqual(0);
    expect(timings.reloadMs).toBeGreaterThanOrEqual(0);
    expect(timings.proveMs).toBeGreaterThanOrEqual(0);
    const response = await get(HOST);
    expect(response.status).toBe(200);
    expect(response.body).toBe('hello from blue');
    // No switch flag: the slot rendered as the fallback serves, and its release is not in the include.
    expect(response.headers['x-slipway-switch']).toBe('default');
    expect(response.headers['x-slipway-release']).toBe('unknown');
    expect(response.headers['x-slipway-slot']).toBe('blue');
    expect(response.headers['x-slipway-generation']).toBe(String(generation));
    expect(await controller.currentConfig('shop')).toBe(config);
    // The proven config becomes last-good; no staging or temp file is left behind.
    expect(await snapshot(nginx.includeDir)).toEqual({ 'shop.conf': config, 'shop.conf.last-good': config });
    expect((await invocations()).map((line) => line.split(' ').slice(-2).join(' '))).toEqual([`${nginx.errorLogPath} -t`, '-s reload']);
  });

  it('switches to the other backend and records it as last-good', async () => {
    const before = await fs.readFile(path.join(nginx.includeDir, 'shop.conf'), 'utf8');
    const workersBefore = nginx.workerPids();
    generation += 1;
    await controller.apply({ app: 'shop', config: render('shop', 'green', generation), probe: probe('shop', generation) });

    // Once apply returns, no connection may land on a worker of the old config any more (nginx
    // keeps old and new workers accepting side by side for ~100 ms after a reload).
    const responses = [];
    for (let i = 0; i < 20; i++) responses.push(await get(HOST));
    expect(responses.map((r) => `${r.body} ${r.headers['x-slipway-generation']}`)).toEqual(Array(20).fill(`hello from green ${generation}`));
    expect(responses[0]!.headers['x-slipway-slot']).toBe('green');
    // last-good follows the last config proven live; the one before it is gone.
    expect(before).toContain('set $slipway_slot blue;');
    expect(await fs.readFile(path.join(nginx.includeDir, 'shop.conf.last-good'), 'utf8'))
      .toBe(await fs.readFile(path.join(nginx.includeDir, 'shop.conf'), 'utf8'));
    // A real reload happened: the master replaced its workers.
    expect(nginx.workerPids().some((pid) => !workersBefore.includes(pid))).toBe(true);
  });

  it('rejects a config nginx -t refuses: live file byte-identical, nothing else touched, no reload sent', async () => {
    // Unrelated files in the include dir must survive untouched.
    await fs.writeFile(path.join(nginx.includeDir, 'other.conf'), 'map $host $slipway_test_other { default 1; }\n');
    await fs.writeFile(path.join(nginx.includeDir, 'README.txt'), 'not nginx config\n');
    const before = await snapshot(nginx.includeDir);
    const liveGeneration = generation;

    const brokenTemplates = path.join(scratch, 'broken-template');
    await fs.mkdir(brokenTemplates, { recursive: true });
    const template = await fs.readFile(path.join(TEMPLATE_DIR, 'app.conf.njk'), 'utf8');
    await fs.writeFile(path.join(brokenTemplates, 'app.conf.njk'), template.replace('keepalive 16;', 'keepalive 16;\n    slipway_bogus_directive on;'));
    const broken = render('shop', 'blue', liveGeneration + 1, brokenTemplates);

    const error = await expectSlipwayError(
      controller.apply({ app: 'shop', config: broken, probe: probe('shop', liveGeneration + 1) }), 'nginx_config_invalid');
    expect(error.status).toBe(400);
    // nginx's own words, pointing at the rendered file.
    expect(error.message).toContain('[emerg] unknown directive "slipway_bogus_directive"');
    expect(error.message).toContain(path.join(nginx.includeDir, 'shop.conf'));
    expect(error.hint).toContain('unchanged');

    expect(await snapshot(nginx.includeDir)).toEqual(before);
    const calls = await invocations();
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/ -t$/);
    // The master still runs the old config: same backend, same generation.
    const response = await get(HOST);
    expect(response.body).toBe('hello from green');
    expect(response.headers['x-slipway-generation']).toBe(String(liveGeneration));

    await fs.rm(path.join(nginx.includeDir, 'other.conf'));
    await fs.rm(path.join(nginx.includeDir, 'README.txt'));
  });

  it('removes a rejected first config of a new app without a trace', async () => {
    const before = await snapshot(nginx.includeDir);
    const error = await expectSlipwayError(controller.apply({
      app: 'fresh',
      config: 'server { listen 127.0.0.1:1; server_name fresh.test; proxy_pass; }\n',
      probe: probe('fresh', 1),
    }), 'nginx_config_invalid');
    expect(error.message).toContain('[emerg]');
    expect(await snapshot(nginx.includeDir)).toEqual(before);
    expect(await controller.currentConfig('fresh')).toBeNull();
    expect((await invocations()).some((line) => line.endsWith('-s reload'))).toBe(false);
  });

  it('blames the right file when the broken config is not the one being applied', async () => {
    const foreign = path.join(nginx.includeDir, 'hand-edited.conf');
    await fs.writeFile(foreign, 'this_is_not_a_directive;\n');
    try {
      const before = await snapshot(nginx.includeDir);
      const error = await expectSlipwayError(controller.apply({
        app: 'shop', config: render('shop', 'blue', generation + 1), probe: probe('shop', generation + 1),
      }), 'nginx_config_invalid');
      expect(error.message).toContain(foreign);
      expect(error.hint).toContain('did not write');
      expect(await snapshot(nginx.includeDir)).toEqual(before);
    } finally {
      await fs.rm(foreign);
    }
  });

  /** A controller that gives up proving after 1 s: nginx itself retries a taken port for 2.5 s. */
  const impatient = (errorLogPath = nginx.errorLogPath) => new NginxController({
    command: controllerCommand, pidFile: nginx.pidFile, includeDir: nginx.includeDir, switchDir,
    errorLogPath, proveTimeoutMs: 1_000,
  });

  /** Applies an include for a new app listening on a port another program holds. */
  const applyOnTakenPort = async (controllerFor: NginxController, gen: number) => {
    const squatter = await squatPort({ nginxErrorLog: nginx.errorLogPath });
    try {
      const error = await expectSlipwayError(controllerFor.apply({
        app: 'clash',
        config: render('clash', 'blue', gen, TEMPLATE_DIR, squatter.port),
        probe: probe('clash', gen, squatter.port),
      }), 'nginx_reload_not_applied');
      return { error, port: squatter.port };
    } finally {
      await squatter.release();
    }
  };

  it('restores and reloads the old config when nginx accepts the file but does not apply it', async () => {
    // nginx -t does not bind sockets, so a listen port held by another program passes the test;
    // the reload then fails inside the master, which keeps its old config while "-s reload" exits 0.
    const before = await snapshot(nginx.includeDir);
    const liveGeneration = generation;
    const { error } = await applyOnTakenPort(impatient(), 900);
    expect(error.status).toBe(502);
    expect(error.details?.join('\n')).toContain('Address already in use');
    expect(error.details?.join('\n')).toContain('the previous config was restored and nginx reloaded again');
    expect(await snapshot(nginx.includeDir)).toEqual(before);
    expect((await invocations()).filter((line) => line.endsWith('-s reload'))).toHaveLength(2);
    const response = await get(HOST);
    expect(response.body).toBe('hello from green');
    expect(response.headers['x-slipway-generation']).toBe(String(liveGeneration));
  });

  it('quotes nginx\'s own reason in the message and hint when a reload is not applied', async () => {
    const { error, port } = await applyOnTakenPort(impatient(), 901);
    // What the CLI prints of a failed rollout is the message and the hint, not the details.
    expect(error.message).toContain(`bind() to 127.0.0.1:${port} failed (98: Address already in use)`);
    expect(error.message).toContain(nginx.errorLogPath);
    expect(error.message).not.toMatch(/\d{4}\/\d\d\/\d\d/);
    expect(error.hint).toContain(`127.0.0.1:${port}`);
    expect(error.hint).toContain(`ss -ltnp 'sport = :${port}'`);
    expect(error.hint).toContain('traffic did not move');
  });

  it('says where it looked, and what to set, when nginx\'s error log cannot be read', async () => {
    const absent = path.join(scratch, 'no-such-dir', 'error.log');
    const { error } = await applyOnTakenPort(impatient(absent), 902);
    expect(error.message).toContain(absent);
    expect(error.message).toContain('could not be read');
    expect(error.hint).toContain('nginx.errorLogPath');
    expect(error.hint).toContain('traffic did not move');
    expect(await controller.currentConfig('clash')).toBeNull();
  });

  it('blames Slipway\'s include for a bind error nginx -t reports without naming a file', async () => {
    const before = await snapshot(nginx.includeDir);
    const liveGeneration = generation;
    const include = path.join(nginx.includeDir, 'shop.conf');
    // An address that is not this machine's: nginx -t binds to test it, and names no file.
    const unbindable = render('shop', 'blue', liveGeneration + 1).replace(`listen 127.0.0.1:${nginx.port};`, `listen 192.0.2.1:${nginx.port};`);
    expect(unbindable).toContain('listen 192.0.2.1:');
    const error = await expectSlipwayError(
      controller.apply({ app: 'shop', config: unbindable, probe: probe('shop', liveGeneration + 1) }), 'nginx_config_invalid');
    expect(error.message).toContain(`bind() to 192.0.2.1:${nginx.port} failed`);
    expect(error.message).not.toContain(include);
    expect(error.hint).toContain(include);
    expect(error.hint).not.toContain('did not write');
    expect(error.hint).toContain('unchanged');
    expect(await snapshot(nginx.includeDir)).toEqual(before);
    expect((await invocations()).some((line) => line.endsWith('-s reload'))).toBe(false);
    expect((await get(HOST)).headers['x-slipway-generation']).toBe(String(liveGeneration));
  });

  it('serialises applies: a broken candidate of one app cannot fail a concurrent apply of another', async () => {
    generation += 1;
    const good = controller.apply({ app: 'shop', config: render('shop', 'blue', generation), probe: probe('shop', generation) });
    const bad = controller.apply({ app: 'fresh', config: 'not_a_directive;\n', probe: probe('fresh', 1) });
    const [goodResult, badResult] = await Promise.allSettled([good, bad]);
    expect(goodResult.status).toBe('fulfilled');
    expect(badResult.status).toBe('rejected');
    expect(((badResult as PromiseRejectedResult).reason as SlipwayError).code).toBe('nginx_config_invalid');
    const response = await get(HOST);
    expect(response.body).toBe('hello from blue');
    expect(response.headers['x-slipway-generation']).toBe(String(generation));
    expect(await controller.currentConfig('fresh')).toBeNull();
  });

  describe('switching by the flag', () => {
    const both = (gen: number, slot: 'blue' | 'green' = 'blue') => renderAppConfig(legacyRenderInput({
      app: 'flip', slot, generation: gen, switchDir: controller.switchDirOf('flip'),
      releases: { blue: release(1), green: release(2) },
      config: {
        slots: { blue: { port: blue.port }, green: { port: green.port } },
        public: { listenHost: '127.0.0.1', listenPort: nginx.port, serverNames: ['flip.test'] },
      },
    }), { templateDir: TEMPLATE_DIR });
    const flipProbe = (slot: 'blue' | 'green'): NginxProbe => ({
      url: `http://127.0.0.1:${nginx.port}/`,
      hostHeader: 'flip.test',
      expectHeaders: { 'x-slipway-slot': slot, 'x-slipway-release': release(slot === 'blue' ? 1 : 2), 'x-slipway-switch': 'file' },
    });

    beforeAll(async () => {
      expect(await controller.liveFlag('flip')).toBeNull();
      expect(await controller.ensureFlag('flip', 'blue', { blue: release(1), green: release(2) })).toBe('blue');
      // An existing flag is never moved by ensureFlag.
      expect(await controller.ensureFlag('flip', 'green', { blue: release(1), green: release(2) })).toBe('blue');
      await controller.apply({ app: 'flip', config: both(500), probe: { ...flipProbe('blue'), expectHeaders: { ...flipProbe('blue').expectHeaders, 'x-slipway-generation': '500' } } });
    });

    it('moves traffic with no nginx command, no new workers, and the client connection kept', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const ask = () => new Promise<{ body: string; slot: string | undefined; socket: string }>((resolve, reject) => {
        const request = http.get({ host: '127.0.0.1', port: nginx.port, path: '/', agent, headers: { host: 'flip.test' } }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => { body += chunk; });
          response.on('end', () => resolve({ body, slot: response.headers['x-slipway-slot'] as string | undefined, socket: `${request.socket?.localPort}` }));
        });
        request.on('error', reject);
      });
      try {
        // Workers of an earlier config finish their open connections before they exit; only the
        // current one counts, or one leaving mid-test would look like a worker change. Right after a
        // reload the old worker may not have been told to shut down yet (its title is unchanged), so
        // wait for exactly the configured one worker (test/helpers/nginx.ts: worker_processes 1).
        const workers = await waitFor(async () => {
          const pids = nginx.workerPids();
          return pids.length === 1 && !(await isShuttingDown(pids[0]!)) ? pids : null;
        }, { timeoutMs: 60_000, description: 'workers of earlier nginx configs to exit' });
        await fs.rm(commandLog, { force: true });
        const first = await ask();
        expect(first).toMatchObject({ body: 'hello from blue', slot: 'blue' });

        const timings = await controller.flip({ app: 'flip', slot: 'green', releaseId: release(2), probe: flipProbe('green') });
        expect(timings.proveMs).toBeGreaterThanOrEqual(0);
        const second = await ask();
        expect(second).toMatchObject({ body: 'hello from green', slot: 'green' });
        // The same client connection carried both answers: nothing was closed under it.
        expect(second.socket).toBe(first.socket);
        expect(await controller.liveFlag('flip')).toBe('green');
        expect(await invocations()).toEqual([]);
        expect(nginx.workerPids()).toEqual(workers);

        await controller.flip({ app: 'flip', slot: 'blue', releaseId: release(1), probe: flipProbe('blue') });
        expect(await ask()).toMatchObject({ body: 'hello from blue', slot: 'blue', socket: first.socket });
      } finally {
        agent.destroy();
        // The next cases start from blue, whatever failed here.
        if (await controller.liveFlag('flip') !== 'blue') await controller.flip({ app: 'flip', slot: 'blue', releaseId: release(1), probe: flipProbe('blue') });
      }
    });

    it('puts the flag back when nginx cannot see it, and says how to fix the permissions', async () => {
      const dir = controller.switchDirOf('flip');
      await fs.chmod(dir, 0o700);
      try {
        const error = await expectSlipwayError(controller.flip({ app: 'flip', slot: 'green', releaseId: release(2), probe: flipProbe('green') }), 'nginx_switch_not_applied');
        expect(error.status).toBe(502);
        expect(error.hint).toContain(`${dir}/live/green`);
        expect(error.hint).toContain('searchable');
        expect(error.details?.join('\n')).toContain('x-slipway-switch: default');
        expect(await controller.liveFlag('flip')).toBe('blue');
      } finally {
        await fs.chmod(dir, 0o755);
      }
      const response = await get('flip.test');
      expect(response.body).toBe('hello from blue');
      expect(response.headers['x-slipway-switch']).toBe('file');
    });

    it('puts the flag back when the include does not route by it', async () => {
      // An include from a template without the flag checks: nginx keeps serving its one upstream.
      const plain = both(501).replace(/^\s*if \((-d |\$slipway_flag )[^\n]*\{[^}]*\}\n/gm, '');
      expect(plain).not.toContain('$slipway_flag $realpath_root');
      await controller.apply({ app: 'flip', config: plain, probe: { ...flipProbe('blue'), expectHeaders: { 'x-slipway-generation': '501' } } });
      const error = await expectSlipwayError(controller.flip({ app: 'flip', slot: 'green', releaseId: release(2), probe: flipProbe('green') }), 'nginx_switch_not_applied');
      expect(error.details?.join('\n')).toContain('x-slipway-slot: blue');
      expect(await controller.liveFlag('flip')).toBe('blue');
      expect((await get('flip.test')).body).toBe('hello from blue');
    });
  });

  describe('when nginx is not running, nothing is written', () => {
    let pidDir: string;
    beforeAll(async () => {
      pidDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-nginx-pid-'));
    });
    afterAll(async () => {
      await fs.rm(pidDir, { recursive: true, force: true });
    });

    const applyWith = async (pidFile: string) => {
      const before = await snapshot(nginx.includeDir);
      const withPid = new NginxController({ command: nginx.command, pidFile, includeDir: nginx.includeDir, switchDir });
      const error = await expectSlipwayError(withPid.apply({
        app: 'shop', config: render('shop', 'blue', 1000), probe: probe('shop', 1000),
      }), 'nginx_not_running');
      expect(error.status).toBe(503);
      expect(error.hint).toContain('start nginx');
      expect(await snapshot(nginx.includeDir)).toEqual(before);
      return error;
    };

    it('no pid file', async () => {
      const error = await applyWith(path.join(pidDir, 'absent.pid'));
      expect(error.message).toContain('does not exist');
    });

    it('pid file naming a process that has exited', async () => {
      const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      const file = path.join(pidDir, 'dead.pid');
      await fs.writeFile(file, `${exited.stdout}\n`);
      const error = await applyWith(file);
      expect(error.message).toContain('stale pid file');
    });

    it('pid file naming a live process that is not nginx', async () => {
      const file = path.join(pidDir, 'reused.pid');
      await fs.writeFile(file, `${process.pid}\n`);
      const error = await applyWith(file);
      expect(error.message).toContain('is not nginx');
    });

    it('garbage in the pid file', async () => {
      const file = path.join(pidDir, 'garbage.pid');
      await fs.writeFile(file, 'nginx\n');
      const error = await applyWith(file);
      expect(error.message).toContain('does not hold a pid');
    });

    it('a real master that crashed and left its pid file behind, then was cleaned up', async () => {
      const other = await startNginx();
      try {
        const controllerFor = new NginxController({ command: other.command, pidFile: other.pidFile, includeDir: other.includeDir, switchDir });
        expect((await controllerFor.checkMasterRunning()).pid).toBe(other.pid);

        await other.crash();
        await expect(fs.readFile(other.pidFile, 'utf8')).resolves.toContain(String(other.pid));
        const crashed = await expectSlipwayError(controllerFor.apply({
          app: 'shop', config: render('shop', 'blue', 1), probe: probe('shop', 1, other.port),
        }), 'nginx_not_running');
        expect(crashed.message).toContain('stale pid file');
        expect(await fs.readdir(other.includeDir)).toEqual([]);
      } finally {
        await other.stop();
      }
      const stopped = new NginxController({ command: other.command, pidFile: other.pidFile, includeDir: nginx.includeDir, switchDir });
      await expectSlipwayError(stopped.checkMasterRunning(), 'nginx_not_running');
    });
  });
});

/** nginx retitles a worker of a replaced config "nginx: worker process is shutting down". */
async function isShuttingDown(pid: number): Promise<boolean> {
  const title = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return title.includes('shutting down');
}
