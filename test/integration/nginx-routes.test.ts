import fs from 'node:fs/promises';
import http, { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NginxController, type NginxProbe } from '../../agent/nginx/controller.js';
import { renderAppConfig, type AppConfigInput, type RouteInput, type SlotInput } from '../../agent/nginx/render.js';
import { probeTargetOf } from '../../agent/rollout/public-address.js';
import type { Slot } from '../../contract/names.js';
import { startNginx, type NginxHandle } from '../helpers/nginx.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { acceptWebSocket, openWebSocket, type WebSocketClient } from '../helpers/websocket.js';

// Routes through a real nginx: the include for several processes, server names, paths, listen
// ports and per-route limits, switched by one flag flip without a reload.

const TEMPLATE_DIR = fileURLToPath(new URL('../../nginx/', import.meta.url));
const RELEASES: Record<Slot, string> = { blue: '0000000000b1-0000000000b1', green: '0000000000a2-0000000000a2' };
const SLOW_MS = 2_500;

/** An upstream process of one slot: answers "<slot>-<process> <METHOD> <url> <body bytes>", WebSocket messages with "<slot>-<process>: <text>". */
interface Backend { name: string; port: number; server: Server; sockets: Set<Socket> }

async function startBackend(name: string): Promise<Backend> {
  const sockets = new Set<Socket>();
  const server = createServer((request, response) => {
    let bytes = 0;
    request.on('data', (chunk: Buffer) => { bytes += chunk.length; });
    request.on('end', () => {
      const answer = () => {
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.end(`${name} ${request.method} ${request.url} ${bytes}`);
      };
      if (request.url?.endsWith('/slow')) setTimeout(answer, SLOW_MS);
      else answer();
    });
  });
  server.on('connection', (socket) => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)); });
  server.on('upgrade', (request, socket) => acceptWebSocket(request, socket, (text) => `${name}: ${text}`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('backend has no port');
  return { name, port: address.port, server, sockets };
}

async function stopBackend(backend: Backend | undefined): Promise<void> {
  if (!backend) return;
  for (const socket of backend.sockets) socket.destroy();
  await new Promise((resolve) => backend.server.close(resolve));
}

interface Answer { status: number; body: string; headers: http.IncomingHttpHeaders }

/** One request on a fresh connection to 127.0.0.1:<port>. */
function ask(port: number, host: string, path: string, options: { method?: string; body?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1', port, path, method: options.method ?? 'GET', agent: false, timeout: 10_000,
      headers: { host, ...(options.body ? { 'content-length': String(options.body.length) } : {}) },
    }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, headers: response.headers }));
    });
    request.on('timeout', () => request.destroy(new Error(`request to ${host}${path} timed out`)));
    request.on('error', reject);
    request.end(options.body);
  });
}

/** nginx retitles a worker of a replaced config "nginx: worker process is shutting down". */
async function isShuttingDown(pid: number): Promise<boolean> {
  const title = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return title.includes('shutting down');
}

describe('nginx routes against a real nginx', () => {
  let nginx: NginxHandle;
  let controller: NginxController;
  let adminPort: number;
  const backends: Record<string, Backend> = {};
  let generation = 0;

  const route = (serverNames: string[], path: string, process: string, extra: Partial<RouteInput> = {}): RouteInput =>
    ({ listenPort: nginx.port, serverNames, path, process, websocket: false, ...extra });

  /**
   * Both slots run "web" and "api". Routes common to both: shop.test and www.shop.test "/" to web
   * (WebSockets), shop.test "/api/" to api with a 1 KiB body limit and a 1 s read timeout. Only
   * blue: api.test "/" to api. Only green: admin.test on a second listen port to api.
   */
  const slotInput = (slot: Slot): SlotInput => ({
    releaseId: RELEASES[slot],
    ports: { web: backends[`${slot}-web`]!.port, api: backends[`${slot}-api`]!.port },
    routes: [
      route(['shop.test', 'www.shop.test'], '/', 'web', { websocket: true }),
      route(['shop.test'], '/api/', 'api', { clientMaxBodySize: '1k', readTimeoutSeconds: 1 }),
      ...(slot === 'blue' ? [route(['api.test'], '/', 'api')] : [route(['admin.test'], '/', 'api', { listenPort: adminPort })]),
    ],
  });

  const input = (app: string, slot: Slot, gen: number, slots: Record<Slot, SlotInput>): AppConfigInput => ({
    app, slot, generation: gen, switchDir: controller.switchDirOf(app), listenHost: '127.0.0.1', slots,
  });

  /** What the agent does: probe through one route of the slot, expecting its markers (and the generation after a reload). */
  const probeFor = (config: AppConfigInput, slot: Slot, extra: Record<string, string> = {}): NginxProbe | null => {
    const target = probeTargetOf(config, slot);
    return target && {
      url: `${target.baseUrl}${target.path}`,
      hostHeader: target.hostHeader,
      expectHeaders: { 'x-slipway-slot': slot, 'x-slipway-release': config.slots[slot].releaseId ?? 'none', 'x-slipway-switch': 'file', ...extra },
    };
  };

  const applyShop = async (slot: Slot) => {
    generation += 1;
    const config = input('shop', slot, generation, { blue: slotInput('blue'), green: slotInput('green') });
    await controller.apply({ app: 'shop', config: renderAppConfig(config, { templateDir: TEMPLATE_DIR }), probe: probeFor(config, slot, { 'x-slipway-generation': String(generation) }) });
    return config;
  };

  const flipShop = async (slot: Slot) => {
    const config = input('shop', slot, generation, { blue: slotInput('blue'), green: slotInput('green') });
    return controller.flip({ app: 'shop', slot, releaseId: config.slots[slot].releaseId, probe: probeFor(config, slot) });
  };

  /** Every route's answer as "<host><path> <status> <body start>". */
  const routing = async () => {
    const lines: string[] = [];
    for (const [port, host, path] of [
      [nginx.port, 'shop.test', '/'], [nginx.port, 'www.shop.test', '/x'], [nginx.port, 'shop.test', '/api/items'],
      [nginx.port, 'www.shop.test', '/api/items'], [nginx.port, 'api.test', '/v1'], [adminPort, 'admin.test', '/'],
    ] as const) {
      const answer = await ask(port, host, path);
      lines.push(`${host}${path} ${answer.status} ${answer.status === 200 ? answer.body.split(' ')[0] : ''}`.trim());
    }
    return lines;
  };

  /** Waits until no worker of an earlier config is left, then returns the workers. */
  const settledWorkers = async () => {
    await waitFor(async () => (await Promise.all(nginx.workerPids().map(isShuttingDown))).every((shutting) => !shutting),
      { timeoutMs: 60_000, description: 'workers of earlier nginx configs to exit' });
    return nginx.workerPids();
  };

  beforeAll(async () => {
    nginx = await startNginx();
    adminPort = await freePort();
    controller = new NginxController({
      command: nginx.command, pidFile: nginx.pidFile, includeDir: nginx.includeDir,
      // Beside the include dir: nginx's workers ("nobody" here) must be able to reach the flags.
      switchDir: `${nginx.prefix}/switch`, errorLogPath: nginx.errorLogPath, proveTimeoutMs: 5_000,
    });
    for (const name of ['blue-web', 'blue-api', 'green-web', 'green-api', 'other-blue-web']) backends[name] = await startBackend(name);
    await controller.ensureFlag('shop', 'blue', RELEASES);
    await applyShop('blue');
  });

  afterAll(async () => {
    await nginx?.stop();
    for (const backend of Object.values(backends)) await stopBackend(backend);
  });

  it('nginx accepts the include; every server name, path and listen port reaches its process of the live slot', async () => {
    const include = await controller.currentConfig('shop');
    // Two blocks on the main port (shop.test has /api/, www.shop.test does not) plus api.test and admin.test.
    expect(include?.match(/^server \{$/gm)).toHaveLength(4);
    expect(include).toContain(`listen 127.0.0.1:${adminPort};`);
    expect(await routing()).toEqual([
      'shop.test/ 200 blue-web',
      'www.shop.test/x 200 blue-web',
      'shop.test/api/items 200 blue-api',
      // www.shop.test has no /api/ route: its "/" serves it.
      'www.shop.test/api/items 200 blue-web',
      'api.test/v1 200 blue-api',
      // A route only green has answers 404 while blue is live.
      'admin.test/ 404',
    ]);
    // Every server block carries the markers the agent's proofs read, 404s included.
    for (const [port, host] of [[nginx.port, 'shop.test'], [nginx.port, 'www.shop.test'], [nginx.port, 'api.test'], [adminPort, 'admin.test']] as const) {
      const markers = await ask(port, host, '/');
      expect(markers.headers, host).toMatchObject({
        'x-slipway-slot': 'blue', 'x-slipway-release': RELEASES.blue, 'x-slipway-switch': 'file', 'x-slipway-generation': String(generation),
      });
    }
  });

  it('honours each route\'s body limit and read timeout, on that route only', async () => {
    const body = Buffer.alloc(2048, 'x');
    const limited = await ask(nginx.port, 'shop.test', '/api/upload', { method: 'POST', body });
    expect(limited.status).toBe(413);
    const open = await ask(nginx.port, 'shop.test', '/upload', { method: 'POST', body });
    expect(open).toMatchObject({ status: 200, body: 'blue-web POST /upload 2048' });
    const small = await ask(nginx.port, 'shop.test', '/api/upload', { method: 'POST', body: Buffer.alloc(512, 'x') });
    expect(small).toMatchObject({ status: 200, body: 'blue-api POST /api/upload 512' });

    const [timedOut, patient] = await Promise.all([ask(nginx.port, 'shop.test', '/api/slow'), ask(nginx.port, 'shop.test', '/slow')]);
    expect(timedOut.status).toBe(504);
    expect(patient).toMatchObject({ status: 200, body: 'blue-web GET /slow 0' });
  });

  it('moves every route at once with one flag flip: no reload, the same workers', async () => {
    const master = nginx.pid;
    const workers = await settledWorkers();
    const timings = await flipShop('green');
    expect(timings.proveMs).toBeGreaterThanOrEqual(0);
    expect(await routing()).toEqual([
      'shop.test/ 200 green-web',
      'www.shop.test/x 200 green-web',
      'shop.test/api/items 200 green-api',
      'www.shop.test/api/items 200 green-web',
      // The route only blue has now answers 404, and green's own route serves.
      'api.test/v1 404',
      'admin.test/ 200 green-api',
    ]);
    expect(nginx.workerPids()).toEqual(workers);
    expect(nginx.pid).toBe(master);

    await flipShop('blue');
    expect((await routing())[0]).toBe('shop.test/ 200 blue-web');
    expect(nginx.workerPids()).toEqual(workers);
  });

  it('keeps an established WebSocket on its slot across a flip while new ones go to the new slot', async () => {
    const sockets: WebSocketClient[] = [];
    try {
      const before = await openWebSocket({ port: nginx.port, host: 'shop.test' });
      sockets.push(before);
      expect(await before.ask('one')).toBe('blue-web: one');
      const workers = await settledWorkers();

      await flipShop('green');
      const after = await openWebSocket({ port: nginx.port, host: 'www.shop.test', path: '/chat' });
      sockets.push(after);
      expect(await after.ask('two')).toBe('green-web: two');
      expect(await before.ask('three')).toBe('blue-web: three');
      expect(await after.ask('four')).toBe('green-web: four');
      expect(nginx.workerPids()).toEqual(workers);
      // Plain requests on the WebSocket route still work beside the upgraded connections.
      expect((await ask(nginx.port, 'shop.test', '/')).body).toBe('green-web GET / 0');
    } finally {
      for (const socket of sockets) socket.close();
      await flipShop('blue');
    }
  });

  it('keeps upstream keepalive for ordinary requests on a WebSocket route (Connection mapped, not forced)', async () => {
    const backend = backends['blue-web']!;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = () => new Promise<string>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: nginx.port, path: '/', agent, headers: { host: 'shop.test' } }, (response) => {
          response.resume();
          response.on('end', () => resolve(String(response.headers['x-slipway-slot'])));
        }).on('error', reject);
      });
      // Closing idle upstream connections first makes the count exact: nginx reuses one after the first request.
      for (const socket of backend.sockets) socket.destroy();
      await waitFor(() => backend.sockets.size === 0, { description: 'blue-web connections to close' });
      for (let i = 0; i < 5; i++) expect(await get()).toBe('blue');
      expect(backend.sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('lets a second app\'s include coexist in the same http{} (its own upstreams, map and names)', async () => {
    const other = (slot: Slot): SlotInput => ({
      releaseId: RELEASES[slot],
      ports: slot === 'blue' ? { web: backends['other-blue-web']!.port } : {},
      routes: slot === 'blue' ? [route(['other.test'], '/', 'web', { websocket: true })] : [],
    });
    await controller.ensureFlag('other', 'blue', RELEASES);
    const config = input('other', 'blue', 1, { blue: other('blue'), green: other('green') });
    const include = renderAppConfig(config, { templateDir: TEMPLATE_DIR });
    expect(include).toContain('map $http_upgrade $slipway_other_connection');
    await controller.apply({ app: 'other', config: include, probe: probeFor(config, 'blue', { 'x-slipway-generation': '1' }) });
    expect((await ask(nginx.port, 'other.test', '/')).body).toBe('other-blue-web GET / 0');
    expect((await routing())[0]).toBe('shop.test/ 200 blue-web');
    const socket = await openWebSocket({ port: nginx.port, host: 'other.test' });
    try {
      expect(await socket.ask('hi')).toBe('other-blue-web: hi');
    } finally {
      socket.close();
    }
  });

  it('accepts every character a route path may hold', async () => {
    const odd = '/a._~!*+,=:@-/';
    const slot = (color: Slot): SlotInput => ({
      releaseId: RELEASES[color],
      ports: { web: backends[`${color}-web`]!.port, api: backends[`${color}-api`]!.port },
      routes: [route(['paths.test'], odd, 'api'), route(['paths.test'], '/x%41/', 'web'), route(['paths.test'], '/', 'web')],
    });
    await controller.ensureFlag('paths', 'blue', RELEASES);
    const config = input('paths', 'blue', 1, { blue: slot('blue'), green: slot('green') });
    await controller.apply({ app: 'paths', config: renderAppConfig(config, { templateDir: TEMPLATE_DIR }), probe: probeFor(config, 'blue', { 'x-slipway-generation': '1' }) });
    expect((await ask(nginx.port, 'paths.test', `${odd}z`)).body).toBe(`blue-api GET ${odd}z 0`);
    expect((await ask(nginx.port, 'paths.test', '/a._~')).body).toBe('blue-web GET /a._~ 0');
  });

  it('routes random route sets exactly as each slot\'s routes alone would (differential test against nginx)', async () => {
    // A port of its own: no other server there, so a "_" route is the catch-all, as on a box
    // where the app owns its port.
    const port = await freePort();
    // A small seeded generator, so a failure names a scenario that can be replayed.
    let seed = 12;
    const next = () => { seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31; return seed / 2 ** 31; };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const NAMES = ['a.test', 'b.test', '_', '*.w.test', 'x.w.test'];
    const PATHS = ['/', '/api', '/api/', '/api/v2/', '/static/', '/s'];
    const HOSTS = ['a.test', 'b.test', 'x.w.test', 'y.w.test', 'unknown.test'];
    const REQUESTS = ['/', '/api', '/api/x', '/api/v2', '/api/v2/y', '/apiary', '/static', '/static/z', '/s', '/sx', '/other'];
    const randomRoutes = (): RouteInput[] => {
      const routes: RouteInput[] = [];
      const taken = new Set<string>();
      for (let i = 0; i < 1 + Math.floor(next() * 6); i++) {
        const names = NAMES.filter(() => next() < 0.35);
        const path = pick(PATHS);
        if (names.length === 0 || names.some((name) => taken.has(`${name} ${path}`))) continue;
        for (const name of names) taken.add(`${name} ${path}`);
        routes.push(route(names, path, pick(['web', 'api']), { listenPort: port, websocket: next() < 0.5 }));
      }
      return routes;
    };
    /** nginx's choice of name for `host` among `names`: exact, else the longest leading wildcard, else "_". */
    const nameFor = (names: Set<string>, host: string): string | null => {
      if (names.has(host)) return host;
      const wildcards = [...names].filter((name) => name.startsWith('*.') && host.endsWith(name.slice(1)));
      if (wildcards.length > 0) return wildcards.reduce((a, b) => (b.length > a.length ? b : a));
      return names.has('_') ? '_' : null;
    };
    /**
     * What nginx must answer with only `routes` of `slot` (and a default server answering 404):
     * its 301 from "/x" to a route "/x/" when there is no route "/x", else its longest matching
     * prefix for the name the Host selects, else 404.
     */
    const expected = (routes: RouteInput[], slot: Slot, host: string, path: string) => {
      const name = nameFor(new Set(routes.flatMap((r) => r.serverNames)), host);
      const mine = routes.filter((r) => name !== null && r.serverNames.includes(name));
      if (mine.some((r) => r.path === `${path}/`) && !mine.some((r) => r.path === path)) return '301';
      const candidates = mine.filter((r) => path.startsWith(r.path));
      if (candidates.length === 0) return '404';
      const best = candidates.reduce((a, b) => (b.path.length > a.path.length ? b : a));
      return `200 ${slot}-${best.process}`;
    };

    await controller.ensureFlag('random', 'blue', RELEASES);
    let checked = 0;
    for (let scenario = 0; scenario < 8; scenario++) {
      const routes = { blue: randomRoutes(), green: randomRoutes() };
      const slotOf = (slot: Slot): SlotInput => ({
        releaseId: RELEASES[slot], ports: { web: backends[`${slot}-web`]!.port, api: backends[`${slot}-api`]!.port }, routes: routes[slot],
      });
      const live = (await controller.liveFlag('random'))!;
      const config = input('random', live, scenario + 1, { blue: slotOf('blue'), green: slotOf('green') });
      await controller.apply({
        app: 'random', config: renderAppConfig(config, { templateDir: TEMPLATE_DIR }), probe: probeFor(config, live, { 'x-slipway-generation': String(scenario + 1) }),
      });
      // A Host no block of the include names goes to the port's first block, which stands for a
      // default server only when the app has a catch-all: ask such Hosts only then.
      const union = new Set([...routes.blue, ...routes.green].flatMap((r) => r.serverNames));
      const hosts = HOSTS.filter((host) => nameFor(union, host) !== null);
      for (const slot of [live, live === 'blue' ? 'green' : 'blue'] as const) {
        if (slot !== live) await controller.flip({ app: 'random', slot, releaseId: config.slots[slot].releaseId, probe: probeFor(config, slot) });
        const seen: string[] = [];
        const want: string[] = [];
        for (const host of hosts) {
          for (const path of REQUESTS) {
            const answer = await ask(port, host, path);
            seen.push(`${host}${path} ${answer.status === 200 ? `200 ${answer.body.split(' ')[0]}` : String(answer.status)}`);
            want.push(`${host}${path} ${expected(routes[slot], slot, host, path)}`);
            checked += 1;
          }
        }
        expect(seen, `scenario ${scenario}, ${slot} live, routes ${JSON.stringify(routes)}`).toEqual(want);
      }
    }
    expect(checked).toBeGreaterThan(300);
  });

  it('applies and flips an app without routes with no HTTP proof: no server block, the reload proven by the workers', async () => {
    const empty: SlotInput = { releaseId: null, ports: {}, routes: [] };
    const config = input('idle', 'blue', 1, { blue: { ...empty, releaseId: RELEASES.blue }, green: empty });
    expect(probeFor(config, 'blue')).toBeNull();
    await controller.ensureFlag('idle', 'blue', { blue: RELEASES.blue, green: null });
    const applied = await controller.apply({ app: 'idle', config: renderAppConfig(config, { templateDir: TEMPLATE_DIR }), probe: null });
    expect(applied.provenBy).toBe('workers');
    expect(await controller.currentConfig('idle')).not.toMatch(/^server /m);
    expect(await controller.flip({ app: 'idle', slot: 'green', releaseId: null, probe: null })).toEqual({ proveMs: null });
    expect(await controller.liveFlag('idle')).toBe('green');
    expect((await routing())[0]).toBe('shop.test/ 200 blue-web');
  });
});
