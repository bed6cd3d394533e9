import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { legacyMoves, translateLegacy } from '../../agent/spec/legacy.js';
import { policyOf, policyProblems, serverNameAllowed, type AppPolicy } from '../../agent/spec/policy.js';
import { assignPorts, type PortAssignment } from '../../agent/spec/ports.js';
import { pm2NameOf, processEnv, slotLayoutOf, substitutePorts } from '../../agent/spec/layout.js';
import { releaseSpecOf, requireAllowedSpec } from '../../agent/spec/release-spec.js';
import { checkAppSpec, specDigest, type AppSpec } from '../../contract/spec.js';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const base = () => ({
  home: '/srv/slipway',
  api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
  nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
});

const legacyApp = () => ({
  slots: { blue: { port: 3001 }, green: { port: 3002 } },
  start: { script: 'server.js', args: ['--x'], nodeArgs: ['--max-old-space-size=128'] },
  health: { path: '/healthz', retries: 7 },
  public: { listenPort: 8080, serverNames: ['shop.test'] },
  watch: { windowMs: 5000 },
  requiredEnv: ['DB_URL'],
});

function spec(raw: unknown): AppSpec {
  const checked = checkAppSpec(raw);
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

const multi = () => spec({
  processes: {
    web: { script: 'server.js', instances: 2 },
    api: { command: ['/usr/bin/python3', '-m', 'uvicorn', 'main:app', '--port', '$PORT'], cwd: 'api' },
    worker: { script: 'worker.js', singleton: true },
  },
  routes: [
    { serverNames: ['shop.test', 'www.shop.test'], process: 'web', listenPort: 8080 },
    { serverNames: ['api.shop.test'], process: 'api' },
  ],
});

describe('agent config: host policy and the legacy translation', () => {
  it('an app with policy only needs no start, and gets the policy defaults', () => {
    const config = parseAgentConfig({ ...base(), apps: { shop: { listen: { ports: [8080] }, serverNames: ['*.shop.test'] } } });
    const app = config.apps.shop!;
    expect(config.ports).toEqual({ from: 20000, to: 20999 });
    expect(app).toMatchObject({ maxProcesses: 8, maxInstances: 16, build: { allowHost: true, minFreeMemoryBytes: 512 * 1024 * 1024, nice: 10, env: {} } });
    expect(app.health).toBeUndefined();
    expect(app.watch).toBeUndefined();
    expect(translateLegacy(app)).toBeNull();
    expect(config.legacyMoves).toBeUndefined();
  });

  it('translates the legacy fields into a legacy spec, policy and pinned ports', () => {
    const config = parseAgentConfig({ ...base(), apps: { shop: legacyApp() } });
    const legacy = translateLegacy(config.apps.shop!)!;
    expect(legacy.pinnedPorts).toEqual({ blue: { web: 3001 }, green: { web: 3002 } });
    expect(legacy.spec.processes.web).toMatchObject({
      script: 'server.js', args: ['--x'], nodeArgs: ['--max-old-space-size=128'], port: true, instances: 1,
      health: { path: '/healthz', retries: 7, expectStatus: 200, timeoutMs: 2000, intervalMs: 250 },
    });
    expect(legacy.spec.routes).toEqual([{ serverNames: ['shop.test'], path: '/', process: 'web', listenPort: 8080, websocket: true }]);
    expect(legacy.spec.watch.windowMs).toBe(5000);
    expect(legacy.spec.requiredEnv).toEqual(['DB_URL']);
    const policy = policyOf(config.apps.shop!);
    expect(policy.listen).toEqual({ host: '127.0.0.1', ports: [8080] });
    expect(policy.serverNames).toEqual(['shop.test']);
    // Its own legacy spec always fits the policy it implies.
    expect(policyProblems(legacy.spec, policy, 'shop')).toEqual([]);
  });

  it('says once what to move where', () => {
    const config = parseAgentConfig({ ...base(), apps: { shop: legacyApp() } });
    expect(config.legacyMoves).toHaveLength(6);
    expect(legacyMoves('shop', { start: {}, public: {} })).toEqual([
      'apps.shop.start → deploy.spec.json processes.web (script, args, nodeArgs)',
      expect.stringMatching(/^apps\.shop\.public → deploy\.spec\.json routes\[0\].*apps\.shop\.listen.*apps\.shop\.serverNames/),
    ]);
  });

  it('names the config errors of half a legacy app, and of policy fields', () => {
    const { public: _p, ...noPublic } = legacyApp();
    expect(agentConfigProblems({ ...base(), apps: { shop: noPublic } }))
      .toContain('apps/shop/start: needs apps.shop.public too (or move the app to deploy.spec.json and drop start)');
    expect(agentConfigProblems({ ...base(), apps: { shop: { health: { path: '/h' } } } }))
      .toContain("apps/shop/health: only applies to a legacy app with apps.shop.start; put it in the app's deploy.spec.json instead");
    const bad = agentConfigProblems({
      ...base(), ports: { from: 30000, to: 29000 },
      apps: { shop: { listen: { ports: [29500, 80] }, serverNames: ['bad name'], maxProcesses: 0 } },
    });
    expect(bad).toEqual(expect.arrayContaining([
      expect.stringMatching(/^apps\/shop\/serverNames\/0/),
      expect.stringMatching(/^apps\/shop\/maxProcesses/),
    ]));
    expect(agentConfigProblems({ ...base(), ports: { from: 30000, to: 29000 }, apps: { shop: {} } }))
      .toContain('ports: from (30000) must not be above to (29000)');
    expect(agentConfigProblems({ ...base(), apps: { shop: { listen: { ports: [20080] } } } }))
      .toContain('apps/shop/listen/ports/0: 20080 is inside the slot port range "ports" (20000-20999)');
  });
});

describe('policyProblems', () => {
  const policy = (over: Partial<AppPolicy> = {}): AppPolicy => ({
    listen: { host: '127.0.0.1', ports: [8080] }, serverNames: ['shop.test', '*.shop.test'], maxProcesses: 8, maxInstances: 16,
    build: { allowHost: true, minFreeMemoryBytes: 0, timeoutMs: 60_000, nice: 10, env: {} }, ...over,
  });

  it('wildcards allow any name below the domain, not the domain itself; "_" only itself', () => {
    expect(serverNameAllowed('api.shop.test', ['*.shop.test'])).toBe(true);
    expect(serverNameAllowed('a.b.SHOP.test', ['*.shop.test'])).toBe(true);
    expect(serverNameAllowed('shop.test', ['*.shop.test'])).toBe(false);
    expect(serverNameAllowed('evilshop.test', ['*.shop.test'])).toBe(false);
    expect(serverNameAllowed('_', ['_'])).toBe(true);
    expect(serverNameAllowed('x.test', ['_'])).toBe(false);
  });

  it('a fitting spec has no problems', () => {
    expect(policyProblems(multi(), policy(), 'shop')).toEqual([]);
  });

  it('names the spec field and the host setting for each refusal', () => {
    const s = spec({
      processes: { web: { script: 's.js', instances: 10 }, api: { script: 'a.js', instances: 10 } },
      routes: [{ serverNames: ['shop.test', 'evil.test'], process: 'web', listenPort: 443 }],
      build: { on: 'host', timeoutMs: 120_000 },
    });
    expect(policyProblems(s, policy({ maxProcesses: 1, build: { ...policy().build, allowHost: false } }), 'shop')).toEqual([
      'processes: 2 processes is more than this host allows (agent.json apps.shop.maxProcesses is 1)',
      'processes/web/instances: 20 instances over all processes is more than this host allows (agent.json apps.shop.maxInstances is 16)',
      'routes/0/listenPort: 443 is not allowed here (agent.json apps.shop.listen.ports allows 8080)',
      'routes/0/serverNames/1: "evil.test" is not allowed here (agent.json apps.shop.serverNames allows shop.test, *.shop.test)',
      'build/on: "host" is not allowed here (agent.json apps.shop.build.allowHost is false): build on the controller instead',
      'build/timeoutMs: 120000 is longer than this host allows (agent.json apps.shop.build.timeoutMs is 60000)',
    ]);
    expect(policyProblems(multi(), policy({ listen: { host: '127.0.0.1', ports: [] } }), 'shop')).toContain(
      'routes/1: needs a listen port, and this host allows none (agent.json apps.shop.listen.ports is empty)');
  });
});

describe('assignPorts', () => {
  const range = { from: 20000, to: 20009 };
  const want = (slot: 'blue' | 'green', ...processes: string[]) => processes.map((process) => ({ app: 'shop', slot, process }));

  it('hands out the lowest free ports, never one port twice across apps, slots and processes', () => {
    const existing: PortAssignment[] = [{ app: 'blog', slot: 'blue', process: 'web', port: 20000 }];
    const blue = assignPorts({ range, existing, pinned: [], wanted: want('blue', 'api', 'web') });
    expect(blue.ports.map((p) => p.port)).toEqual([20001, 20002]);
    const green = assignPorts({ range, existing: [...existing, ...blue.added], pinned: [], wanted: want('green', 'api', 'web') });
    expect(green.ports.map((p) => p.port)).toEqual([20003, 20004]);
    const all = [...existing, ...blue.added, ...green.added].map((p) => p.port);
    expect(new Set(all).size).toBe(all.length);
  });

  it('is sticky: the same process in the same slot keeps its port, a new one gets a new port', () => {
    const first = assignPorts({ range, existing: [], pinned: [], wanted: want('blue', 'api', 'web') });
    const again = assignPorts({ range, existing: first.added, pinned: [], wanted: want('blue', 'admin', 'api', 'web') });
    expect(again.ports).toEqual([
      { app: 'shop', slot: 'blue', process: 'admin', port: 20002 },
      { app: 'shop', slot: 'blue', process: 'api', port: 20000 },
      { app: 'shop', slot: 'blue', process: 'web', port: 20001 },
    ]);
    expect(again.added).toEqual([{ app: 'shop', slot: 'blue', process: 'admin', port: 20002 }]);
  });

  it('honours pinned legacy ports, and moves an assignment a pinned port now claims', () => {
    const existing: PortAssignment[] = [{ app: 'blog', slot: 'green', process: 'api', port: 20000 }];
    const pinned: PortAssignment[] = [{ app: 'shop', slot: 'blue', process: 'web', port: 3001 }, { app: 'blog', slot: 'blue', process: 'web', port: 20000 }];
    expect(assignPorts({ range, existing, pinned, wanted: want('blue', 'web') }).ports[0]!.port).toBe(3001);
    const moved = assignPorts({ range, existing, pinned, wanted: [{ app: 'blog', slot: 'green', process: 'api' }] });
    expect(moved.ports[0]!.port).toBe(20001);
    expect(assignPorts({ range, existing: [], pinned: [], reserved: [20000], wanted: want('blue', 'web') }).ports[0]!.port).toBe(20001);
  });

  it('an exhausted range is an error naming the setting', () => {
    let error: unknown;
    try {
      assignPorts({ range: { from: 20000, to: 20001 }, existing: [], pinned: [], wanted: want('blue', 'a', 'b', 'c') });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe('ports_exhausted');
    expect((error as SlipwayError).message).toBe('no free port left for shop/blue/c in the slot port range 20000-20001');
    expect((error as SlipwayError).hint).toMatch(/agent\.json "ports"/);
  });
});

describe('slot layout, env and $PORT tokens', () => {
  it('PM2 names: <app>-<slot>-<process>, the legacy process keeps <app>-<slot>', () => {
    expect(pm2NameOf('shop', 'blue', 'api', 'release')).toBe('shop-blue-api');
    expect(pm2NameOf('shop', 'blue', 'web', 'release')).toBe('shop-blue-web');
    expect(pm2NameOf('shop', 'green', 'web', 'legacy')).toBe('shop-green');
  });

  it('layout rows and the env of each process', () => {
    const layout = slotLayoutOf({ app: 'shop', slot: 'blue', releaseId: 'r1', spec: multi(), source: 'release', ports: { web: 20001, api: 20000 } });
    expect(layout).toEqual([
      { process: 'api', releaseId: 'r1', pm2Name: 'shop-blue-api', port: 20000, instances: 1, singleton: false },
      { process: 'web', releaseId: 'r1', pm2Name: 'shop-blue-web', port: 20001, instances: 2, singleton: false },
      { process: 'worker', releaseId: 'r1', pm2Name: 'shop-blue-worker', port: null, instances: 1, singleton: true },
    ]);
    const s = multi();
    s.processes.worker!.env = { QUEUE: 'q1', NODE_ENV: 'staging' };
    const env = processEnv({ app: 'shop', slot: 'blue', releaseId: 'r1', process: 'worker', proc: s.processes.worker!, layout, appEnv: { SECRET: 'x', QUEUE: 'q0' }, path: '/usr/bin' });
    expect(env).toEqual({
      PATH: '/usr/bin', NODE_ENV: 'staging', SECRET: 'x', QUEUE: 'q1', PORT_API: '20000', PORT_WEB: '20001',
      SLIPWAY_APP: 'shop', SLIPWAY_SLOT: 'blue', SLIPWAY_RELEASE: 'r1', SLIPWAY_PROCESS: 'worker',
    });
    expect(processEnv({ app: 'shop', slot: 'blue', releaseId: 'r1', process: 'api', proc: s.processes.api!, layout, appEnv: {}, path: '/p' }).PORT).toBe('20000');
  });

  it('replaces exactly the port tokens, inside items too, and nothing else', () => {
    const vars = { PORT: '20000', PORT_WEB: '20001' };
    expect(substitutePorts(['--port', '$PORT', '--bind=127.0.0.1:${PORT}', '$PORT_WEB', '${PORT_WEB}/x', '$PORTAL', '$PORT_NONE', '$HOME', '$$PORT'], vars))
      .toEqual(['--port', '20000', '--bind=127.0.0.1:20000', '20001', '20001/x', '$PORTAL', '$PORT_NONE', '$HOME', '$20000']);
  });
});

describe('the effective spec of a release', () => {
  const manifest = (over: Partial<ReleaseManifest> = {}): ReleaseManifest => ({
    schemaVersion: 3, app: 'shop', releaseId: 'aaaaaaaaaaaa-bbbbbbbbbbbb', sha: 'a'.repeat(40), shortSha: 'aaaaaaa', contentDigest: 'c'.repeat(64),
    dirty: false, branch: 'main', author: { name: 'x', email: 'x@y' }, commitTime: '2026-01-01T00:00:00Z', buildTime: '2026-01-01T00:00:00Z',
    controllerVersion: '0.1.0', ...over,
  });
  const policyApp = parseAgentConfig({ ...base(), apps: { shop: { listen: { ports: [8080] }, serverNames: ['shop.test'] } } }).apps.shop!;
  const legacy = parseAgentConfig({ ...base(), apps: { shop: legacyApp() } }).apps.shop!;
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return (error as SlipwayError).code;
    }
    return 'ok';
  };

  it('a manifest spec is checked again and its digest verified; without one the legacy spec, else refused', () => {
    const s = spec({ processes: { web: { script: 'server.js' } }, routes: [{ serverNames: ['shop.test'], process: 'web' }] });
    expect(releaseSpecOf('shop', policyApp, manifest({ spec: s, specDigest: specDigest(s) }))).toMatchObject({ source: 'release', digest: specDigest(s) });
    expect(code(() => releaseSpecOf('shop', policyApp, manifest({ spec: s, specDigest: 'f'.repeat(64) })))).toBe('release_spec_invalid');
    expect(code(() => releaseSpecOf('shop', policyApp, manifest({ spec: { processes: { web: { script: 'x', bogus: 1 } } } as never, specDigest: 'f'.repeat(64) })))).toBe('release_spec_invalid');
    expect(code(() => releaseSpecOf('shop', policyApp, manifest()))).toBe('spec_missing');
    expect(releaseSpecOf('shop', legacy, manifest({ spec: null })).source).toBe('legacy');
  });

  it('refuses a spec the host does not allow, with one detail per problem', () => {
    const s = spec({ processes: { web: { script: 'server.js' } }, routes: [{ serverNames: ['evil.test'], process: 'web' }] });
    const effective = releaseSpecOf('shop', policyApp, manifest({ spec: s, specDigest: specDigest(s) }));
    let error: SlipwayError | undefined;
    try {
      requireAllowedSpec('shop', policyApp, effective, 'aaaaaaaaaaaa-bbbbbbbbbbbb');
    } catch (e) {
      error = e as SlipwayError;
    }
    expect(error?.code).toBe('spec_refused');
    expect(error?.status).toBe(422);
    expect(error?.details).toEqual(['routes/0/serverNames/0: "evil.test" is not allowed here (agent.json apps.shop.serverNames allows shop.test)']);
  });
});
