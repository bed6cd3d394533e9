/**
 * TLS (agent/tls): the config rules, certbot's argv, when a certificate is due, which names it
 * must cover, the certificate checks, the include's HTTPS rendering, and the certificate run's
 * decisions with a real state database and real certificate files (openssl), nginx and certbot
 * replaced by recorders: a failed run never touches the include or the installed certificate.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { renderAppConfig, type AppConfigInput } from '../../agent/nginx/render.js';
import { dnsNames, inspectCertificate, nameCovers, uncoveredNames } from '../../agent/tls/certificate.js';
import { certonlyArgv, certbotEnv } from '../../agent/tls/certbot.js';
import { certificateNames, planAcme } from '../../agent/tls/plan.js';
import { TlsService } from '../../agent/tls/service.js';
import { TlsStore } from '../../agent/tls/store.js';
import type { TlsInput } from '../../agent/nginx/render-input.js';
import { openDatabase } from '../../agent/state/db.js';
import { formatTlsStatus } from '../../controller/commands/tls.js';
import { tlsLine } from '../../controller/commands/status.js';
import { SlipwayError } from '../../contract/errors.js';
import { runCommand } from '../../lib/exec.js';
import { REPO_TEMPLATE_DIR } from '../helpers/stack.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const base = (app: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
  home: '/srv/slipway',
  api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
  nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
  apps: { shop: { listen: { host: '127.0.0.1', ports: [80] }, serverNames: ['shop.test'], ...app } },
  ...top,
});

describe('TLS settings in the agent config', () => {
  it('fills the defaults: HTTPS on 443 with a redirect, certbot in <home>/acme, the webroot beside the include dir', () => {
    const config = parseAgentConfig(base({ tls: { source: 'acme' } }, { acme: {} }));
    expect(config.apps.shop!.tls).toEqual({ source: 'acme', httpsPort: 443, redirect: true });
    expect(config.acme).toMatchObject({
      directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', command: ['certbot'], dir: '/srv/slipway/acme',
      webroot: '/etc/nginx/slipway-acme', renewBeforeDays: 30, schedule: '41 3,15 * * *',
    });
  });

  it('names every inconsistent field', () => {
    expect(agentConfigProblems(base({ tls: { source: 'files', certificate: '/etc/ssl/shop.pem' } }))).toEqual([
      'apps/shop/tls: source "files" needs both "certificate" and "key" (absolute paths of PEM files)',
    ]);
    expect(agentConfigProblems(base({ tls: { source: 'acme' } }))).toEqual([
      'apps/shop/tls: source "acme" needs the top-level "acme" section (at least {}; directoryUrl, email)',
    ]);
    expect(agentConfigProblems(base({ tls: { source: 'acme', httpsPort: 80 } }, { acme: {} }))).toEqual(['apps/shop/tls/httpsPort: 80 is also an HTTP listen port of the app']);
    expect(agentConfigProblems(base({}, { acme: { schedule: 'every day' } }))).toEqual([expect.stringMatching(/^acme\/schedule: "every day" is not a valid cron expression/)]);
    // Written into nginx config: plain absolute paths only.
    expect(agentConfigProblems(base({ tls: { source: 'files', certificate: '/etc/ssl/my cert.pem', key: '/k.pem' } }))).toEqual([expect.stringMatching(/^apps\/shop\/tls\/certificate/)]);
  });
});

describe('certbot as argv', () => {
  const acme = { directoryUrl: 'https://ca.test/dir', command: ['certbot'], dir: '/srv/slipway/acme', webroot: '/etc/nginx/slipway-acme', schedule: 'x', renewBeforeDays: 30, timeoutMs: 1000 };
  it('certonly over the webroot, in the agent\'s own dirs, one lineage per app', () => {
    expect(certonlyArgv({ ...acme, email: 'ops@shop.test' }, { certName: 'shop', names: ['shop.test', 'www.shop.test'], forceRenewal: false })).toEqual([
      'certbot', 'certonly', '--non-interactive', '--agree-tos', '--webroot', '--webroot-path', '/etc/nginx/slipway-acme', '--cert-name', 'shop',
      '-d', 'shop.test', '-d', 'www.shop.test', '--server', 'https://ca.test/dir',
      '--config-dir', '/srv/slipway/acme/config', '--work-dir', '/srv/slipway/acme/work', '--logs-dir', '/srv/slipway/acme/logs',
      '-m', 'ops@shop.test', '--no-eff-email', '--keep-until-expiring',
    ]);
    const forced = certonlyArgv(acme, { certName: 'shop', names: ['shop.test'], forceRenewal: true });
    expect(forced.slice(-2)).toEqual(['--register-unsafely-without-email', '--force-renewal']);
    expect(certbotEnv({ caBundle: '/ca.pem' }, { PATH: '/bin' })).toEqual({ PATH: '/bin', REQUESTS_CA_BUNDLE: '/ca.pem' });
  });
});

describe('which names, and when to ask the CA', () => {
  const route = (listenPort: number, serverNames: string[]) => ({ listenPort, serverNames, path: '/', process: 'web', websocket: false });
  it('exact names of the routes on the mirrored port; "_" and wildcards apart', () => {
    expect(certificateNames([route(80, ['WWW.shop.test', 'shop.test', '_']), route(80, ['*.shop.test', 'shop.test']), route(81, ['admin.test'])], 80))
      .toEqual({ names: ['shop.test', 'www.shop.test'], uncertifiable: ['*.shop.test', '_'] });
  });

  const now = new Date('2026-12-01T00:00:00Z');
  const installed = { names: ['shop.test', 'www.shop.test'], notAfter: '2027-02-01T00:00:00.000Z' };
  it('first issuance, new names, due renewal, forced: obtain; otherwise nothing', () => {
    expect(planAcme({ installed: null, wanted: ['shop.test'], now, renewBeforeDays: 30, force: false })).toEqual({ obtain: true, forceRenewal: false, reason: 'no certificate installed yet' });
    expect(planAcme({ installed, wanted: ['shop.test', 'api.shop.test'], now, renewBeforeDays: 30, force: false }))
      .toEqual({ obtain: true, forceRenewal: false, reason: 'the installed certificate does not cover api.shop.test' });
    expect(planAcme({ installed, wanted: ['shop.test'], now, renewBeforeDays: 30, force: false }).obtain).toBe(false);
    expect(planAcme({ installed, wanted: ['shop.test'], now, renewBeforeDays: 62, force: false })).toMatchObject({ obtain: true, forceRenewal: true });
    expect(planAcme({ installed, wanted: ['shop.test'], now, renewBeforeDays: 30, force: true })).toMatchObject({ obtain: true, forceRenewal: true, reason: 'renewal forced' });
  });

  it('wildcards cover one label', () => {
    expect(nameCovers('*.shop.test', 'a.shop.test')).toBe(true);
    expect(nameCovers('*.shop.test', 'shop.test')).toBe(false);
    expect(nameCovers('*.shop.test', 'a.b.shop.test')).toBe(false);
    expect(uncoveredNames(['shop.test', '*.shop.test'], ['SHOP.test', 'www.shop.test', 'x.y.shop.test'])).toEqual(['x.y.shop.test']);
    expect(dnsNames('DNS:a.test, IP Address:127.0.0.1, DNS:B.test')).toEqual(['a.test', 'b.test']);
  });
});

/** A self-signed certificate and its key for `names`, made by openssl. */
async function makeCertificate(dir: string, name: string, names: string[], days = 30): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const made = await runCommand(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', String(days),
    '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`, '-keyout', key, '-out', cert], { timeoutMs: 30_000 });
  if (made.exitCode !== 0) throw new Error(made.stderr);
  return { cert, key };
}

describe('certificates the agent will serve and refuses to', () => {
  let dir: string;
  let one: { cert: string; key: string };
  let other: { cert: string; key: string };
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-tls-unit-'));
    one = await makeCertificate(dir, 'one', ['shop.test', 'www.shop.test']);
    other = await makeCertificate(dir, 'other', ['other.test']);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const read = (file: string) => readFileSync(file, 'utf8');

  it('reads the leaf\'s fingerprint, names and validity; refuses a key of another certificate or no certificate', () => {
    const facts = inspectCertificate(read(one.cert), read(one.key), 'one.crt');
    expect(facts.names).toEqual(['shop.test', 'www.shop.test']);
    expect(facts.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(facts.notAfter)).toBeGreaterThan(Date.now());
    expect(() => inspectCertificate(read(one.cert), read(other.key), 'one.crt')).toThrow('one.crt: the private key is not the key of the leaf certificate');
    expect(() => inspectCertificate('not a pem', read(one.key), 'x.crt')).toThrow('x.crt: no PEM certificate found');
    try {
      inspectCertificate(read(one.cert), 'garbage', 'one.crt');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(SlipwayError);
      expect((error as SlipwayError).code).toBe('tls_certificate_invalid');
    }
  });

  describe('a certificate run (files from the host, nginx recorded)', () => {
    const setup = (certificate: string, key: string, refresh: (tls: TlsInput | null) => Promise<unknown> = async () => undefined) => {
      const home = mkdtempSync(path.join(dir, 'home-'));
      const config = parseAgentConfig(base({ tls: { source: 'files', certificate, key, httpsPort: 8443 } }, { home })) as AgentConfig;
      const db = openDatabase(path.join(home, 'agent.db'));
      const store = new TlsStore(db, path.join(home, 'tls'));
      const refreshes: (TlsInput | null)[] = [];
      const notices: string[] = [];
      const service = new TlsService({
        config, store, logger: pino({ level: 'silent' }),
        liveRoutes: () => ({ releaseId: 'r', routes: [{ listenPort: 80, serverNames: ['shop.test'], path: '/', process: 'web', websocket: false }] }),
        refreshInclude: async (_app, tls) => { refreshes.push(tls); return refresh(tls); },
        withAppLock: async (_app, _holder, _waitMs, fn) => fn(),
        notify: (event, input) => notices.push(`${event}: ${input.reason}`),
      });
      return { service, store, refreshes, notices, home, close: () => db.close() };
    };

    it('installs a new certificate through the include, then finds it unchanged without touching nginx', async () => {
      const { service, store, refreshes, notices, home, close } = setup(one.cert, one.key);
      const first = await service.run('shop', { trigger: 'api', actor: 'dev@test' });
      expect(first.outcome, first.reason ?? '').toBe('installed');
      const installed = store.installed('shop')!;
      expect(refreshes).toEqual([{ httpPort: 80, httpsPort: 8443, certificate: `${installed.dir}/fullchain.pem`, key: `${installed.dir}/privkey.pem`, redirect: true, hsts: null, challengeRoot: null }]);
      expect(readdirSync(path.join(home, 'tls', 'shop'))).toEqual([installed.fingerprint]);
      expect(service.renderInput('shop')).toEqual(refreshes[0]);
      const again = await service.run('shop', { trigger: 'schedule', actor: 'agent' });
      expect(again.outcome).toBe('unchanged');
      expect(refreshes).toHaveLength(1);
      expect(notices).toEqual([expect.stringMatching(/^tls_installed: certificate for shop.test, www.shop.test valid until/)]);
      expect(service.runs('shop').map((r) => r.outcome)).toEqual(['unchanged', 'installed']);
      close();
    });

    it('a certificate nginx refuses, or one that does not match its key or the names, changes nothing and is reported', async () => {
      const refusing = setup(one.cert, one.key, async () => { throw new SlipwayError('nginx_config_invalid', 'nginx -t rejected the config for app shop: bad cert'); });
      const refused = await refusing.service.run('shop', { trigger: 'api', actor: 'dev@test' });
      expect(refused).toMatchObject({ outcome: 'failed', reason: 'nginx -t rejected the config for app shop: bad cert' });
      expect(refusing.store.installed('shop')).toBeNull();
      expect(readdirSync(path.join(refusing.home, 'tls', 'shop'))).toEqual([]);
      expect(refusing.notices).toEqual(['tls_failed: nginx -t rejected the config for app shop: bad cert']);
      refusing.close();

      const mismatched = setup(one.cert, other.key);
      const bad = await mismatched.service.run('shop', { trigger: 'api', actor: 'dev@test' });
      expect(bad).toMatchObject({ outcome: 'failed', reason: `${one.cert}: the private key is not the key of the leaf certificate` });
      expect(mismatched.refreshes).toEqual([]);
      mismatched.close();

      const elsewhere = setup(other.cert, other.key);
      const uncovered = await elsewhere.service.run('shop', { trigger: 'api', actor: 'dev@test' });
      expect(uncovered.reason).toBe(`${other.cert} does not cover shop.test (it names other.test)`);
      expect(elsewhere.refreshes).toEqual([]);
      elsewhere.close();
    });
  });
});

describe('the include with TLS', () => {
  const input = (tls: TlsInput | null): AppConfigInput => ({
    app: 'shop', slot: 'blue', switchDir: '/srv/sw/shop', generation: 3, listenHost: '127.0.0.1', ...(tls ? { tls } : {}),
    slots: {
      blue: { releaseId: '0123456789abcdef0123456789abcdef01234567', ports: { web: 3001 }, routes: [{ listenPort: 80, serverNames: ['shop.test'], path: '/', process: 'web', websocket: false }] },
      green: { releaseId: null, ports: {}, routes: [] },
    },
  });
  const tls: TlsInput = { httpPort: 80, httpsPort: 443, certificate: '/c/fullchain.pem', key: '/c/privkey.pem', redirect: true, hsts: { maxAgeSeconds: 600, includeSubDomains: true }, challengeRoot: '/acme' };
  const render = (value: AppConfigInput) => renderAppConfig(value, { templateDir: REPO_TEMPLATE_DIR });

  it('a certificate: plain HTTP redirects (challenges excepted), an HTTPS twin serves the routes with the markers', () => {
    const text = render(input(tls));
    const [plain, secure] = text.split(/\nserver \{\n/).slice(1);
    expect(plain).toContain('location ^~ /.well-known/acme-challenge/ {\n        root /acme;');
    expect(plain).toContain('return 301 https://$host$request_uri;');
    expect(plain).not.toContain('proxy_pass');
    expect(secure).toContain('listen 127.0.0.1:443 ssl;');
    expect(secure).toContain('ssl_certificate /c/fullchain.pem;\n    ssl_certificate_key /c/privkey.pem;');
    expect(secure).toContain('add_header Strict-Transport-Security "max-age=600; includeSubDomains" always;');
    expect(secure).toContain('add_header X-Slipway-Generation 3 always;');
    expect(secure).toContain('proxy_pass http://$slipway_upstream;');
  });

  it('no certificate yet: plain HTTP serves the app and the challenges; no redirect asked: both serve it', () => {
    const before = render(input({ ...tls, certificate: null, key: null }));
    expect(before).toContain('location ^~ /.well-known/acme-challenge/');
    expect(before).not.toContain('ssl');
    expect(before).toContain('proxy_pass');
    const both = render(input({ ...tls, redirect: false, hsts: null, challengeRoot: null, httpsPort: 8443 }));
    expect(both.match(/proxy_pass/g)).toHaveLength(2);
    expect(both).toContain('listen 127.0.0.1:8443 ssl;');
    expect(both).not.toContain('acme-challenge');
    expect(both).not.toContain('Strict-Transport-Security');
  });

  it('refuses a certificate path that could inject a directive', () => {
    expect(() => render(input({ ...tls, key: '/c/key.pem;\n include /etc/passwd' }))).toThrow(/invalid tls\.key/);
    expect(() => render(input({ ...tls, key: null }))).toThrow(/invalid tls/);
  });
});

describe('deploy tls output', () => {
  it('deploy status has one TLS line: the certificate served, and a last run that failed', () => {
    expect(tlsLine({ httpsPort: 443, fingerprint: null, notAfter: null, names: [], lastRun: null })).toBe('https :443: no certificate yet (plain HTTP)');
    expect(tlsLine({ httpsPort: 443, fingerprint: 'ab', notAfter: '2027-01-01T00:00:00.000Z', names: ['shop.test'], lastRun: { outcome: 'failed', at: '2026-12-01T03:41:00.000Z', reason: 'certbot certonly for shop.test failed (exit 1): timeout' } }))
      .toBe('https :443: certificate for shop.test valid until 2027-01-01T00:00:00.000Z; LAST CERTIFICATE RUN FAILED 2026-12-01T03:41:00.000Z: certbot certonly for shop.test failed (exit 1): timeout (see deploy tls)');
  });

  it('shows the certificate, its days left and a failure newer than the last good run', () => {
    const text = formatTlsStatus({
      app: 'shop', source: 'acme', httpsPort: 443, redirect: true, hstsMaxAgeSeconds: null, nextRunAt: '2026-12-02T03:41:00.000Z',
      certificate: { source: 'acme', fingerprint: 'ab'.repeat(32), names: ['shop.test'], notBefore: '2026-11-01T00:00:00.000Z', notAfter: '2026-12-31T00:00:00.000Z', issuer: 'CN=Pebble', installedAt: '2026-11-01T00:00:00.000Z' },
      runs: [
        { id: 2, trigger: 'schedule', actor: 'agent', outcome: 'failed', fingerprint: null, notAfter: null, reason: 'certbot certonly for shop.test failed (exit 1): timeout', durationMs: 1500, at: '2026-12-01T03:41:00.000Z' },
        { id: 1, trigger: 'api', actor: 'dev@test', outcome: 'installed', fingerprint: 'ab'.repeat(32), notAfter: '2026-12-31T00:00:00.000Z', reason: 'ok', durationMs: 4200, at: '2026-11-01T00:00:00.000Z' },
      ],
    }, Date.parse('2026-12-01T12:00:00Z'));
    expect(text.split('\n')).toEqual([
      'shop: TLS from ACME (certbot), HTTPS on port 443, HTTP redirected, no HSTS',
      `  certificate ${'ab'.repeat(8)} for shop.test`,
      '  valid until 2026-12-31T00:00:00.000Z (29 d left), issued by CN=Pebble, installed 2026-11-01T00:00:00.000Z',
      '  LAST RUN FAILED (the served certificate and config are unchanged): certbot certonly for shop.test failed (exit 1): timeout',
      '  next scheduled run 2026-12-02T03:41:00.000Z',
      'runs (newest first):',
      '  #2 2026-12-01T03:41:00.000Z failed    schedule by agent (1.50 s): certbot certonly for shop.test failed (exit 1): timeout',
      '  #1 2026-11-01T00:00:00.000Z installed api by dev@test (4.20 s): ok',
    ]);
  });
});
