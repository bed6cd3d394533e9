import { spawn } from 'node:child_process';
import { appendFile, chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { runCommand } from '../../lib/exec.js';
import { connectSsh, type ConnectSshOptions, type SshSession } from '../../controller/ssh.js';
import { runDeployCli } from '../helpers/agent-process.js';
import { DEPLOY_USER, ensureDeployUser } from '../helpers/deploy-user.js';
import { generateKeyPair, startSshd, type SshdHandle } from '../helpers/sshd.js';
import { waitFor, withDeadline } from '../helpers/wait.js';

/**
 * Every test logs in as the unprivileged deploy user (shell /bin/sh), as on a real VPS: root's
 * bash here sources an rc file that can stall commands for a minute, and sshd ignores "signal"
 * requests on root logins.
 */
beforeAll(async () => {
  await ensureDeployUser();
});

/** Cleanups registered by a test, run after it whatever happened. */
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function optionsFor(sshd: SshdHandle, overrides: Partial<ConnectSshOptions> = {}): ConnectSshOptions {
  return {
    host: sshd.host,
    port: sshd.port,
    username: sshd.user,
    privateKeyPath: sshd.clientKeyPath,
    knownHostsPath: sshd.knownHostsPath,
    agentSocket: '', // never depend on whatever agent the machine running the tests has
    ...overrides,
  };
}

async function open(sshd: SshdHandle, overrides: Partial<ConnectSshOptions> = {}): Promise<SshSession> {
  const session = await connectSsh(optionsFor(sshd, overrides));
  cleanups.push(() => session.close());
  return session;
}

async function freshSshd(options: Parameters<typeof startSshd>[0] = {}): Promise<SshdHandle> {
  const sshd = await startSshd({ user: DEPLOY_USER, ...options });
  cleanups.push(() => sshd.stop());
  return sshd;
}

/** The fingerprint OpenSSH itself computes for a public key file. */
async function opensshFingerprint(publicKeyPath: string): Promise<string> {
  const result = await runCommand(['ssh-keygen', '-lf', publicKeyPath], { timeoutMs: 10_000 });
  expect(result.exitCode).toBe(0);
  return result.stdout.split(' ')[1]!;
}

async function expectSlipwayError(promise: Promise<unknown>, code: string): Promise<SlipwayError> {
  const error = await promise.then(
    () => { throw new Error(`expected a ${code} error, but it succeeded`); },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(SlipwayError);
  expect((error as SlipwayError).code).toBe(code);
  return error as SlipwayError;
}

/**
 * Proves a refused connection never reached authentication: sshd saw our connection end (the
 * readiness probe is the first "Connection from", ours the second) and logged no auth attempt.
 */
async function expectNeverAuthenticated(sshd: SshdHandle): Promise<void> {
  const log = await waitFor(async () => {
    const text = await sshd.log();
    const connections = text.match(/^Connection from 127\.0\.0\.1 port (\d+)/gm) ?? [];
    if (connections.length < 2) return false;
    const ourPort = /port (\d+)/.exec(connections[1]!)![1];
    const ended = new RegExp(`(closed by|disconnect from|Disconnected from).*port ${ourPort}\\b`, 'i');
    return ended.test(text) ? text : false;
  }, { timeoutMs: 10_000, description: 'sshd to log the end of the refused connection' });
  expect(log).not.toMatch(/publickey|Accepted|Starting session/);
}

/**
 * A remote `sleep` with a unique duration, so the test can find its process, wait for it to start
 * or vanish, and kill it by pid afterwards if it outlived the test.
 */
function remoteSleep(): { command: string; started(): Promise<unknown>; gone(): Promise<unknown> } {
  const seconds = `600.${process.pid}${String(Date.now() % 1_000_000).padStart(6, '0')}`;
  const pattern = `^sleep ${seconds.replace('.', '\\.')}$`;
  const pids = async () => (await runCommand(['pgrep', '-f', pattern], { timeoutMs: 5_000 })).stdout.split('\n').filter(Boolean).map(Number);
  cleanups.push(async () => {
    for (const pid of await pids()) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  });
  return {
    command: `sleep ${seconds}`,
    started: () => waitFor(async () => (await pids()).length > 0, { description: `remote "sleep ${seconds}" to start` }),
    gone: () => waitFor(async () => (await pids()).length === 0, { description: `no "sleep ${seconds}" left` }),
  };
}

function httpGet(stream: Duplex, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { createConnection: () => stream as unknown as Socket, path, headers: { host: 'agent.invalid', connection: 'close' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => { body += chunk; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function startHttpServer(listen: (server: Server) => void): Promise<Server> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello ${req.url} via ${req.headers.host}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', resolve);
    listen(server);
  });
  // Do not wait for clients: a frozen sshd would hold its tunnel connection open forever.
  cleanups.push(() => new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  }));
  return server;
}

describe('an SSH session to a real sshd', () => {
  let sshd: SshdHandle;
  let session: SshSession;
  beforeAll(async () => {
    sshd = await startSshd({ user: DEPLOY_USER });
    session = await connectSsh(optionsFor(sshd));
  });
  afterAll(async () => {
    await session?.close();
    await sshd?.stop();
  });

  it('authenticates with the private key and reports exit codes, stdout and stderr', async () => {
    expect(session.remoteAddressLabel).toBe(`${DEPLOY_USER}@127.0.0.1:${sshd.port}`);
    expect(await sshd.log()).toContain(`Accepted publickey for ${DEPLOY_USER} from 127.0.0.1`);

    const ok = await session.exec(['sh', '-c', 'echo out; echo err >&2']);
    expect(ok).toEqual({ exitCode: 0, signal: null, stdout: 'out\n', stderr: 'err\n' });

    const failed = await session.exec(['sh', '-c', 'echo partial; echo "it broke" >&2; exit 42']);
    expect(failed).toEqual({ exitCode: 42, signal: null, stdout: 'partial\n', stderr: 'it broke\n' });

    // $PPID is the login shell sshd started: its death by signal comes back as exit-signal.
    const killed = await session.exec(['sh', '-c', 'kill -TERM $PPID']);
    expect(killed).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
  });

  it('delivers argv to the remote program word for word through the remote shell', async () => {
    const argv = ["it's", '$HOME', '`id`', 'a;b', '', 'new\nline', '*', '"q"', '\\'];
    const result = await session.exec(['printf', '%s\\0', ...argv]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split('\0').slice(0, -1)).toEqual(argv);
  });

  it('feeds stdin and closes it so readers finish', async () => {
    expect((await session.exec(['cat'], { stdin: 'line one\nline two\n' })).stdout).toBe('line one\nline two\n');
    const big = Buffer.alloc(3 * 1024 * 1024, 'x');
    expect((await session.exec(['wc', '-c'], { stdin: big })).stdout.trim()).toBe(String(big.length));
    // Without stdin the remote side gets EOF at once instead of waiting forever.
    expect((await session.exec(['cat'], { timeoutMs: 10_000 })).stdout).toBe('');
  });

  it('drains several MB of stdout and stderr at once without stalling', async () => {
    const started = Date.now();
    const result = await session.exec(
      ['sh', '-c', 'head -c 2000000 /dev/zero | tr "\\0" e >&2 & head -c 8388608 /dev/zero | tr "\\0" o; wait'],
      { timeoutMs: 60_000 },
    );
    expect(result.exitCode).toBe(0);
    expect(result.stdout.length).toBe(8 * 1024 * 1024);
    expect(/^o+$/.test(result.stdout)).toBe(true);
    // stderr is kept as a bounded tail.
    expect(result.stderr.length).toBe(64 * 1024);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('refuses stdout beyond the cap instead of buffering without bound', async () => {
    const error = await expectSlipwayError(
      session.exec(['head', '-c', '300000', '/dev/zero'], { maxStdoutBytes: 100_000 }),
      'remote_output_too_large',
    );
    expect(error.message).toMatch(/more than 100000 bytes/);
    expect((await session.exec(['true'])).exitCode).toBe(0);
  });

  it('execChecked names the step, the exit code and the stderr tail', async () => {
    const ok = await session.execChecked(['echo', 'fine'], { step: 'say hello' });
    expect(ok.stdout).toBe('fine\n');

    const script = 'for i in $(seq 1 40); do echo "noise $i" >&2; done; echo "tar: disk full" >&2; exit 3';
    const error = await expectSlipwayError(session.execChecked(['sh', '-c', script], { step: 'unpack release' }), 'remote_command_failed');
    expect(error.message).toContain('step "unpack release" failed');
    expect(error.message).toContain('exited with code 3');
    expect(error.message).toContain('tar: disk full');
    expect(error.message).toContain(`${DEPLOY_USER}@127.0.0.1:${sshd.port}`);
    expect(error.details?.at(-1)).toBe('tar: disk full');
    expect(error.details).toContain('noise 40');
    expect(error.details).not.toContain('noise 1'); // a tail, not the whole output
    expect(error.hint).toContain(`ssh -p ${sshd.port} ${DEPLOY_USER}@127.0.0.1`);
  });

  it('kills a command at its deadline, children included, and keeps the session usable', async () => {
    const sleep = remoteSleep();
    const started = Date.now();
    const running = session.exec(['sh', '-c', `${sleep.command} & wait`], { timeoutMs: 1_000 });
    await sleep.started();
    const error = await expectSlipwayError(running, 'remote_command_timeout');
    expect(error.message).toMatch(/did not finish within 1000 ms/);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await session.exec(['echo', 'still here'])).stdout).toBe('still here\n');
    // Closing the channel alone would leave the sleep running; sshd's killpg reaches it.
    await sleep.gone();
  });

  it('forwards TCP to a server on the remote loopback', async () => {
    const server = await startHttpServer((s) => s.listen(0, '127.0.0.1'));
    const port = (server.address() as { port: number }).port;
    const stream = await session.forwardOut('127.0.0.1', port);
    expect(await httpGet(stream, '/health')).toEqual({ status: 200, body: 'hello /health via agent.invalid' });
    // Several tunnels over the one connection.
    const results = await Promise.all([1, 2, 3].map(async (n) => httpGet(await session.forwardOut('127.0.0.1', port), `/n${n}`)));
    expect(results.map((result) => result.body)).toEqual([1, 2, 3].map((n) => `hello /n${n} via agent.invalid`));
  });

  it('reports a tunnel to a port where nothing listens', async () => {
    const server = await startHttpServer((s) => s.listen(0, '127.0.0.1'));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    const error = await expectSlipwayError(session.forwardOut('127.0.0.1', port), 'ssh_forward_failed');
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(error.hint).toMatch(/agent running/);
  });

  it('opens a stream to a unix socket on the server', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'slipway-ssh-uds-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'agent.sock');
    await startHttpServer((s) => s.listen(socketPath));
    // sshd connects as the deploy user, who needs to traverse the dir and write to the socket.
    await chmod(dir, 0o711);
    await chmod(socketPath, 0o666);
    const stream = await session.openStreamLocal(socketPath);
    expect(await httpGet(stream, '/apps')).toEqual({ status: 200, body: 'hello /apps via agent.invalid' });
    await expectSlipwayError(session.openStreamLocal(join(dir, 'missing.sock')), 'ssh_forward_failed');
  });
});

describe('host key verification', () => {
  it('refuses a host missing from known_hosts before authenticating, with the command to trust it', async () => {
    const sshd = await freshSshd();
    const dir = await mkdtemp(join(tmpdir(), 'slipway-kh-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const knownHostsPath = join(dir, 'known_hosts');
    await writeFile(knownHostsPath, `# other hosts only\n[127.0.0.1]:${sshd.port + 1} ${sshd.hostPublicKeys[0]}\n`);

    const error = await expectSlipwayError(connectSsh(optionsFor(sshd, { knownHostsPath })), 'host_unknown');
    const fingerprint = await opensshFingerprint(sshd.hostPublicKeyPath);
    expect(error.message).toContain(`127.0.0.1:${sshd.port}`);
    expect(error.message).toContain(fingerprint);
    expect(error.hint).toContain(`ssh-keyscan -p ${sshd.port} -t ed25519 127.0.0.1 >> ${knownHostsPath}`);
    expect(error.hint).toContain('ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub');
    await expectNeverAuthenticated(sshd);

    // Following the hint (keyscan, append) is enough to connect.
    const scan = await runCommand(['ssh-keyscan', '-p', String(sshd.port), '-t', 'ed25519', '127.0.0.1'], { timeoutMs: 20_000 });
    expect(scan.exitCode).toBe(0);
    await appendFile(knownHostsPath, scan.stdout);
    const session = await open(sshd, { knownHostsPath });
    expect((await session.exec(['echo', 'trusted'])).stdout).toBe('trusted\n');
  });

  it('treats a missing known_hosts file as an unknown host', async () => {
    const sshd = await freshSshd();
    const knownHostsPath = join(sshd.dir, 'no-such-known_hosts');
    const error = await expectSlipwayError(connectSsh(optionsFor(sshd, { knownHostsPath })), 'host_unknown');
    expect(error.message).toContain('does not exist');
    await expectNeverAuthenticated(sshd);
  });

  it('refuses a changed host key before authenticating, showing both fingerprints', async () => {
    const sshd = await freshSshd();
    const old = await generateKeyPair(sshd.dir, 'old_host_key');
    const knownHostsPath = join(sshd.dir, 'stale_known_hosts');
    await writeFile(knownHostsPath, `[127.0.0.1]:${sshd.port} ${old.publicKey}\n`);

    const error = await expectSlipwayError(connectSsh(optionsFor(sshd, { knownHostsPath })), 'host_key_mismatch');
    const expected = await opensshFingerprint(old.publicKeyPath);
    const actual = await opensshFingerprint(sshd.hostPublicKeyPath);
    expect(expected).not.toBe(actual);
    expect(error.message).toContain('possible man-in-the-middle');
    expect(error.message).toContain(expected);
    expect(error.message).toContain(actual);
    expect(error.details).toEqual([`presented: ssh-ed25519 ${actual}`, `expected:  ssh-ed25519 ${expected}`]);
    expect(error.hint).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}' -f ${knownHostsPath}`);
    await expectNeverAuthenticated(sshd);
  });

  it('refuses a key marked @revoked', async () => {
    const sshd = await freshSshd();
    const knownHostsPath = join(sshd.dir, 'revoked_known_hosts');
    const current = await readFile(sshd.knownHostsPath, 'utf8');
    await writeFile(knownHostsPath, `${current}@revoked * ${sshd.hostPublicKeys[0]}\n`);
    const error = await expectSlipwayError(connectSsh(optionsFor(sshd, { knownHostsPath })), 'host_key_mismatch');
    expect(error.message).toMatch(/REVOKED/);
    await expectNeverAuthenticated(sshd);
  });

  it('negotiates the host key type known_hosts holds when the server has several', async () => {
    const sshd = await freshSshd({ extraHostKeyTypes: ['ecdsa'] });
    const ecdsa = sshd.hostPublicKeys[1]!;
    expect(ecdsa).toMatch(/^ecdsa-sha2-nistp256 /);
    const knownHostsPath = join(sshd.dir, 'ecdsa_known_hosts');
    // Only the ECDSA key is known; ssh2 on its own would prefer the server's Ed25519 key.
    await writeFile(knownHostsPath, `[127.0.0.1]:${sshd.port} ${ecdsa}\n`);
    const session = await open(sshd, { knownHostsPath });
    expect((await session.exec(['true'])).exitCode).toBe(0);
  });
});

describe('authentication', () => {
  it('fails with ssh_auth_failed and a hint when the key is not authorized', async () => {
    const sshd = await freshSshd();
    const stranger = await generateKeyPair(sshd.dir, 'stranger_key');
    const deadAgent = join(sshd.dir, 'no-agent.sock');
    const error = await expectSlipwayError(
      connectSsh(optionsFor(sshd, { privateKeyPath: stranger.privateKeyPath, agentSocket: deadAgent })),
      'ssh_auth_failed',
    );
    expect(error.message).toContain(`as ${DEPLOY_USER} to 127.0.0.1:${sshd.port}`);
    expect(error.message).toContain(stranger.privateKeyPath);
    // An unreachable agent is one more failed method, not a connection error.
    expect(error.message).toContain(`ssh-agent at ${deadAgent}`);
    expect(error.details).toEqual([`ssh-agent at ${deadAgent}: Failed to connect to agent`]);
    expect(error.hint).toContain('authorized_keys');
    expect(await sshd.log()).not.toMatch(/Accepted publickey/);
  });

  it('needs the passphrase of an encrypted key, and says so', async () => {
    const sshd = await freshSshd();
    const keyPath = join(sshd.dir, 'encrypted_key');
    const keygen = await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'correct horse', '-f', keyPath], { timeoutMs: 20_000 });
    expect(keygen.exitCode).toBe(0);
    await writeFile(join(sshd.dir, 'authorized_keys'), await readFile(`${keyPath}.pub`));

    const error = await expectSlipwayError(connectSsh(optionsFor(sshd, { privateKeyPath: keyPath })), 'ssh_key_unusable');
    expect(error.message).toMatch(/passphrase/i);
    expect(error.hint).toContain('ssh-add');
    const session = await open(sshd, { privateKeyPath: keyPath, passphrase: 'correct horse' });
    expect((await session.exec(['echo', 'unlocked'])).stdout).toBe('unlocked\n');
  });

  it('fails before connecting when there are no credentials at all', async () => {
    const sshd = await freshSshd();
    await expectSlipwayError(connectSsh(optionsFor(sshd, { privateKeyPath: undefined, agentSocket: '' })), 'ssh_no_credentials');
  });

  it('logs in through ssh-agent', async () => {
    const sshd = await freshSshd();
    const socket = join(sshd.dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    cleanups.push(() => { agent.kill('SIGTERM'); });
    await waitFor(async () => (await runCommand(['ssh-add', '-l'], { env: { ...process.env, SSH_AUTH_SOCK: socket }, timeoutMs: 5_000 })).exitCode === 1,
      { timeoutMs: 10_000, description: 'ssh-agent to answer with an empty key list' });
    const add = await runCommand(['ssh-add', sshd.clientKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket }, timeoutMs: 10_000 });
    expect(add.exitCode).toBe(0);

    const session = await open(sshd, { privateKeyPath: undefined, agentSocket: socket });
    expect((await session.exec(['echo', 'via agent'])).stdout).toBe('via agent\n');
  });
});

describe('a lost connection', () => {
  /** A session with an open tunnel and a running remote command, both of which a lost link must fail. */
  async function busy(session: SshSession): Promise<{ running: Promise<unknown>; tunnelError: Promise<unknown> }> {
    const server = await startHttpServer((s) => s.listen(0, '127.0.0.1'));
    const tunnel = await session.forwardOut('127.0.0.1', (server.address() as { port: number }).port);
    const tunnelError = new Promise<unknown>((resolve) => tunnel.once('error', resolve));
    const sleep = remoteSleep();
    const running = session.exec(['sh', '-c', sleep.command], { timeoutMs: 120_000 });
    running.catch(() => {});
    // Only once the sleep exists is it among the processes killConnections() finds.
    await sleep.started();
    return { running, tunnelError };
  }

  it('fails a running exec with ssh_connection_lost when the link drops', async () => {
    const sshd = await freshSshd();
    const session = await open(sshd);
    const closed = new Promise<SlipwayError | undefined>((resolve) => session.onClose(resolve));
    const { running, tunnelError } = await busy(session);

    const started = Date.now();
    expect(await sshd.killConnections()).toBeGreaterThan(0);
    const error = await expectSlipwayError(withDeadline(running, 15_000, 'the exec to fail'), 'ssh_connection_lost');
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error.message).toContain(`${DEPLOY_USER}@127.0.0.1:${sshd.port}`);
    // ssh2 alone would end the tunnel like a clean EOF; a half-sent upload must see an error.
    expect(await withDeadline(tunnelError, 5_000, 'the tunnel to report an error')).toMatchObject({ code: 'ssh_connection_lost' });
    expect((await withDeadline(closed, 5_000, 'onClose'))?.code).toBe('ssh_connection_lost');
    expect(session.closed).toBe(true);
    await expectSlipwayError(session.exec(['true']), 'ssh_connection_lost');
  });

  it('detects a silent dead link by keepalive and fails execs and tunnels', async () => {
    const sshd = await freshSshd();
    const session = await open(sshd, { keepaliveIntervalMs: 300, keepaliveCountMax: 2 });
    const { running, tunnelError } = await busy(session);

    // Stopped, not killed: the TCP connection stays open and only keepalive can notice.
    const started = Date.now();
    expect(await sshd.freezeConnections()).toBeGreaterThan(0);
    const error = await expectSlipwayError(withDeadline(running, 15_000, 'keepalive to fail the exec'), 'ssh_connection_lost');
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error.message).toMatch(/Keepalive timeout/i);
    expect(await withDeadline(tunnelError, 5_000, 'the tunnel to report an error')).toMatchObject({ code: 'ssh_connection_lost' });
  });

  it('close() ends the session cleanly and later calls are refused', async () => {
    const sshd = await freshSshd();
    const session = await connectSsh(optionsFor(sshd));
    const closed = new Promise<SlipwayError | undefined>((resolve) => session.onClose(resolve));
    await session.close();
    expect(await closed).toBeUndefined();
    expect(session.closed).toBe(true);
    await expectSlipwayError(session.exec(['true']), 'ssh_session_closed');
    await expectSlipwayError(session.forwardOut('127.0.0.1', 1), 'ssh_session_closed');
    await waitFor(async () => (await sshd.log()).includes(`Disconnected from user ${DEPLOY_USER}`), { description: 'sshd to log the disconnect' });
  });
});

describe('exit codes of SSH problems through the deploy CLI (issue 10, defect 3)', () => {
  /** Runs `deploy status` against `sshd` with the host section patched; the CLI never gets past connecting. */
  async function statusWith(sshd: SshdHandle, host: Record<string, unknown>) {
    const config = join(sshd.dir, `deploy-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(config, JSON.stringify({
      app: 'sample',
      host: { address: sshd.host, port: sshd.port, user: sshd.user, identityFile: sshd.clientKeyPath, knownHostsFile: sshd.knownHostsPath, ...host },
      agent: {},
    }));
    const result = await runDeployCli(['status', '--config', config], { cwd: sshd.dir, timeoutMs: 60_000 });
    expect(await sshd.log(), 'nothing logged in').not.toMatch(/Accepted publickey/);
    return result;
  }

  it('a key file that cannot be read is a usage error (exit 2), not "failed before the switch"', async () => {
    const sshd = await freshSshd();
    const result = await statusWith(sshd, { identityFile: join(sshd.dir, 'no_such_key') });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`cannot read SSH private key ${join(sshd.dir, 'no_such_key')}`);
  });

  it('a known_hosts path that cannot be read is a usage error (exit 2)', async () => {
    const sshd = await freshSshd();
    const result = await statusWith(sshd, { knownHostsFile: sshd.dir });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`cannot read known_hosts file ${sshd.dir}`);
  });

  it('no key and no ssh-agent is a usage error (exit 2)', async () => {
    const sshd = await freshSshd();
    const result = await statusWith(sshd, { identityFile: undefined });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('no SSH credentials');
  });

  it('an encrypted key without its passphrase is a usage error (exit 2)', async () => {
    const sshd = await freshSshd();
    const keyPath = join(sshd.dir, 'encrypted_cli_key');
    expect((await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'secret words', '-f', keyPath], { timeoutMs: 20_000 })).exitCode).toBe(0);
    const result = await statusWith(sshd, { identityFile: keyPath });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/cannot use the SSH credentials .*passphrase/i);
  });
});
