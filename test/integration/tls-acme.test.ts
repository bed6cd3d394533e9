/**
 * TLS through the whole agent against a real ACME server: Debian's pebble (Let's Encrypt's test
 * CA) with certbot pointed at it, real nginx, PM2 and SQLite. The agent obtains a certificate for
 * the live release's names over HTTP-01 (the challenge served from the include's webroot
 * location), installs it only through nginx -t, reload and an HTTPS proof; nginx then serves it
 * (chain verified against pebble's root), plain HTTP redirects, HSTS is sent; a second run
 * changes nothing; a forced renewal installs a new certificate; a failed issuance leaves the
 * include, the served certificate and nginx's workers untouched and is reported and notified;
 * pushes with TLS on still flip without a reload.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentStreamLine } from '../../contract/api.js';
import type { TlsRunAnswer, TlsStatus } from '../../contract/tls.js';
import type { CraftEntry } from '../helpers/crafted-tar.js';
import { specRelease, uploadAndDeploy } from '../helpers/spec-release.js';
import { APP, SAMPLE_APP_DIR, startStack, type Stack } from '../helpers/stack.js';
import { preparePebble, type Pebble } from '../helpers/pebble.js';
import { freePort } from '../helpers/ports.js';
import { startWebhook, type Webhook } from '../helpers/webhook.js';
import { waitFor } from '../helpers/wait.js';

const NAMES = ['shop.test', 'www.shop.test'];
/** A name the policy allows that the first releases do not route. */
const LATER_NAME = 'api.shop.test';

async function isShuttingDown(pid: number): Promise<boolean> {
  return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('shutting down');
}

/** The certificate nginx presents for `servername`, and whether it verifies against `ca` for that name. */
function presented(port: number, servername: string, ca: string): Promise<{ fingerprint: string; authorized: boolean; error: string | null }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ fingerprint: cert.fingerprint256.replace(/:/g, '').toLowerCase(), authorized: socket.authorized, error: socket.authorizationError ? String(socket.authorizationError) : null });
      socket.end();
    });
    socket.setTimeout(5_000, () => socket.destroy(new Error('TLS connect timed out')));
    socket.on('error', reject);
  });
}

/** GET over HTTPS, verified against `ca` for the Host's name. */
function httpsGet(port: number, host: string, pathname: string, ca: string, extra: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port, path: pathname, servername: host, headers: { host, ...extra }, ca, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.setTimeout(5_000, () => request.destroy(new Error('HTTPS request timed out')));
    request.on('error', reject);
  });
}

describe('TLS with certificates from a real ACME server (pebble)', () => {
  let stack: Stack;
  let pebble: Pebble;
  let webhook: Webhook;
  let token: string;
  let httpsPort: number;
  let root: string;

  beforeAll(async () => {
    pebble = await preparePebble();
    webhook = await startWebhook();
    httpsPort = await freePort();
    stack = await startStack({
      policy: { serverNames: [...NAMES, LATER_NAME] },
      appConfig: { tls: { source: 'acme', httpsPort, hsts: { maxAgeSeconds: 600 } } },
      agentConfig: {
        // The schedule never fires during the test: runs are asked for through the API.
        acme: { directoryUrl: pebble.directoryUrl, caBundle: pebble.caBundle, email: 'ops@shop.test', schedule: '0 0 1 1 *', timeoutMs: 120_000 },
        notifications: { webhooks: { ops: { url: webhook.url, format: 'slack', events: ['tls_failed', 'tls_installed'] } }, baseDelayMs: 50 },
      },
    });
    await pebble.start(stack.publicPort);
    root = await pebble.issuingRoot();
    token = readFileSync(path.join(stack.dir, 'agent.token'), 'utf8').trim();
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
    await pebble?.stop();
    await webhook?.close();
  });

  const api = (pathname: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${stack.agentPort}${pathname}`, {
    ...init, headers: { authorization: `Bearer ${token}`, 'x-slipway-actor': 'dev@test', ...(init.headers as Record<string, string> ?? {}) },
  });

  const status = async () => await (await api(`/apps/${APP}/tls`)).json() as TlsStatus;

  const certificateRun = async (force = false): Promise<TlsRunAnswer> => {
    const response = await api(`/apps/${APP}/tls/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ force }) });
    expect(response.status).toBe(200);
    return await response.json() as TlsRunAnswer;
  };

  const spec = (names = NAMES) => ({
    processes: { web: { script: 'server.js', health: { path: '/health', intervalMs: 100, retries: 100 } } },
    routes: [{ serverNames: names, process: 'web', listenPort: stack.publicPort }],
    watch: { windowMs: 300, intervalMs: 100 },
  });

  /** Uploads the sample app as a new release (a fresh commit) and deploys it. */
  const push = async (names = NAMES): Promise<{ releaseId: string; events: string[] }> => {
    const files: CraftEntry[] = [{ path: './', type: 'dir', mode: 0o755 }];
    for (const name of ['server.js', 'message.txt', 'package.json']) files.push({ path: `./${name}`, body: await fs.readFile(path.join(SAMPLE_APP_DIR, name)), mode: 0o644 });
    const lastRun = (await status()).runs[0]?.id ?? 0;
    const release = specRelease(APP, files, spec(names));
    const lines = await uploadAndDeploy(api, APP, release);
    expect(lines.at(-1), JSON.stringify(lines)).toMatchObject({ type: 'result', outcome: 'succeeded' });
    // Every rollout that went live is followed by a certificate run: wait for it, so the tests'
    // own runs never meet it.
    await waitFor(async () => ((await status()).runs[0]?.id ?? 0) > lastRun && (await status()).runs[0]!.trigger === 'deploy',
      { timeoutMs: 120_000, description: 'the certificate run after the rollout' });
    return { releaseId: release.releaseId, events: lines.flatMap((l) => (l.type === 'event' && l.step === 'switching' && l.status === 'ok' ? [l.message ?? ''] : [])) };
  };

  const include = () => fs.readFile(path.join(stack.nginx.includeDir, `${APP}.conf`), 'utf8');
  const settledWorkers = async () => {
    await waitFor(async () => (await Promise.all(stack.nginx.workerPids().map(isShuttingDown))).every((shutting) => !shutting),
      { timeoutMs: 60_000, description: 'workers of earlier nginx configs to exit' });
    return stack.nginx.workerPids().sort();
  };

  it('obtains a certificate over HTTP-01 and serves the app over HTTPS with it', async () => {
    // Before any release there is nothing to certify.
    const atStart = await waitFor(async () => (await status()).runs[0] ?? null, { timeoutMs: 30_000, description: 'the certificate run at agent start' });
    expect(atStart).toMatchObject({ trigger: 'start', outcome: 'skipped', reason: 'nothing to certify: no release is live yet' });
    // The first rollout's include serves the challenge location; the run after it gets the certificate.
    const first = await push();
    const after = await status();
    const run = after.runs[0]!;
    expect(run, JSON.stringify(run)).toMatchObject({ outcome: 'installed', trigger: 'deploy', actor: 'agent' });
    expect(after.certificate).toMatchObject({ source: 'acme', names: NAMES });
    expect(after.certificate!.fingerprint).toBe(run.fingerprint);
    expect(await include()).toContain('location ^~ /.well-known/acme-challenge/');
    // Asked again through the API: the certificate is fresh.
    expect((await certificateRun()).run).toMatchObject({ outcome: 'unchanged', trigger: 'api', actor: 'dev@test' });

    // The chain nginx presents verifies against pebble's root, for both names.
    for (const name of NAMES) {
      const seen = await presented(httpsPort, name, root);
      expect(seen, JSON.stringify(seen)).toMatchObject({ authorized: true, fingerprint: run.fingerprint });
    }
    const answer = await httpsGet(httpsPort, 'shop.test', '/', root);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ release: first.releaseId });
    expect(answer.headers['strict-transport-security']).toBe('max-age=600');
    // The release markers only for the agent's probes, over HTTPS as over HTTP.
    expect(answer.headers['x-slipway-release']).toBeUndefined();
    expect((await httpsGet(httpsPort, 'shop.test', '/', root, await stack.probeHeaders())).headers['x-slipway-release']).toBe(first.releaseId);

    // Plain HTTP moves to HTTPS, except the ACME challenges.
    const plain = await stack.getHost('shop.test', '/some/page?x=1');
    expect(plain.status).toBe(301);
    expect(plain.headers.location).toBe(`https://shop.test:${httpsPort}/some/page?x=1`);
    const challenge = await stack.getHost('shop.test', '/.well-known/acme-challenge/missing-token');
    expect(challenge.status).toBe(404);

    // The key is the agent's alone.
    const keyFile = /ssl_certificate_key (\S+);/.exec(await include())![1]!;
    expect((await fs.stat(keyFile)).mode & 0o777).toBe(0o600);
    await waitFor(() => webhook.messages.some((m) => m.text.includes('TLS certificate installed')), { timeoutMs: 30_000, description: 'tls_installed notification' });
  });

  it('a second run finds the certificate fresh and reloads nothing; a forced renewal installs a new one', async () => {
    const workers = await settledWorkers();
    const config = await include();
    const before = await status();
    const again = await certificateRun();
    expect(again.run.outcome).toBe('unchanged');
    expect(await include()).toBe(config);
    expect(stack.nginx.workerPids().sort()).toEqual(workers);

    const renewed = await certificateRun(true);
    expect(renewed.run, JSON.stringify(renewed.run)).toMatchObject({ outcome: 'installed' });
    expect(renewed.run.fingerprint).not.toBe(before.certificate!.fingerprint);
    const seen = await presented(httpsPort, 'shop.test', root);
    expect(seen).toMatchObject({ authorized: true, fingerprint: renewed.run.fingerprint });
    // Only the live certificate's directory is kept.
    const certDirs = await fs.readdir(path.join(stack.home, 'tls', APP));
    expect(certDirs).toEqual([renewed.run.fingerprint]);
  });

  it('pushes with TLS on flip the flag without a reload, and HTTPS serves the new release', async () => {
    // Green's first release gives it routes: that changes the include once.
    await push();
    const workers = await settledWorkers();
    const config = await include();
    for (let i = 0; i < 2; i++) {
      const next = await push();
      expect(next.events.join(' ')).toContain('routes unchanged: no nginx reload');
      // The run after the rollout found the certificate fresh: nothing reloaded either.
      expect((await status()).runs[0]).toMatchObject({ trigger: 'deploy', outcome: 'unchanged' });
      const answer = await httpsGet(httpsPort, 'www.shop.test', '/', root, await stack.probeHeaders());
      expect(answer.headers['x-slipway-release']).toBe(next.releaseId);
      expect(JSON.parse(answer.body)).toMatchObject({ release: next.releaseId });
      expect(stack.nginx.workerPids().sort()).toEqual(workers);
      expect(await include()).toBe(config);
    }
  });

  it('a failed issuance leaves the include, the served certificate and nginx untouched, and is reported', async () => {
    const workers = await settledWorkers();
    const config = await include();
    const before = await status();
    // The CA now resolves the name to an address where nothing answers: HTTP-01 cannot succeed.
    await pebble.setAddress('shop.test', '127.0.0.2');
    try {
      const failed = await certificateRun(true);
      expect(failed.run.outcome).toBe('failed');
      expect(failed.run.reason).toMatch(/certbot certonly for shop\.test, www\.shop\.test failed/);
      expect(failed.status.certificate).toEqual(before.certificate);
      expect(failed.status.runs[0]).toMatchObject({ id: failed.run.id, outcome: 'failed' });
    } finally {
      await pebble.clearAddress('shop.test');
    }
    expect(await include()).toBe(config);
    expect(stack.nginx.workerPids().sort()).toEqual(workers);
    expect(await presented(httpsPort, 'shop.test', root)).toMatchObject({ authorized: true, fingerprint: before.certificate!.fingerprint });
    expect((await httpsGet(httpsPort, 'shop.test', '/', root)).status).toBe(200);
    await waitFor(() => webhook.messages.some((m) => m.text.includes('TLS certificate run failed')), { timeoutMs: 30_000, description: 'tls_failed notification' });

    // The operator sees it in deploy status and deploy tls; the next run (the CA reachable again) finds the certificate fresh.
    const overview = await stack.deploy(['status']);
    expect(overview.code, overview.stderr).toBe(0);
    expect(overview.stdout).toMatch(new RegExp(`https :${httpsPort}: certificate for shop\\.test, www\\.shop\\.test valid until \\S+; LAST CERTIFICATE RUN FAILED`));
    const shown = await stack.deploy(['tls']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`certificate ${before.certificate!.fingerprint.slice(0, 16)} for shop.test, www.shop.test`);
    expect(shown.stdout).toMatch(/LAST RUN FAILED \(the served certificate and config are unchanged\): certbot certonly/);
    const renew = await stack.deploy(['tls', '--renew']);
    expect(renew.code, renew.stderr).toBe(0);
    expect(renew.stdout).toMatch(/unchanged +api by \S+.*valid until/);
    expect(renew.stdout).not.toContain('LAST RUN FAILED');
  });

  it('a release that routes a new name gets a certificate covering it after its rollout, without being asked', async () => {
    const next = await push([...NAMES, LATER_NAME]);
    const covered = await status();
    expect(covered.runs[0]).toMatchObject({ trigger: 'deploy', actor: 'agent', outcome: 'installed' });
    expect(covered.certificate!.names).toEqual([LATER_NAME, ...NAMES].sort());
    expect(await presented(httpsPort, LATER_NAME, root)).toMatchObject({ authorized: true, fingerprint: covered.certificate!.fingerprint });
    expect((await httpsGet(httpsPort, LATER_NAME, '/', root, await stack.probeHeaders())).headers['x-slipway-release']).toBe(next.releaseId);
  });
});
