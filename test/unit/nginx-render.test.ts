import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { nginxInputProblems, renderAppConfig, type AppConfigInput, type RouteInput } from '../../agent/nginx/render.js';
import { SlipwayError } from '../../contract/errors.js';
import { probeSnippet } from '../../agent/nginx/probe-secret.js';

const TEMPLATE_DIR = fileURLToPath(new URL('../../nginx/', import.meta.url));
const RELEASE = '0123456789abcdef0123456789abcdef01234567';

const OTHER = 'fedcba9876543210fedcba9876543210fedcba98';
const SWITCH_DIR = '/etc/nginx/slipway-switch/shop';

const route: RouteInput = { listenPort: 8080, serverNames: ['shop.example.com', 'www.shop.example.com'], path: '/', process: 'web', websocket: false };
const sample: AppConfigInput = {
  app: 'shop',
  slot: 'green',
  slots: {
    blue: { releaseId: OTHER, ports: { web: 3001 }, routes: [route] },
    green: { releaseId: RELEASE, ports: { web: 3002 }, routes: [route] },
  },
  switchDir: SWITCH_DIR,
  generation: 7,
  listenHost: '127.0.0.1',
};

const EXPECTED = `# Rendered by Slipway for app "shop". Slipway overwrites this file when the app's config changes: edit the template instead.
# generation 7
#
# Every route of both slots is served here. Which slot answers, and the release it runs, is
# decided per request by a flag the agent flips atomically (${SWITCH_DIR}/live is a symlink to
# a directory named on-<slot>@<release>), so switching traffic moves every route at once, needs
# no reload and closes no client connection; and a push that only brings a new release needs
# no new include either.

upstream slipway_shop_blue_web {
    server 127.0.0.1:3001;
    keepalive 16;
    # Below Node's default server keepAliveTimeout (5 s), so nginx never reuses a connection the
    # app is about to close (which would surface as a 502 on a non-idempotent request).
    keepalive_timeout 4s;
}

upstream slipway_shop_green_web {
    server 127.0.0.1:3002;
    keepalive 16;
    keepalive_timeout 4s;
}

server {
    listen 127.0.0.1:8080;
    server_name shop.example.com www.shop.example.com;

    # The flag checks below must see a flip at once, whatever open_file_cache the http{} block sets.
    open_file_cache off;

    # $realpath_root resolves this (the flag) once per request; no location serves files from it.
    root ${SWITCH_DIR}/live;

    # Only if nginx cannot see the flag (X-Slipway-Switch: default) does the slot named at render
    # time serve, its release unknown here; the agent refuses to switch while that is so.
    set $slipway_slot green;
    set $slipway_release unknown;
    set $slipway_switch default;
    set $slipway_flag "";
    if (-d ${SWITCH_DIR}/live) {
        set $slipway_flag $realpath_root;
    }
    # Slot and release come from the one path resolved above, so they always agree.
    if ($slipway_flag ~ "/on-(blue|green)@([0-9a-z-]+)$") {
        set $slipway_slot $1;
        set $slipway_release $2;
        set $slipway_switch file;
    }

    # Markers read back through nginx: after a reload they prove which config is live ("nginx -s
    # reload" exits 0 even when the master keeps the old one), after a flip which slot serves and
    # which release it runs.
    add_header X-Slipway-Release $slipway_release always;
    add_header X-Slipway-Slot $slipway_slot always;
    add_header X-Slipway-Switch $slipway_switch always;
    add_header X-Slipway-Generation 7 always;

    location / {
        # The serving slot's upstream for this path; a slot without a route here answers 404.
        if ($slipway_slot = blue) {
            set $slipway_upstream slipway_shop_blue_web;
        }
        if ($slipway_slot = green) {
            set $slipway_upstream slipway_shop_green_web;
        }
        proxy_pass http://$slipway_upstream;
        proxy_http_version 1.1;
        # HTTP/1.1 with an empty Connection header is what lets the upstream keepalive pool work.
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_connect_timeout 5s;
        proxy_read_timeout 60s;
        client_max_body_size 1m;
    }
}
`;

const withSlot = (slot: 'blue' | 'green', patch: Record<string, unknown>) => ({ slots: { ...sample.slots, [slot]: { ...sample.slots[slot], ...patch } } });
/** The input with route `i` of `slot` patched (a route added when there is none at `i`). */
const withRoute = (slot: 'blue' | 'green', patch: Record<string, unknown>, i = 0) => {
  const routes: unknown[] = [...sample.slots[slot].routes];
  routes[i] = { ...(routes[i] ?? route) as object, ...patch };
  return withSlot(slot, { routes });
};

function renderError(input: unknown, options: { templateDir?: string; template?: string } = {}): SlipwayError {
  try {
    renderAppConfig(input as AppConfigInput, { templateDir: options.templateDir ?? TEMPLATE_DIR, ...(options.template ? { template: options.template } : {}) });
  } catch (error) {
    expect(error).toBeInstanceOf(SlipwayError);
    return error as SlipwayError;
  }
  throw new Error('expected renderAppConfig to throw');
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-render-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('renderAppConfig', () => {
  it('renders the sample input exactly', () => {
    expect(renderAppConfig(sample, { templateDir: TEMPLATE_DIR })).toBe(EXPECTED);
  });

  it('renders per-route limits, IPv6 and wildcard listen addresses', () => {
    const out = renderAppConfig({
      ...sample,
      listenHost: '::1',
      ...withRoute('green', { listenPort: 443, serverNames: ['_'], clientMaxBodySize: '25m', readTimeoutSeconds: 300 }),
    }, { templateDir: TEMPLATE_DIR });
    expect(out).toContain('    listen [::1]:443;\n    server_name _;\n');
    expect(out).toContain('        proxy_read_timeout 300s;\n        client_max_body_size 25m;\n');
    expect(renderAppConfig({ ...sample, listenHost: '*' }, { templateDir: TEMPLATE_DIR }))
      .toContain('    listen *:8080;\n');
    expect(renderAppConfig({ ...sample, ...withRoute('green', { clientMaxBodySize: '0' }) }, { templateDir: TEMPLATE_DIR }))
      .toContain('        client_max_body_size 0;\n');
  });

  it('changes only the markers between generations of the same release', () => {
    const a = renderAppConfig(sample, { templateDir: TEMPLATE_DIR }).split('\n');
    const b = renderAppConfig({ ...sample, generation: 8 }, { templateDir: TEMPLATE_DIR }).split('\n');
    const differing = a.map((line, i) => [line, b[i]]).filter(([x, y]) => x !== y);
    expect(differing).toEqual([
      ['# generation 7', '# generation 8'],
      ['    add_header X-Slipway-Generation 7 always;', '    add_header X-Slipway-Generation 8 always;'],
    ]);
  });

  it('does not depend on the releases: nginx reads the serving one from the switch flag', () => {
    const out = renderAppConfig(sample, { templateDir: TEMPLATE_DIR });
    const NEW = 'aaaaaaaaaaaa-bbbbbbbbbbbb';
    expect(renderAppConfig({ ...sample, ...withSlot('blue', { releaseId: NEW }) }, { templateDir: TEMPLATE_DIR })).toBe(out);
    expect(renderAppConfig({ ...sample, ...withSlot('green', { releaseId: null }) }, { templateDir: TEMPLATE_DIR })).toBe(out);
    expect(out).not.toContain(RELEASE);
    expect(out).not.toContain(OTHER);
    // What changes the include (and so costs a reload): a port, a route.
    expect(renderAppConfig({ ...sample, ...withSlot('blue', { ports: { web: 3005 } }) }, { templateDir: TEMPLATE_DIR })).not.toBe(out);
    expect(renderAppConfig({ ...sample, ...withRoute('blue', { path: '/api/' }, 1) }, { templateDir: TEMPLATE_DIR })).not.toBe(out);
  });

  it('defaults to the slot given, its release unknown, when nginx cannot see the flag', () => {
    const out = renderAppConfig({ ...sample, slot: 'blue', ...withSlot('green', { releaseId: null }) }, { templateDir: TEMPLATE_DIR });
    expect(out).toContain('    set $slipway_slot blue;\n    set $slipway_release unknown;\n    set $slipway_switch default;\n');
  });

  it('sends the release markers only to requests carrying the probe secret, which it includes from its own file, and never passes the secret on', () => {
    const file = '/var/lib/slipway/nginx-probe.conf';
    const out = renderAppConfig({ ...sample, probeSecretFile: file }, { templateDir: TEMPLATE_DIR });
    expect(out).toContain([
      `    include ${file};`,
      '    set $slipway_marker_release "";',
      '    set $slipway_marker_slot "";',
      '    set $slipway_marker_switch "";',
      '    set $slipway_marker_generation "";',
      '    if ($http_x_slipway_probe = $slipway_probe_secret) {',
      '        set $slipway_marker_release $slipway_release;',
      '        set $slipway_marker_slot $slipway_slot;',
      '        set $slipway_marker_switch $slipway_switch;',
      '        set $slipway_marker_generation 7;',
      '    }',
      '    add_header X-Slipway-Release $slipway_marker_release always;',
      '    add_header X-Slipway-Slot $slipway_marker_slot always;',
      '    add_header X-Slipway-Switch $slipway_marker_switch always;',
      '    add_header X-Slipway-Generation $slipway_marker_generation always;',
    ].join('\n'));
    expect(out).not.toContain('add_header X-Slipway-Release $slipway_release');
    // Every proxied location blanks the header, so the app never sees the secret.
    const locations = out.split('\n').filter((line) => line.includes('proxy_pass')).length;
    expect(locations).toBeGreaterThan(0);
    expect(out.split('\n').filter((line) => line === '        proxy_set_header X-Slipway-Probe "";').length).toBe(locations);
    // The path goes into the include verbatim: only a plain absolute path is accepted.
    for (const bad of ['relative/nginx-probe.conf', '/a/b; return 200', '/a/../etc/shadow', '/a/b\nserver']) {
      expect(renderError({ ...sample, probeSecretFile: bad }).details?.join('\n')).toContain('probeSecretFile');
    }
  });

  it('writes the probe secret as one nginx directive, plain hex only', () => {
    const secret = 'ab'.repeat(32);
    expect(probeSnippet(secret).split('\n').filter((line) => !line.startsWith('#'))).toEqual([`set $slipway_probe_secret "${secret}";`, '']);
    for (const bad of ['ab"; return 200 "x', 'short', 'AB'.repeat(32)]) expect(() => probeSnippet(bad)).toThrow('plain hex');
  });

  describe('refuses hostile or malformed values, naming the field', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['app with ;', { app: 'shop;' }, 'app'],
      ['app with }', { app: 'shop}' }, 'app'],
      ['app with newline', { app: 'shop\nserver' }, 'app'],
      ['app in capitals', { app: 'Shop' }, 'app'],
      ['unknown slot', { slot: 'red' }, 'slot'],
      ['release id with a brace', withSlot('green', { releaseId: `${RELEASE.slice(0, 39)}}` }), 'slots.green.releaseId'],
      ['short release id', withSlot('blue', { releaseId: 'abc123' }), 'slots.blue.releaseId'],
      ['release id with a quote', withSlot('green', { releaseId: `${RELEASE}"` }), 'slots.green.releaseId'],
      ['release id "none" (the marker, not a release)', withSlot('green', { releaseId: 'none' }), 'slots.green.releaseId'],
      ['port 0', withSlot('blue', { ports: { web: 0 } }), 'slots.blue.ports.web'],
      ['port 65536', withSlot('green', { ports: { web: 65536 } }), 'slots.green.ports.web'],
      ['fractional port', withSlot('blue', { ports: { web: 3000.5 } }), 'slots.blue.ports.web'],
      ['port as a string', withSlot('blue', { ports: { web: '3000' } }), 'slots.blue.ports.web'],
      ['both slots on one port', withSlot('green', { ports: { web: 3001 } }), 'slots.green.ports.web'],
      ['two processes on one port', withSlot('green', { ports: { web: 3002, api: 3002 } }), 'slots.green.ports.api'],
      ['process name with ;', withSlot('blue', { ports: { web: 3001, 'a;b': 3005 } }), 'slots.blue.ports.a;b'],
      ['process name in capitals', withSlot('blue', { ports: { web: 3001, API: 3005 } }), 'slots.blue.ports.API'],
      ['a third slot', { slots: { ...sample.slots, red: { releaseId: null, ports: {}, routes: [] } } }, 'slots.red'],
      ['slot with an extra field', withSlot('blue', { weight: 5 }), 'slots.blue.weight'],
      ['slot without routes', withSlot('blue', { routes: undefined }), 'slots.blue.routes'],
      ['missing slot', { slots: { blue: sample.slots.blue } }, 'slots.green'],
      ['relative switch dir', { switchDir: 'etc/switch' }, 'switchDir'],
      ['switch dir with ..', { switchDir: '/etc/../tmp' }, 'switchDir'],
      ['switch dir with a space', { switchDir: '/etc/my switch' }, 'switchDir'],
      ['switch dir with ;', { switchDir: '/etc/s;deny' }, 'switchDir'],
      ['generation 0', { generation: 0 }, 'generation'],
      ['fractional generation', { generation: 1.5 }, 'generation'],
      ['listen host with ;', { listenHost: '127.0.0.1;' }, 'listenHost'],
      ['listen host name', { listenHost: 'example.com' }, 'listenHost'],
      ['listen port', withRoute('blue', { listenPort: -1 }), 'slots.blue.routes[0].listenPort'],
      ['route with an extra field', withRoute('green', { root: '/var/www' }), 'slots.green.routes[0].root'],
      ['route without websocket', withRoute('green', { websocket: undefined }), 'slots.green.routes[0].websocket'],
      ['websocket as a string', withRoute('green', { websocket: 'yes' }), 'slots.green.routes[0].websocket'],
      ['no server names', withRoute('blue', { serverNames: [] }), 'slots.blue.routes[0].serverNames'],
      ['server name with ;', withRoute('blue', { serverNames: ['a.test;', 'b.test'] }), 'slots.blue.routes[0].serverNames[0]'],
      ['server name with a space', withRoute('green', { serverNames: ['b.test', 'a.test b.test'] }), 'slots.green.routes[0].serverNames[1]'],
      ['server name with a newline', withRoute('blue', { serverNames: ['a.test\nlisten 81'] }), 'slots.blue.routes[0].serverNames[0]'],
      ['server name with {', withRoute('blue', { serverNames: ['a{'] }), 'slots.blue.routes[0].serverNames[0]'],
      ['server name with quotes', withRoute('blue', { serverNames: ['"a.test"'] }), 'slots.blue.routes[0].serverNames[0]'],
      ['server name with a single quote', withRoute('blue', { serverNames: ["a.test'"] }), 'slots.blue.routes[0].serverNames[0]'],
      ['server name regex', withRoute('blue', { serverNames: ['~^(.+)$'] }), 'slots.blue.routes[0].serverNames[0]'],
      ['duplicate server name', withRoute('blue', { serverNames: ['a.test', 'A.test'] }), 'slots.blue.routes[0].serverNames[1]'],
      ['route path without a leading slash', withRoute('green', { path: 'api' }), 'slots.green.routes[0].path'],
      ['route path with ;', withRoute('green', { path: '/a;b' }), 'slots.green.routes[0].path'],
      ['route path with a space', withRoute('green', { path: '/a b' }), 'slots.green.routes[0].path'],
      ['route path with {', withRoute('green', { path: '/a{' }), 'slots.green.routes[0].path'],
      ['route path with $', withRoute('green', { path: '/$host' }), 'slots.green.routes[0].path'],
      ['route path regex', withRoute('green', { path: '~ ^/x' }), 'slots.green.routes[0].path'],
      ['empty route path', withRoute('green', { path: '' }), 'slots.green.routes[0].path'],
      ['route to a process without a port', withRoute('green', { process: 'api' }), 'slots.green.routes[0].process'],
      ['route to an unsafe process name', withRoute('green', { process: 'web;' }), 'slots.green.routes[0].process'],
      ['the same route twice', withRoute('blue', { serverNames: ['www.shop.example.com'] }, 1), 'slots.blue.routes[1]'],
      ['body size with ;', withRoute('blue', { clientMaxBodySize: '10m;' }), 'slots.blue.routes[0].clientMaxBodySize'],
      ['body size with a unit nginx lacks', withRoute('blue', { clientMaxBodySize: '10t' }), 'slots.blue.routes[0].clientMaxBodySize'],
      ['body size as a number', withRoute('blue', { clientMaxBodySize: 1024 }), 'slots.blue.routes[0].clientMaxBodySize'],
      ['read timeout 0', withRoute('green', { readTimeoutSeconds: 0 }), 'slots.green.routes[0].readTimeoutSeconds'],
      ['read timeout over a day', withRoute('green', { readTimeoutSeconds: 86_401 }), 'slots.green.routes[0].readTimeoutSeconds'],
      ['unknown field', { extraDirective: 'deny all' }, 'extraDirective'],
      ['the old listen field', { listen: { host: '127.0.0.1', port: 80 } }, 'listen'],
    ];
    it.each(cases)('%s', (_label, patch, field) => {
      const error = renderError({ ...sample, ...patch });
      expect(error.code).toBe('invalid_nginx_value');
      expect(error.status).toBe(400);
      expect(error.message).toContain(field);
      expect(error.details?.some((line) => line.startsWith(`${field}: `))).toBe(true);
      expect(error.details).toHaveLength(1);
      expect(error.hint).toBeTruthy();
    });
  });

  it('lists every bad field at once', () => {
    const problems = nginxInputProblems({
      ...sample, app: 'a;b', listenHost: 'localhost',
      slots: { blue: { ...sample.slots.blue, ports: { web: 0 } }, green: { ...sample.slots.green, routes: [{ ...route, path: 'api', serverNames: ['x}'] }] } },
    });
    expect(problems).toEqual([
      'app: contains a character not allowed in nginx config (whitespace, quotes, ; { } # $ \\ or a control character) (got "a;b")',
      'listenHost: must be an IPv4 address, an IPv6 address or "*" (got "localhost")',
      'slots.blue.ports.web: must be >= 1 (got 0)',
      'slots.green.routes[0].path: must start with "/" (got "api")',
      'slots.green.routes[0].serverNames[0]: contains a character not allowed in nginx config (whitespace, quotes, ; { } # $ \\ or a control character) (got "x}")',
    ]);
    expect(nginxInputProblems({ ...sample, ...withRoute('green', { process: 'api' }) }))
      .toEqual(['slots.green.routes[0].process: has no port in slot green (its ports: web) (got "api")']);
    expect(nginxInputProblems(sample)).toEqual([]);
    expect(nginxInputProblems(null)).toEqual(['(input): must be an object']);
  });

  it('names the template when it uses a variable Slipway does not provide', () => {
    const dir = path.join(scratch, 'unknown-var');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'app.conf.njk'), 'upstream slipway_{{ app }} {\n    server 127.0.0.1:{{ upstreamPortt }};\n}\n');
    const error = renderError(sample, { templateDir: dir });
    expect(error.code).toBe('nginx_template_error');
    expect(error.message).toContain(path.join(dir, 'app.conf.njk'));
    expect(error.message).toMatch(/undefined/);
    expect(error.hint).toContain('upstreams');
  });

  it('reports a missing template and refuses template names that leave the template dir', () => {
    const missing = renderError(sample, { templateDir: scratch, template: 'nope.njk' });
    expect(missing.code).toBe('nginx_template_error');
    expect(missing.message).toContain(path.join(scratch, 'nope.njk'));
    expect(missing.hint).toContain('create');

    const escaping = renderError(sample, { template: '../package.json' });
    expect(escaping.code).toBe('nginx_template_error');
  });

  it('validates before touching the template', () => {
    // A template dir that does not exist: a validation error must still win.
    const error = renderError({ ...sample, app: 'x;y' }, { templateDir: path.join(scratch, 'absent') });
    expect(error.code).toBe('invalid_nginx_value');
  });
});
