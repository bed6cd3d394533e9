import { TailBuffer } from '../lib/tail-buffer.js';
import { readFile } from 'node:fs/promises';
import { Duplex } from 'node:stream';
import { Client, type ClientChannel, type ConnectConfig, type ServerHostKeyAlgorithm } from 'ssh2';
import { SlipwayError, errorMessage } from '../contract/errors.js';
import { outputTail } from '../lib/exec.js';
import {
  findHostKeys,
  hostKeyAlgorithmsFor,
  knownHostsName,
  parseKnownHosts,
  shortKeyTypeName,
  verifyHostKey,
  type KnownHostsEntry,
} from './known-hosts.js';
import { displayArgv, quoteArgv } from './shell-quote.js';

/**
 * The controller's one SSH connection per run: host key checked against known_hosts before
 * anything else, commands as argv, tunnels to the agent, and a lost link reported to every
 * operation still waiting on it (ssh2 by itself just ends their streams as if all went well).
 */

export interface ConnectSshOptions {
  host: string;
  port: number;
  username: string;
  privateKey?: Buffer | string;
  privateKeyPath?: string;
  passphrase?: Buffer | string;
  /** ssh-agent socket; defaults to SSH_AUTH_SOCK. Pass '' to not use an agent. */
  agentSocket?: string;
  knownHostsPath: string;
  /** Deadline for TCP connect + handshake + authentication. */
  connectTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the link is declared dead (after about interval × (max + 1)). */
  keepaliveCountMax?: number;
}

export interface ExecOptions {
  /** Overall deadline; on expiry the channel is closed and the call fails. */
  timeoutMs?: number;
  stdin?: string | Buffer;
  /** stdout is returned whole, so it is capped; stderr keeps only its tail. */
  maxStdoutBytes?: number;
}

export interface ExecCheckedOptions extends ExecOptions {
  /** Names the step in the error, e.g. "unpack release". */
  step: string;
}

export interface ExecResult {
  /** null when the remote process was killed by a signal. */
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface SshSession {
  /** `user@host:port`, for messages. */
  readonly remoteAddressLabel: string;
  readonly closed: boolean;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * exec that throws `remote_command_failed` on a non-zero exit. The error shows the command, so
   * secrets go on stdin, never in argv.
   */
  execChecked(argv: readonly string[], options: ExecCheckedOptions): Promise<ExecResult>;
  /** A TCP stream to remoteHost:remotePort as seen from the server (e.g. the agent on its loopback). */
  forwardOut(remoteHost: string, remotePort: number): Promise<Duplex>;
  /** A stream to a unix socket on the server (OpenSSH streamlocal forwarding). */
  openStreamLocal(socketPath: string): Promise<Duplex>;
  close(): Promise<void>;
  /** Called once when the connection ends: with the error if it was lost, without if close() ended it. */
  onClose(callback: (error?: SlipwayError) => void): void;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_INTERVAL_MS = 5_000;
const DEFAULT_KEEPALIVE_COUNT_MAX = 3;
const DEFAULT_EXEC_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_STDOUT_BYTES = 64 * 1024 * 1024;
const STDERR_TAIL_BYTES = 64 * 1024;
const CLOSE_GRACE_MS = 5_000;

type Ssh2Error = Error & { level?: string; code?: string | number };

interface PendingOperation {
  fail(error: SlipwayError): void;
}

async function readKnownHosts(path: string): Promise<{ entries: KnownHostsEntry[]; missing: boolean }> {
  try {
    return { entries: parseKnownHosts(await readFile(path, 'utf8')), missing: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], missing: true };
    throw new SlipwayError('known_hosts_unreadable', `cannot read known_hosts file ${path}: ${errorMessage(error)}`, {
      hint: 'check the knownHostsPath setting and the file permissions',
      cause: error,
    });
  }
}

async function readPrivateKey(options: ConnectSshOptions): Promise<Buffer | string | undefined> {
  if (options.privateKey !== undefined) return options.privateKey;
  if (options.privateKeyPath === undefined) return undefined;
  try {
    return await readFile(options.privateKeyPath);
  } catch (error) {
    throw new SlipwayError('ssh_key_unreadable', `cannot read SSH private key ${options.privateKeyPath}: ${errorMessage(error)}`, {
      hint: 'check the ssh key path in deploy.config.json, or leave it out to use ssh-agent',
      cause: error,
    });
  }
}

function hostUnknownError(
  options: ConnectSshOptions,
  presented: { type: string; fingerprint: string },
  knownHostsMissing: boolean,
): SlipwayError {
  const short = shortKeyTypeName(presented.type);
  const keyscan = `${displayArgv(['ssh-keyscan', '-p', String(options.port), '-t', short, options.host])} >> ${displayArgv([options.knownHostsPath])}`;
  const check = displayArgv(['ssh-keygen', '-lf', `/etc/ssh/ssh_host_${short}_key.pub`]);
  return new SlipwayError(
    'host_unknown',
    `host ${options.host}:${options.port} is not in ${options.knownHostsPath}${knownHostsMissing ? ' (the file does not exist)' : ''}; `
      + `it presented a ${presented.type} key with fingerprint ${presented.fingerprint}. Refusing to connect.`,
    {
      hint: `first check that ${presented.fingerprint} is the server's real key: on the server (console or another trusted channel) run \`${check}\`. `
        + `If the fingerprints match, trust it with: ${keyscan}`,
      details: [`presented: ${presented.type} ${presented.fingerprint}`],
    },
  );
}

function hostKeyRejectedError(
  options: ConnectSshOptions,
  reason: 'mismatch' | 'revoked',
  presented: { type: string; fingerprint: string },
  expected: { type: string; fingerprint: string }[],
): SlipwayError {
  const where = `${options.host}:${options.port}`;
  const details = [
    `presented: ${presented.type} ${presented.fingerprint}`,
    ...expected.map((key) => `expected:  ${key.type} ${key.fingerprint}`),
  ];
  if (reason === 'revoked') {
    return new SlipwayError(
      'host_key_mismatch',
      `host ${where} presented a REVOKED host key ${presented.type} ${presented.fingerprint} (marked @revoked in ${options.knownHostsPath}). Refusing to connect.`,
      { hint: 'the server is still using a key you revoked: install a new host key on the server, then trust the new key', details },
    );
  }
  const removeOld = displayArgv(['ssh-keygen', '-R', knownHostsName(options.host, options.port), '-f', options.knownHostsPath]);
  return new SlipwayError(
    'host_key_mismatch',
    `HOST KEY CHANGED for ${where}: possible man-in-the-middle attack. `
      + `Expected ${expected.map((key) => `${key.type} ${key.fingerprint}`).join(' or ')}, `
      + `but the server presented ${presented.type} ${presented.fingerprint}. Refusing to connect.`,
    {
      hint: 'do not connect until you know why the key changed. If the server was reinstalled or its key rotated on purpose, '
        + `remove the old entry with \`${removeOld}\` and add the new key after checking its fingerprint on the server `
        + `(\`ssh-keygen -lf /etc/ssh/ssh_host_${shortKeyTypeName(presented.type)}_key.pub\`)`,
      details,
    },
  );
}

function connectError(options: ConnectSshOptions, error: Ssh2Error, usedMethods: string[], authProblems: string[]): SlipwayError {
  const where = `${options.host}:${options.port}`;
  if (error.level === 'client-authentication') {
    return new SlipwayError(
      'ssh_auth_failed',
      `SSH authentication as ${options.username} to ${where} failed (tried: ${usedMethods.join(', ')})`,
      {
        details: authProblems.length > 0 ? authProblems : undefined,
        hint: `check that the user name is right and that the public key is in ~${options.username}/.ssh/authorized_keys on the server; `
          + `\`${displayArgv(['ssh', '-v', '-p', String(options.port), ...(options.privateKeyPath ? ['-i', options.privateKeyPath] : []), `${options.username}@${options.host}`, 'true'])}\` shows what OpenSSH makes of it`,
        cause: error,
      },
    );
  }
  if (error.level === 'client-timeout') {
    return new SlipwayError('ssh_connect_failed', `timed out connecting to ${where} (SSH handshake did not complete)`, {
      hint: 'check that the host and port are right and that sshd answers there (firewall, security group)',
      cause: error,
    });
  }
  return new SlipwayError('ssh_connect_failed', `cannot connect to ${where}: ${error.message}`, {
    hint: 'check that the host and port are right, that sshd runs there, and that no firewall blocks the port',
    cause: error,
  });
}

export async function connectSsh(options: ConnectSshOptions): Promise<SshSession> {
  const { host, port, username } = options;
  const label = `${username}@${host}:${port}`;
  // Read once, before connecting: the verdict must not depend on a file changing mid-handshake.
  const knownHosts = await readKnownHosts(options.knownHostsPath);
  const knownKeys = findHostKeys(knownHosts.entries, host, port);
  const algorithms = hostKeyAlgorithmsFor(knownKeys.map((key) => key.keyType)) as ServerHostKeyAlgorithm[];

  const privateKey = await readPrivateKey(options);
  const agent = options.agentSocket ?? process.env.SSH_AUTH_SOCK ?? '';
  const methods: ('publickey' | 'agent')[] = [];
  const usedMethods: string[] = [];
  if (privateKey !== undefined) {
    methods.push('publickey');
    usedMethods.push(`private key ${options.privateKeyPath ?? '(given inline)'}`);
  }
  if (agent !== '') {
    methods.push('agent');
    usedMethods.push(`ssh-agent at ${agent}`);
  }
  if (methods.length === 0) {
    throw new SlipwayError('ssh_no_credentials', `no SSH credentials to log in to ${label}`, {
      hint: 'set the ssh private key path in deploy.config.json, or start ssh-agent and `ssh-add` your key (SSH_AUTH_SOCK)',
    });
  }

  const client = new Client();
  let hostKeyError: SlipwayError | undefined;
  const config: ConnectConfig = {
    host,
    port,
    username,
    readyTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepaliveInterval: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
    keepaliveCountMax: options.keepaliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
    authHandler: methods,
    // No hostHash: the verifier gets the raw key blob and compares whole keys, not a hex digest.
    hostVerifier: (key: Buffer): boolean => {
      try {
        const verdict = verifyHostKey(knownHosts.entries, host, port, key);
        if (verdict.ok) return true;
        hostKeyError = verdict.reason === 'unknown'
          ? hostUnknownError(options, verdict.presented, knownHosts.missing)
          : hostKeyRejectedError(options, verdict.reason, verdict.presented, verdict.expected);
      } catch (error) {
        hostKeyError = error instanceof SlipwayError ? error : new SlipwayError('host_key_unreadable', errorMessage(error));
      }
      return false; // fail closed: anything but a verified match ends the handshake
    },
  };
  if (algorithms.length > 0) config.algorithms = { serverHostKey: algorithms };
  if (privateKey !== undefined) config.privateKey = privateKey;
  if (options.passphrase !== undefined) config.passphrase = options.passphrase;
  if (agent !== '') config.agent = agent;

  return new Promise<SshSession>((resolve, reject) => {
    let settled = false;
    let lastError: Ssh2Error | undefined;
    const authProblems: string[] = [];
    const fail = (error: SlipwayError) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('ready');
      // Keep an error listener: ssh2 may still emit while tearing down, and an unhandled one crashes.
      client.on('error', () => {});
      client.destroy();
      reject(error);
    };
    client.on('error', (error: Ssh2Error) => {
      // ssh2 reports a method that could not even be tried (agent socket unreachable, key that
      // cannot sign) as an error, then goes on to the next method: note it for the final message.
      const methodFailed = error.level === 'agent'
        || (error.level === 'client-authentication' && !/All configured authentication methods failed/.test(error.message));
      if (methodFailed && !hostKeyError) {
        authProblems.push(`${error.level === 'agent' ? `ssh-agent at ${agent}` : 'private key'}: ${error.message}`);
        return;
      }
      lastError = error;
      fail(hostKeyError ?? connectError(options, error, usedMethods, authProblems));
    });
    client.on('close', () => {
      fail(hostKeyError ?? (lastError
        ? connectError(options, lastError, usedMethods, authProblems)
        : new SlipwayError('ssh_connect_failed', `${label} closed the connection during the SSH handshake`, {
            hint: 'check the server\'s sshd log (journalctl -u ssh) for why it dropped the connection',
          })));
    });
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('error');
      client.removeAllListeners('close');
      resolve(new Ssh2Session(client, label, `ssh -p ${port} ${username}@${host}`, {
        intervalMs: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
        countMax: options.keepaliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
      }));
    });
    try {
      client.connect(config);
      // Without it, Nagle's algorithm meets the server's delayed ACK and every request over the
      // connection (exec, tunnel, API call) waited ~40 ms per round trip: ~90 ms instead of ~5 ms.
      client.setNoDelay(true);
    } catch (error) {
      // ssh2 throws synchronously for keys it cannot parse (e.g. encrypted without passphrase).
      fail(new SlipwayError('ssh_key_unusable', `cannot use the SSH credentials for ${label}: ${errorMessage(error)}`, {
        hint: 'for an encrypted key pass its passphrase, or load it into ssh-agent with `ssh-add` and leave the key path out',
        cause: error,
      }));
    }
  });
}

interface ChannelInternals {
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { signal?: (id: number, signal: string) => void } };
}

/**
 * Sends an SSH "signal" request, which OpenSSH's sshd (7.9+) turns into killpg() of the
 * command's process group, but only for non-root logins: root sessions run without post-auth
 * privilege separation and sshd logs "session signalling requires privilege separation".
 * ssh2's public channel.signal() refuses once our stdin has ended, which for exec is from the
 * start, so this goes one level down, to the same protocol call. Best effort by nature.
 */
function killRemote(channel: ClientChannel): void {
  const internals = channel as unknown as ChannelInternals;
  const id = internals.outgoing?.id;
  const state = internals.outgoing?.state;
  const signal = internals._client?._protocol?.signal;
  if (id === undefined || (state !== 'open' && state !== 'eof') || typeof signal !== 'function') return;
  try {
    signal.call(internals._client!._protocol, id, 'KILL');
  } catch {
    // best effort: the channel is closed right after anyway
  }
}


class Ssh2Session implements SshSession {
  private readonly pending = new Set<PendingOperation>();
  private readonly streams = new Set<Duplex>();
  private readonly closeCallbacks: ((error?: SlipwayError) => void)[] = [];
  private endError: SlipwayError | undefined;
  private ended = false;
  private closing = false;
  private lastError: Ssh2Error | undefined;
  private readonly closedPromise: Promise<void>;

  constructor(
    private readonly client: Client,
    readonly remoteAddressLabel: string,
    private readonly sshCommand: string,
    private readonly keepalive: { intervalMs: number; countMax: number },
  ) {
    let markClosed!: () => void;
    this.closedPromise = new Promise((resolve) => { markClosed = resolve; });
    client.on('error', (error: Ssh2Error) => {
      // After the handshake every ssh2 client error (keepalive timeout, socket reset, protocol
      // error) is fatal to the connection: make sure it really goes down and everyone hears.
      this.lastError = error;
      this.lose();
      client.destroy();
    });
    // ssh2 emits 'close' on the client before it ends the channels, so pending operations are
    // failed here first and never mistake the teardown for a clean end of stream.
    client.on('close', () => {
      this.lose();
      markClosed();
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  private lostError(): SlipwayError {
    const { intervalMs, countMax } = this.keepalive;
    const reason = !this.lastError
      ? 'the connection was closed by the server or the network'
      : /keepalive/i.test(this.lastError.message)
        // Say which settings decided it: a slow link may need a longer interval, not a retry.
        ? `${this.lastError.message} (no answer to ${countMax} keepalive(s), one every ${intervalMs / 1000} s: host.keepaliveIntervalMs / host.keepaliveCountMax in deploy.config.json)`
        : this.lastError.message;
    return new SlipwayError('ssh_connection_lost', `SSH connection to ${this.remoteAddressLabel} lost: ${reason}`, {
      hint: 'check the network and that the server is up (sshd running, box not rebooting), then run the command again; '
        + 'a partial upload is never used as a release',
      cause: this.lastError,
    });
  }

  private lose(): void {
    if (this.ended) return;
    this.ended = true;
    const error = this.closing ? undefined : this.lostError();
    this.endError = error;
    const operationError = error ?? new SlipwayError('ssh_session_closed', `the SSH session to ${this.remoteAddressLabel} was closed while an operation was running`, {
      hint: 'this is a bug in Slipway: an operation outlived the session it used',
    });
    for (const operation of [...this.pending]) operation.fail(operationError);
    this.pending.clear();
    for (const stream of [...this.streams]) {
      // ssh2's Channel.destroy() ignores its error argument and only ends the channel, which a
      // reader would take for a clean EOF: use the plain stream destroy so it emits 'error'.
      if (error) Duplex.prototype.destroy.call(stream, error);
      else stream.destroy();
    }
    this.streams.clear();
    for (const callback of this.closeCallbacks.splice(0)) callback(error);
  }

  private notOpenError(): SlipwayError {
    return this.endError ?? new SlipwayError('ssh_session_closed', `the SSH session to ${this.remoteAddressLabel} is closed`, {
      hint: 'this is a bug in Slipway: the session was used after close()',
    });
  }

  onClose(callback: (error?: SlipwayError) => void): void {
    if (this.ended) {
      const error = this.endError;
      queueMicrotask(() => callback(error));
      return;
    }
    this.closeCallbacks.push(callback);
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const command = quoteArgv(argv);
    if (this.ended || this.closing) throw this.notOpenError();
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const maxStdout = options.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;
    const shown = displayArgv(argv);

    return new Promise<ExecResult>((resolve, reject) => {
      let settled = false;
      let channel: ClientChannel | undefined;
      const finish = (error: Error | undefined, result?: ExecResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pending.delete(operation);
        if (error) {
          if (channel && !this.ended) {
            // Closing the channel alone leaves the remote command running: kill its process group.
            killRemote(channel);
            channel.close();
          }
          reject(error);
        } else {
          resolve(result!);
        }
      };
      const operation: PendingOperation = { fail: (error) => finish(error) };
      this.pending.add(operation);
      const timer = setTimeout(() => {
        finish(new SlipwayError('remote_command_timeout', `\`${shown}\` on ${this.remoteAddressLabel} did not finish within ${timeoutMs} ms`, {
          hint: 'the command was abandoned and its channel closed; check what it is waiting for on the server',
        }));
      }, timeoutMs);

      this.client.exec(command, (error, stream) => {
        if (error) {
          finish(this.ended ? this.notOpenError() : new SlipwayError('ssh_channel_failed', `could not start \`${shown}\` on ${this.remoteAddressLabel}: ${error.message}`, {
            hint: 'sshd limits sessions per connection (MaxSessions, default 10): run fewer commands at once',
            cause: error,
          }));
          return;
        }
        if (settled) {
          stream.close();
          return;
        }
        channel = stream;
        const stdout: Buffer[] = [];
        let stdoutBytes = 0;
        const stderr = new TailBuffer(STDERR_TAIL_BYTES);
        let exit: { code: number | null; signal: string | null } | undefined;
        // Both streams must be read, or a full window on one stalls the remote process for good.
        stream.on('data', (chunk: Buffer) => {
          stdoutBytes += chunk.length;
          if (stdoutBytes > maxStdout) {
            finish(new SlipwayError('remote_output_too_large', `\`${shown}\` on ${this.remoteAddressLabel} wrote more than ${maxStdout} bytes to stdout`, {
              hint: 'pass a larger maxStdoutBytes or stream the data through forwardOut instead',
            }));
            return;
          }
          stdout.push(chunk);
        });
        stream.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
        stream.on('exit', (code: number | null, signal?: string) => {
          exit = { code: typeof code === 'number' ? code : null, signal: signal ?? null };
        });
        stream.on('error', (streamError: Error) => {
          finish(this.ended ? this.notOpenError() : new SlipwayError('ssh_channel_failed', `channel for \`${shown}\` failed: ${streamError.message}`, { cause: streamError }));
        });
        stream.on('close', () => {
          if (this.ended) {
            finish(this.notOpenError());
          } else if (!exit || (exit.code === null && exit.signal === null)) {
            finish(new SlipwayError('remote_no_exit_status', `\`${shown}\` on ${this.remoteAddressLabel} ended without an exit status`, {
              hint: 'the server closed the channel without saying how the command ended: treat it as failed and check the server',
              details: outputTail(stderr.toString()).split('\n').filter(Boolean),
            }));
          } else {
            finish(undefined, {
              exitCode: exit.code,
              signal: exit.signal,
              stdout: Buffer.concat(stdout).toString('utf8'),
              stderr: stderr.toString(),
            });
          }
        });
        stream.stderr.on('error', () => { /* reported through the channel's own close */ });
        stream.end(options.stdin ?? '');
      });
    });
  }

  async execChecked(argv: readonly string[], options: ExecCheckedOptions): Promise<ExecResult> {
    const result = await this.exec(argv, options);
    if (result.exitCode === 0) return result;
    const how = result.exitCode === null ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
    const tail = outputTail(result.stderr);
    const lastLine = tail.split('\n').filter((line) => line.trim() !== '').pop();
    throw new SlipwayError(
      'remote_command_failed',
      `step "${options.step}" failed on ${this.remoteAddressLabel}: \`${displayArgv(argv)}\` ${how}${lastLine ? `: ${lastLine.trim()}` : ''}`,
      {
        hint: `the stderr tail is in the details; to see the whole output, log in with \`${this.sshCommand}\` and run the command by hand`,
        details: tail === '' ? ['(no stderr output)'] : tail.split('\n'),
      },
    );
  }

  forwardOut(remoteHost: string, remotePort: number): Promise<Duplex> {
    return this.openChannel(`${remoteHost}:${remotePort}`, (callback) => {
      this.client.forwardOut('127.0.0.1', 0, remoteHost, remotePort, callback);
    }, 'AllowTcpForwarding');
  }

  openStreamLocal(socketPath: string): Promise<Duplex> {
    return this.openChannel(`unix socket ${socketPath}`, (callback) => {
      this.client.openssh_forwardOutStreamLocal(socketPath, callback);
    }, 'AllowStreamLocalForwarding');
  }

  private openChannel(
    target: string,
    open: (callback: (error: Error | undefined, stream: ClientChannel) => void) => void,
    sshdOption: string,
  ): Promise<Duplex> {
    if (this.ended || this.closing) return Promise.reject(this.notOpenError());
    return new Promise<Duplex>((resolve, reject) => {
      let settled = false;
      const operation: PendingOperation = {
        fail: (error) => {
          if (settled) return;
          settled = true;
          reject(error);
        },
      };
      this.pending.add(operation);
      open((error, stream) => {
        this.pending.delete(operation);
        if (settled) {
          stream?.destroy();
          return;
        }
        settled = true;
        if (error) {
          reject(this.ended ? this.notOpenError() : new SlipwayError('ssh_forward_failed', `${this.remoteAddressLabel} could not open a tunnel to ${target}: ${error.message}`, {
            hint: `check that something listens on ${target} on the server (is the agent running?) and that sshd allows it (${sshdOption})`,
            cause: error,
          }));
          return;
        }
        this.streams.add(stream);
        stream.once('close', () => this.streams.delete(stream));
        resolve(stream);
      });
    });
  }

  async close(): Promise<void> {
    if (this.ended) return;
    this.closing = true;
    this.client.end();
    const timer = setTimeout(() => this.client.destroy(), CLOSE_GRACE_MS);
    await this.closedPromise;
    clearTimeout(timer);
  }
}
