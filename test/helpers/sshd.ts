import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { runCommand, outputTail } from '../../lib/exec.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';
import { knownHostsName } from '../../controller/known-hosts.js';

const SSHD = '/usr/sbin/sshd';
/**
 * Not under /tmp: with StrictModes sshd checks every directory above AuthorizedKeysFile, and
 * /tmp (mode 1777) fails that check. /run is root-owned 0755 and emptied on reboot.
 */
const BASE_DIR = '/run/slipway-test';

export interface SshdOptions {
  /**
   * Login user; defaults to root (tests run as root). Its password field must not be locked (`!`).
   * Prefer an unprivileged user with /bin/sh (deploy-user.ts): root's bash on these machines
   * sources a ~/.bashrc whose `pyenv init` can stall each command for 60 s, and sshd ignores
   * "signal" requests (used to kill timed-out commands) on root logins.
   */
  user?: string;
  /** Host keys besides the ed25519 one (which stays the only key in knownHostsPath). */
  extraHostKeyTypes?: ('ecdsa' | 'rsa')[];
  /** Address to listen on (default 127.0.0.1), e.g. a network namespace's own address (netns.ts). */
  listenAddress?: string;
  /** Fixed port (e.g. 22 inside a namespace); default a free loopback port, retried if taken. */
  port?: number;
  /** argv prefix the daemon is started with, e.g. `ip netns exec NS` (which execs: same pid). */
  spawnPrefix?: readonly string[];
}

export interface SshdHandle {
  /** 127.0.0.1, or SshdOptions.listenAddress. */
  host: string;
  port: number;
  user: string;
  clientKeyPath: string;
  /**
   * known_hosts holding exactly this server's key as `[127.0.0.1]:port ssh-ed25519 ...`, or as
   * `host ssh-ed25519 ...` on port 22 (no brackets: the form ssh and known-hosts.ts look up).
   */
  knownHostsPath: string;
  hostPublicKeyPath: string;
  /** Every host key the server holds, `type base64`, the ed25519 one first. */
  hostPublicKeys: string[];
  logPath: string;
  pid: number;
  dir: string;
  /** The sshd log so far. */
  log(): Promise<string>;
  /** SIGKILL every per-connection sshd process (and what they run): a dropped link, seen as a closed socket. */
  killConnections(): Promise<number>;
  /** SIGSTOP them instead: a silent dead link (TCP still open, nothing answers) that only keepalive detects. */
  freezeConnections(): Promise<number>;
  stop(): Promise<void>;
}

export interface KeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
  /** `ssh-ed25519 AAAA...` without the comment. */
  publicKey: string;
}

export async function generateKeyPair(dir: string, name: string, type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519'): Promise<KeyPair> {
  const privateKeyPath = join(dir, name);
  const result = await runCommand(['ssh-keygen', '-q', '-t', type, '-N', '', '-C', `slipway-test-${name}`, '-f', privateKeyPath], {
    timeoutMs: 20_000,
  });
  if (result.exitCode !== 0) throw new Error(`ssh-keygen failed (${result.exitCode}): ${outputTail(result.stderr)}`);
  const publicKeyPath = `${privateKeyPath}.pub`;
  const [keyType, base64] = (await readFile(publicKeyPath, 'utf8')).trim().split(/\s+/);
  return { privateKeyPath, publicKeyPath, publicKey: `${keyType} ${base64}` };
}

/** Direct and indirect children of `rootPid`, read from /proc (parent pid is field 4 of stat). */
export async function descendantPids(rootPid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(name), Number(rest[1]));
    } catch {
      // exited while we were reading
    }
  }
  const found: number[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [pid, ppid] of parents) {
      if (ppid === parent && !found.includes(pid)) {
        found.push(pid);
        queue.push(pid);
      }
    }
  }
  return found;
}

function signalAll(pids: number[], signal: NodeJS.Signals): number {
  let signalled = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
      signalled += 1;
    } catch {
      // already gone
    }
  }
  return signalled;
}

// If a test dies without calling stop(), do not leave daemons behind when the worker exits.
const running = new Map<number, () => number[]>();
let exitHookInstalled = false;
function trackForExit(pid: number, lastKnownChildren: () => number[]): void {
  running.set(pid, lastKnownChildren);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [daemon, children] of running) signalAll([...children(), daemon], 'SIGKILL');
  });
}

/** Whether an SSH server answers its banner at host:port within 2 s. */
export function bannerReceived(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let data = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      if (data.includes('\n')) done(data.startsWith('SSH-2.0-'));
    });
    socket.on('end', () => done(false));
  });
}

function sshdConfig(dir: string, host: string, port: number, user: string, hostKeyPaths: string[]): string {
  return [
    `ListenAddress ${host}:${port}`,
    ...hostKeyPaths.map((path) => `HostKey ${path}`),
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'StrictModes yes',
    'PermitRootLogin prohibit-password',
    `AllowUsers ${user}`,
    'AllowTcpForwarding yes',
    'AllowStreamLocalForwarding yes',
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PrintMotd no',
    'UseDNS no',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * A private sshd on 127.0.0.1 and a free port, with its own host key, config, authorized client
 * key and log, all in a fresh directory that stop() removes.
 */
export async function startSshd(options: SshdOptions = {}): Promise<SshdHandle> {
  const user = options.user ?? 'root';
  const host = options.listenAddress ?? '127.0.0.1';
  const privsep = await runCommand(['install', '-d', '-m', '755', '/run/sshd'], { timeoutMs: 10_000 });
  if (privsep.exitCode !== 0) throw new Error(`cannot create /run/sshd: ${privsep.stderr}`);
  await mkdir(BASE_DIR, { recursive: true, mode: 0o755 });
  await chmod(BASE_DIR, 0o755);
  const dir = await mkdtemp(join(BASE_DIR, 'sshd-'));
  // A non-root user's sshd child must be able to reach authorized_keys.
  await chmod(dir, 0o755);
  try {
    const hostKey = await generateKeyPair(dir, 'ssh_host_ed25519_key');
    const extraHostKeys = await Promise.all(
      (options.extraHostKeyTypes ?? []).map((type) => generateKeyPair(dir, `ssh_host_${type}_key`, type)),
    );
    const hostKeys = [hostKey, ...extraHostKeys];
    const clientKey = await generateKeyPair(dir, 'client_key');
    const authorizedKeysPath = join(dir, 'authorized_keys');
    await writeFile(authorizedKeysPath, `${clientKey.publicKey}\n`, { mode: 0o644 });
    const logPath = join(dir, 'sshd.log');
    const configPath = join(dir, 'sshd_config');

    // freePort() can race with another process taking the port: retry with a fresh one.
    let lastFailure = '';
    for (let attempt = 1; attempt <= (options.port === undefined ? 3 : 1); attempt += 1) {
      const port = options.port ?? await freePort();
      await writeFile(configPath, sshdConfig(dir, host, port, user, hostKeys.map((key) => key.privateKeyPath)), { mode: 0o644 });
      const check = await runCommand([SSHD, '-t', '-f', configPath], { timeoutMs: 20_000 });
      if (check.exitCode !== 0) throw new Error(`sshd -t rejected the test config: ${outputTail(check.stderr)}`);
      await rm(logPath, { force: true });

      const [command, ...args] = [...(options.spawnPrefix ?? []), SSHD, '-D', '-f', configPath, '-E', logPath];
      const child = spawn(command!, args, { stdio: 'ignore' });
      let spawnError: Error | undefined;
      child.on('error', (error) => { spawnError = error; });
      const pid = child.pid;
      if (pid === undefined) throw new Error(`could not start ${SSHD}: ${spawnError?.message ?? 'no pid'}`);
      let knownChildren: number[] = [];
      trackForExit(pid, () => knownChildren);

      const exited = () => child.exitCode !== null || child.signalCode !== null || spawnError !== undefined;
      try {
        // The log line proves the bind was ours: if another process had taken the port, the banner
        // alone could come from its server while ours is on its way out.
        const listening = `Server listening on ${host} port ${port}.`;
        await waitFor(async () => {
          if (exited()) return 'exited';
          if (!(await readFile(logPath, 'utf8').catch(() => '')).includes(listening)) return false;
          return (await bannerReceived(host, port)) ? 'ready' : false;
        }, { timeoutMs: 20_000, intervalMs: 50, description: `sshd (pid ${pid}) to answer on ${host}:${port}` });
      } catch (error) {
        child.kill('SIGKILL');
        running.delete(pid);
        throw error;
      }
      if (exited()) {
        running.delete(pid);
        lastFailure = await readFile(logPath, 'utf8').catch(() => '');
        if (/Address already in use|Cannot bind/i.test(lastFailure)) continue;
        throw new Error(`sshd exited at start: ${outputTail(lastFailure)}`);
      }

      const knownHostsPath = join(dir, 'known_hosts');
      await writeFile(knownHostsPath, `${knownHostsName(host, port)} ${hostKey.publicKey}\n`, { mode: 0o644 });

      const signalConnections = async (signal: NodeJS.Signals) => {
        const pids = await descendantPids(pid);
        knownChildren = [...new Set([...knownChildren, ...pids])];
        return signalAll(pids, signal);
      };
      let stopped = false;
      return {
        host,
        port,
        user,
        clientKeyPath: clientKey.privateKeyPath,
        knownHostsPath,
        hostPublicKeyPath: hostKey.publicKeyPath,
        hostPublicKeys: hostKeys.map((key) => key.publicKey),
        logPath,
        pid,
        dir,
        log: () => readFile(logPath, 'utf8'),
        killConnections: () => signalConnections('SIGKILL'),
        freezeConnections: () => signalConnections('SIGSTOP'),
        async stop() {
          if (stopped) return;
          stopped = true;
          // Connection processes outlive the listener, and frozen ones only die from SIGKILL.
          signalAll([...new Set([...knownChildren, ...(await descendantPids(pid))])], 'SIGKILL');
          child.kill('SIGTERM');
          if (!(await waitForExit(child, 5_000))) {
            child.kill('SIGKILL');
            await waitForExit(child, 5_000);
          }
          running.delete(pid);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    throw new Error(`sshd could not bind a free port after 3 attempts: ${outputTail(lastFailure)}`);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
