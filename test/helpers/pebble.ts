import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';
import { isAlive } from './nginx.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

/**
 * A real ACME server: Debian's pebble (Let's Encrypt's test CA) with pebble-challtestsrv as its
 * DNS, every name resolving to 127.0.0.1 unless a test points it elsewhere. Prepared first (its
 * directory URL and the CA bundle of its own HTTPS go into the agent config), started once the
 * port where nginx answers HTTP-01 challenges is known.
 */
export interface Pebble {
  directoryUrl: string;
  /** PEM of the certificate pebble's own HTTPS listener presents (certbot's REQUESTS_CA_BUNDLE). */
  caBundle: string;
  start(httpPort: number): Promise<void>;
  /** The root that signs issued certificates (pebble makes a new one at each start). */
  issuingRoot(): Promise<string>;
  /** Points the name's A record at `address` (challtestsrv), e.g. an address where nothing answers. */
  setAddress(host: string, address: string): Promise<void>;
  clearAddress(host: string): Promise<void>;
  stop(): Promise<void>;
}

function getText(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, agent: false, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => (response.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${response.statusCode} ${body}`))));
    });
    request.on('timeout', () => request.destroy(new Error(`${url}: timed out`)));
    request.on('error', reject);
  });
}

async function spawnLogged(argv: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const log = await fs.open(logFile, 'w');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log.fd, log.fd], detached: true, env });
  await log.close();
  child.unref();
  return child.pid!;
}

async function stopPid(pid: number | null, name: string): Promise<void> {
  if (pid === null) return;
  if (isAlive(pid)) process.kill(pid, 'SIGTERM');
  await waitFor(() => !isAlive(pid), { description: `${name} ${pid} to exit`, timeoutMs: 10_000 }).catch(() => {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });
}

export async function preparePebble(): Promise<Pebble> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pebble-'));
  await fs.chmod(dir, 0o755);
  const [port, managementPort, dnsPort, dnsManagementPort, tlsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const made = await runCommand(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=pebble', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyFile, '-out', certFile], { timeoutMs: 30_000 });
  if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  await fs.chmod(certFile, 0o644);
  const caBundle = await fs.readFile(certFile, 'utf8');
  let pids: { pebble: number | null; dns: number | null } = { pebble: null, dns: null };
  const management = (pathname: string) => `https://127.0.0.1:${managementPort}${pathname}`;
  const dnsApi = async (pathname: string, body: unknown) => {
    const response = await fetch(`http://127.0.0.1:${dnsManagementPort}${pathname}`, { method: 'POST', body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`challtestsrv ${pathname}: HTTP ${response.status}`);
  };
  const stop = async () => {
    await stopPid(pids.pebble, 'pebble');
    await stopPid(pids.dns, 'pebble-challtestsrv');
    pids = { pebble: null, dns: null };
    await fs.rm(dir, { recursive: true, force: true });
  };
  return {
    directoryUrl: `https://127.0.0.1:${port}/dir`,
    caBundle: certFile,
    async start(httpPort) {
      const config = {
        pebble: {
          listenAddress: `127.0.0.1:${port}`, managementListenAddress: `127.0.0.1:${managementPort}`,
          certificate: certFile, privateKey: keyFile, httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false,
        },
      };
      await fs.writeFile(path.join(dir, 'pebble.json'), JSON.stringify(config));
      pids.dns = await spawnLogged(['pebble-challtestsrv', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
        '-management', `127.0.0.1:${dnsManagementPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''], path.join(dir, 'challtestsrv.log'));
      // No random validation delays, no deliberately refused nonces, no reused authorizations.
      pids.pebble = await spawnLogged(['pebble', '-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], path.join(dir, 'pebble.log'),
        { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' });
      try {
        await waitFor(async () => (await getText(`https://127.0.0.1:${port}/dir`, caBundle).catch(() => '')).includes('newAccount'),
          { description: 'pebble directory', timeoutMs: 30_000, intervalMs: 200 });
        await waitFor(async () => (await fetch(`http://127.0.0.1:${dnsManagementPort}/clear-a`, { method: 'POST', body: '{"host":"probe.test."}' }).catch(() => null))?.ok === true,
          { description: 'pebble-challtestsrv management API', timeoutMs: 30_000, intervalMs: 200 });
      } catch (error) {
        const logs = await Promise.all(['pebble.log', 'challtestsrv.log'].map((f) => fs.readFile(path.join(dir, f), 'utf8').catch(() => '')));
        throw new Error(`${(error as Error).message}\n${logs.join('\n').slice(-3000)}`);
      }
    },
    issuingRoot: () => getText(management('/roots/0'), caBundle),
    setAddress: (host, address) => dnsApi('/add-a', { host: `${host}.`, addresses: [address] }),
    clearAddress: (host) => dnsApi('/clear-a', { host: `${host}.` }),
    stop,
  };
}
