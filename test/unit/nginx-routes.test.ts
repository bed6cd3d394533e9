import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderAppConfig, type AppConfigInput, type RouteInput, type SlotInput } from '../../agent/nginx/render.js';
import { connectionVariable, routeTable, upstreamName } from '../../agent/nginx/route-table.js';
import { legacyRenderInput } from '../../agent/nginx/legacy-input.js';
import { probeTargetOf } from '../../agent/rollout/public-address.js';

const TEMPLATE_DIR = fileURLToPath(new URL('../../nginx/', import.meta.url));
const A = '0123456789ab-0123456789ab';
const B = 'ba9876543210-ba9876543210';

const r = (serverNames: string[], path: string, process: string, extra: Partial<RouteInput> = {}): RouteInput =>
  ({ listenPort: 80, serverNames, path, process, websocket: false, ...extra });

function input(blue: Partial<SlotInput>, green: Partial<SlotInput>, extra: Partial<AppConfigInput> = {}): AppConfigInput {
  return {
    app: 'shop', slot: 'blue', generation: 3, switchDir: '/srv/switch/shop', listenHost: '127.0.0.1',
    slots: {
      blue: { releaseId: A, ports: { web: 3001, api: 3002 }, routes: [], ...blue },
      green: { releaseId: B, ports: { web: 3011, api: 3012 }, routes: [], ...green },
    },
    ...extra,
  };
}

/** server → path → "blue-upstream|green-upstream" ("-" for a 404), for compact expectations. */
function layout(table: ReturnType<typeof routeTable>): Record<string, Record<string, string>> {
  const short = (name: string | null) => (name === null ? '-' : name.replace('slipway_shop_', ''));
  return Object.fromEntries(table.servers.map((server) => [
    `${server.listenPort} ${server.serverNames.join(' ')}`,
    Object.fromEntries(server.locations.map((l) => [
      `${l.exact ? '= ' : ''}${l.path}`,
      (['blue', 'green'] as const).map((slot) => (l.redirects[slot] ? '301' : short(l.upstreams[slot]))).join('|'),
    ])),
  ]));
}

describe('routeTable', () => {
  it('serves the union of both slots: one block per set of names that route alike, one location per path', () => {
    const shop = ['shop.test', 'www.shop.test'];
    const table = routeTable(input(
      { routes: [r(shop, '/', 'web'), r(['api.test'], '/', 'api')] },
      { routes: [r(shop, '/', 'web'), r(['shop.test'], '/api/', 'api'), r(['api.test'], '/', 'api')] },
    ));
    expect(layout(table)).toEqual({
      // shop.test gained /api/ in green only: its block splits from www.shop.test's, so no name is claimed twice.
      // Only green has /api/: green redirects /api to it, blue serves /api from its "/".
      '80 shop.test': { '/': 'blue_web|green_web', '/api/': 'blue_web|green_api', '= /api': 'blue_web|301' },
      '80 www.shop.test': { '/': 'blue_web|green_web' },
      '80 api.test': { '/': 'blue_api|green_api' },
    });
    expect(table.upstreams.map((u) => `${u.name}:${u.port}`)).toEqual([
      'slipway_shop_blue_api:3002', 'slipway_shop_blue_web:3001', 'slipway_shop_green_api:3012', 'slipway_shop_green_web:3011',
    ]);
  });

  it('answers 404 in a slot with no route covering the location, and 404 for paths no route has', () => {
    const table = routeTable(input(
      { routes: [r(['shop.test'], '/', 'web')] },
      { routes: [r(['shop.test'], '/', 'web'), r(['admin.test'], '/admin/', 'api')] },
    ));
    expect(layout(table)).toEqual({
      '80 shop.test': { '/': 'blue_web|green_web' },
      // A block without "/" gets a 404 catch-all: nginx would otherwise serve its own html root.
      '80 admin.test': { '/': '-|-', '/admin/': '-|green_api', '= /admin': '-|301' },
    });
  });

  it('picks, per slot, the longest route prefix covering each location (as nginx would with that slot alone)', () => {
    const table = routeTable(input(
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/api', 'api')] },
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/api/v2/', 'api')] },
    ));
    expect(layout(table)).toEqual({
      '80 s.test': { '/': 'blue_web|green_web', '/api': 'blue_api|green_web', '/api/v2/': 'blue_api|green_api', '= /api/v2': 'blue_api|301' },
    });
  });

  it('keeps nginx\'s redirect of "/x" to a route "/x/" to the slot that has that route', () => {
    const table = routeTable(input(
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/docs/', 'api'), r(['s.test'], '/both/', 'api')] },
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/app', 'api'), r(['s.test'], '/app/', 'web'), r(['s.test'], '/both/', 'api')] },
    ));
    expect(layout(table)).toEqual({
      '80 s.test': {
        '/': 'blue_web|green_web',
        // Only green has /app/, but it also has /app: no slot redirects /app, no exact location.
        '/app': 'blue_web|green_api',
        '/app/': 'blue_web|green_web',
        // Both have /both/ without /both: nginx's own redirect is right for both.
        '/both/': 'blue_api|green_api',
        // Only blue has /docs/: blue redirects /docs, green serves it from its "/".
        '/docs/': 'blue_api|green_web',
        '= /docs': '301|green_web',
      },
    });
    const out = renderAppConfig(input({ routes: [r(['s.test'], '/docs/', 'api')] }, { routes: [] }), { templateDir: TEMPLATE_DIR });
    expect(out).toContain([
      '    location = /docs {',
      '        # The serving slot\'s upstream for this path; a slot without a route here answers 404.',
      '        if ($slipway_slot = blue) {',
      '            return 301 /docs/$is_args$args;',
      '        }',
      '        if ($slipway_slot = green) {',
      '            return 404;',
      '        }',
      '    }',
    ].join('\n'));
  });

  it('serves a name only the other slot has through this slot\'s wildcard or catch-all, as this slot alone would', () => {
    const table = routeTable(input(
      { routes: [r(['_'], '/', 'web'), r(['*.shop.test'], '/', 'api')] },
      { routes: [r(['_'], '/', 'web'), r(['api.test'], '/', 'api'), r(['a.shop.test', 'shop.test', '*.x.shop.test'], '/', 'web')] },
    ));
    expect(layout(table)).toEqual({
      // shop.test and api.test: blue has no such name, so its "_" serves them, as with blue's routes alone
      // (nginx's *.shop.test does not match shop.test: a wildcard needs a label in its place).
      '80 _ shop.test': { '/': 'blue_web|green_web' },
      '80 api.test': { '/': 'blue_web|green_api' },
      // a.shop.test and *.x.shop.test fall under blue's *.shop.test; green serves *.shop.test with its "_".
      '80 *.shop.test a.shop.test *.x.shop.test': { '/': 'blue_api|green_web' },
    });
    expect(table.servers[0]!.serverNames).toContain('_');
  });

  it('takes per-route settings from the render-time slot, else the other slot, else nginx defaults', () => {
    const blue = { routes: [r(['s.test'], '/', 'web', { clientMaxBodySize: '1k', readTimeoutSeconds: 5, websocket: true })] };
    const green = { routes: [r(['s.test'], '/', 'web', { clientMaxBodySize: '50m' }), r(['s.test'], '/up/', 'api', { readTimeoutSeconds: 600 })] };
    const settings = (slot: 'blue' | 'green') => routeTable(input(blue, green, { slot })).servers[0]!.locations
      .map((l) => `${l.path} ${l.clientMaxBodySize} ${l.readTimeoutSeconds} ${l.websocket}`);
    // /up/ is covered by blue's "/" when blue renders; only green has it as its own route.
    expect(settings('blue')).toEqual(['/ 1k 5 true', '/up 1k 5 true', '/up/ 1k 5 true']);
    // At "= /up" green redirects, so blue's route there gives the settings.
    expect(settings('green')).toEqual(['/ 50m 60 false', '/up 1k 5 true', '/up/ 1m 600 false']);
    const onlyGreen = routeTable(input({ routes: [] }, { routes: [r(['s.test'], '/', 'web', { clientMaxBodySize: '9m' })] }, { slot: 'blue' }));
    expect(onlyGreen.servers[0]!.locations[0]!.clientMaxBodySize).toBe('9m');
  });

  it('groups names case-insensitively, splits listen ports, and puts the catch-all block first on its port', () => {
    const table = routeTable(input(
      { routes: [r(['a.test'], '/', 'web'), r(['_'], '/', 'api'), r(['A.TEST'], '/', 'web', { listenPort: 8080 })] },
      { routes: [r(['a.test', '_'], '/', 'web')] },
    ));
    expect(table.servers.map((s) => `${s.listenPort} ${s.serverNames.join(' ')}`)).toEqual(['80 _', '80 a.test', '8080 A.TEST']);
  });

  it('renders no server block and no upstream for an app without routes', () => {
    const table = routeTable(input({}, {}));
    expect(table).toEqual({ upstreams: [], servers: [], websocket: false });
    const out = renderAppConfig(input({}, {}), { templateDir: TEMPLATE_DIR });
    expect(out).not.toMatch(/^(server|upstream|map) /m);
    expect(out).toContain('# Neither slot has routes: nothing to serve.');
  });

  it('keeps two apps apart: upstream names and the WebSocket variable carry the app name', () => {
    expect(upstreamName('my-shop', 'green', 'api')).toBe('slipway_my-shop_green_api');
    expect(connectionVariable('my-shop')).toBe('slipway_my_shop_connection');
    const out = renderAppConfig(input({ routes: [r(['s.test'], '/', 'web', { websocket: true })] }, {}, { app: 'my-shop' }), { templateDir: TEMPLATE_DIR });
    expect(out).toContain('map $http_upgrade $slipway_my_shop_connection {\n    default upgrade;\n    \'\' \'\';\n}\n');
    expect(out).toContain('        proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection $slipway_my_shop_connection;\n');
    expect(out).toContain('upstream slipway_my-shop_blue_web {');
  });

  it('renders a location per path with the flag choosing the upstream or a 404', () => {
    const out = renderAppConfig(input(
      { routes: [r(['s.test'], '/', 'web')] },
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/api/', 'api', { websocket: true, clientMaxBodySize: '2m', readTimeoutSeconds: 900 })] },
    ), { templateDir: TEMPLATE_DIR });
    expect(out).toContain([
      '    location /api/ {',
      '        # The serving slot\'s upstream for this path; a slot without a route here answers 404.',
      '        if ($slipway_slot = blue) {',
      '            set $slipway_upstream slipway_shop_blue_web;',
      '        }',
      '        if ($slipway_slot = green) {',
      '            set $slipway_upstream slipway_shop_green_api;',
      '        }',
      '        proxy_pass http://$slipway_upstream;',
    ].join('\n'));
    // Settings come from blue (the render-time slot), whose "/" covers /api/.
    expect(out).toMatch(/location \/api\/ \{[^}]*\}[^}]*\}[^}]*proxy_set_header Connection "";[^}]*proxy_read_timeout 60s;\n {8}client_max_body_size 1m;/);
    const green = renderAppConfig(input(
      { routes: [r(['s.test'], '/', 'web')] },
      { routes: [r(['s.test'], '/', 'web'), r(['s.test'], '/api/', 'api', { websocket: true, clientMaxBodySize: '2m', readTimeoutSeconds: 900 })] },
      { slot: 'green' },
    ), { templateDir: TEMPLATE_DIR });
    expect(green).toMatch(/location \/api\/ \{[^}]*\}[^}]*\}[^}]*proxy_set_header Connection \$slipway_shop_connection;[^}]*proxy_read_timeout 900s;\n {8}client_max_body_size 2m;/);
  });
});

describe('probeTargetOf', () => {
  const health = () => '/health';

  it('probes the first route of the target slot with its first plain server name', () => {
    const target = probeTargetOf(input(
      { routes: [r(['blue.test'], '/', 'web')] },
      { routes: [r(['*.shop.test', '_', 'shop.test'], '/app/', 'api', { listenPort: 8443 }), r(['other.test'], '/', 'web')] },
    ), 'green');
    expect(target).toEqual({ baseUrl: 'http://127.0.0.1:8443', hostHeader: 'shop.test', path: '/app/' });
  });

  it('falls back to wildcards ("probe." prefix), then any Host for "_", and uses the health path when given', () => {
    expect(probeTargetOf(input({ routes: [r(['*.shop.test'], '/', 'web')] }, {}), 'blue', health))
      .toEqual({ baseUrl: 'http://127.0.0.1:80', hostHeader: 'probe.shop.test', path: '/health' });
    expect(probeTargetOf(input({ routes: [r(['_'], '/', 'web')] }, {}), 'blue')?.hostHeader).toBe('localhost');
  });

  it('uses the other slot\'s route when the target slot has none, and reaches "*" and IPv6 listen hosts over loopback', () => {
    expect(probeTargetOf(input({ routes: [r(['b.test'], '/', 'web')] }, {}, { listenHost: '*' }), 'green'))
      .toEqual({ baseUrl: 'http://127.0.0.1:80', hostHeader: 'b.test', path: '/' });
    expect(probeTargetOf(input({ routes: [r(['b.test'], '/', 'web')] }, {}, { listenHost: '::1' }), 'blue')?.baseUrl).toBe('http://[::1]:80');
  });

  it('is null when neither slot has a route: nothing to prove over HTTP', () => {
    expect(probeTargetOf(input({}, {}), 'blue')).toBeNull();
  });
});

describe('legacyRenderInput', () => {
  it('maps the legacy app config to one process "web" on the pinned slot port and one route "/"', () => {
    const legacy = legacyRenderInput({
      app: 'shop', slot: 'green', releases: { blue: A, green: null }, switchDir: '/srv/switch/shop', generation: 2,
      config: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, public: { listenHost: '127.0.0.1', listenPort: 80, serverNames: ['shop.test'] } },
    });
    const route = { listenPort: 80, serverNames: ['shop.test'], path: '/', process: 'web', websocket: true };
    expect(legacy).toEqual({
      app: 'shop', slot: 'green', switchDir: '/srv/switch/shop', generation: 2, listenHost: '127.0.0.1',
      slots: { blue: { releaseId: A, ports: { web: 3001 }, routes: [route] }, green: { releaseId: null, ports: { web: 3002 }, routes: [route] } },
    });
    expect(layout(routeTable(legacy))).toEqual({ '80 shop.test': { '/': 'blue_web|green_web' } });
  });
});

describe('per-route settings follow the slot about to serve', () => {
  const blue = { routes: [r(['shop.test'], '/', 'web', { clientMaxBodySize: '1k' })] };
  const green = { routes: [r(['shop.test'], '/', 'web', { clientMaxBodySize: '10m' })] };
  const render = (slot: 'blue' | 'green', settingsFrom?: 'blue' | 'green') =>
    renderAppConfig(input(blue, green, { slot, ...(settingsFrom ? { settingsFrom } : {}) }), { templateDir: TEMPLATE_DIR });

  it('settingsFrom picks the settings whatever the fallback slot', () => {
    expect(render('blue')).toContain('client_max_body_size 1k;');
    expect(render('blue', 'green')).toContain('client_max_body_size 10m;');
    expect(render('green', 'blue')).toContain('client_max_body_size 1k;');
  });

  it('a switch back to a slot with other settings re-renders the include (the plan sees no match on disk)', async () => {
    const { planSwitch } = await import('../../agent/rollout/switch-plan.js');
    // On disk: rendered when green went live (fallback green, green's settings).
    const onDisk = render('green', 'green');
    const toBlue = planSwitch({
      serving: 'green', target: 'blue', onDisk, generationNow: 3, reapply: false,
      render: (generation, fallback) => renderAppConfig(input(blue, green, { slot: fallback, settingsFrom: 'blue', generation }), { templateDir: TEMPLATE_DIR }),
    });
    expect(toBlue).toEqual({ applyInclude: true, flip: true });
    // Same settings in both slots: a flip alone, no reload.
    const same = planSwitch({
      serving: 'green', target: 'blue', onDisk: renderAppConfig(input(green, green, { slot: 'green', settingsFrom: 'green' }), { templateDir: TEMPLATE_DIR }), generationNow: 3, reapply: false,
      render: (generation, fallback) => renderAppConfig(input(green, green, { slot: fallback, settingsFrom: 'blue', generation }), { templateDir: TEMPLATE_DIR }),
    });
    expect(same).toEqual({ applyInclude: false, flip: true });
  });
});
