/**
 * RELIABILITY cases 10–13 with the real CLI, a real sshd and an unprivileged deploy user: host
 * key problems stop the push before authentication; a link cut (or frozen, or the agent killed)
 * in the middle of a 40 MB upload is reported within seconds, never leaves a partial release
 * behind, and the same push run again succeeds; a failing remote step is named with its stderr.
 * Throughout, the live slot keeps answering through nginx and the state database stays as it was.
 * Also: an agent that stops reading mid-upload is caught by the controller's stall watchdog, and a
 * link cut while a rollout runs exits "outcome unknown" while the rollout finishes on the host.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { generateKeyPair } from '../helpers/sshd.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { auditRows, ingestLeftovers, liveView, seededBytes, stateFingerprint } from '../helpers/box.js';
import { readState, releaseOfCommit } from '../helpers/state.js';

const MiB = 1024 * 1024;
const BIG = 40 * MiB;

describe('transport faults through the real CLI and sshd (RELIABILITY 10–13)', () => {
  let stack: Stack;

  beforeAll(async () => {
    // A short upload idle timeout keeps the silent-link test short; the default is 30 s.
    stack = await startStack({ agentConfig: { limits: { uploadIdleTimeoutMs: 5000 } } });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const fingerprint = async (publicKeyPath: string) =>
    (await runCommand(['ssh-keygen', '-lf', publicKeyPath], { timeoutMs: 10_000 })).stdout.split(' ')[1]!;
  const acceptedLogins = async () => ((await stack.sshd.log()).match(/Accepted publickey/g) ?? []).length;

  /** A copy of the app's deploy.config.json with `patch` applied to its host section. */
  async function configWith(name: string, host: Record<string, unknown>): Promise<string> {
    const config = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8'));
    const file = path.join(stack.dir, `${name}.config.json`);
    await fs.writeFile(file, JSON.stringify({ ...config, host: { ...config.host, ...host } }));
    return file;
  }

  /** Runs `fn` and proves the agent never heard of it: no audit row, same state, same live view. */
  async function agentUntouched(fn: () => Promise<void>): Promise<void> {
    const before = { audit: auditRows(stack.home).length, state: stateFingerprint(stack), view: await liveView(stack) };
    await fn();
    expect(auditRows(stack.home).length, 'no request reached the agent').toBe(before.audit);
    expect(stateFingerprint(stack)).toEqual(before.state);
    expect(await liveView(stack)).toEqual(before.view);
  }

  it('case 10: a changed host key aborts before authentication, showing expected and actual fingerprints', async () => {
    const other = await generateKeyPair(stack.dir, 'impostor_host_key');
    const knownHosts = path.join(stack.dir, 'changed_known_hosts');
    await fs.writeFile(knownHosts, `[127.0.0.1]:${stack.sshd.port} ${other.publicKey}\n`);
    const config = await configWith('changed-key', { knownHostsFile: knownHosts });
    const logins = await acceptedLogins();
    await agentUntouched(async () => {
      const result = await stack.deploy(['push', '--config', config]);
      expect(result.code).toBe(5);
      expect(result.stderr).toContain('HOST KEY CHANGED');
      expect(result.stderr).toContain(`expected:  ssh-ed25519 ${await fingerprint(other.publicKeyPath)}`);
      expect(result.stderr).toContain(`presented: ssh-ed25519 ${await fingerprint(stack.sshd.hostPublicKeyPath)}`);
      expect(result.stderr).toMatch(/ssh-keygen -R/);
    });
    expect(await acceptedLogins(), 'the client never authenticated to the impostor').toBe(logins);
  });

  it('case 11: a host not in known_hosts fails closed, with its fingerprint and the command to trust it', async () => {
    const knownHosts = path.join(stack.dir, 'empty_known_hosts');
    await fs.writeFile(knownHosts, '');
    const config = await configWith('unknown-host', { knownHostsFile: knownHosts });
    const logins = await acceptedLogins();
    await agentUntouched(async () => {
      const result = await stack.deploy(['push', '--config', config]);
      expect(result.code).toBe(5);
      expect(result.stderr).toContain(`is not in ${knownHosts}`);
      expect(result.stderr).toContain(await fingerprint(stack.sshd.hostPublicKeyPath));
      expect(result.stderr).toContain(`ssh-keyscan -p ${stack.sshd.port} -t ed25519 127.0.0.1 >> ${knownHosts}`);
    });
    expect(await acceptedLogins()).toBe(logins);
  });

  it('case 13: a failing remote step names the step and shows its stderr tail', async () => {
    const tokenFile = path.join(stack.dir, 'agent.token');
    const owner = await fs.stat(tokenFile);
    // Owned by root, 0600: the deploy user's `cat` is refused.
    await fs.chown(tokenFile, 0, 0);
    try {
      await agentUntouched(async () => {
        const result = await stack.deploy(['push']);
        expect(result.code).toBe(5);
        expect(result.stderr).toContain('step "read the agent token" failed');
        expect(result.stderr).toContain('exited with code 1');
        expect(result.stderr).toMatch(/Permission denied/);
        expect(result.stderr).toContain('hint:');
      });
    } finally {
      await fs.chown(tokenFile, owner.uid, owner.gid);
    }
  });

  it('addition: the agent not running -> a clear error naming the tunnel, nothing changed', async () => {
    const before = { state: stateFingerprint(stack), view: await liveView(stack) };
    await stack.agent.stop();
    try {
      const result = await stack.deploy(['push']);
      expect(result.code).toBe(5);
      expect(result.stderr).toContain(`could not open a tunnel to 127.0.0.1:${stack.agentPort}`);
      expect(result.stderr).toContain('is the agent running?');
      expect(await liveView(stack), 'nginx and the app do not need the agent').toEqual(before.view);
    } finally {
      await stack.restartAgent();
    }
    expect(stateFingerprint(stack)).toEqual(before.state);
  });

  it('addition: an agent of another API version -> refused on connect naming both versions, nothing asked of it', async () => {
    const before = { state: stateFingerprint(stack), view: await liveView(stack) };
    await stack.agent.stop();
    // An old agent on the agent's port: it answers /health with API 1 and records anything else asked.
    const asked: string[] = [];
    const oldAgent = http.createServer((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/health' ? JSON.stringify({ ok: true, apiVersion: 1, version: '0.0.9' }) : JSON.stringify({ error: 'unexpected' }));
    });
    await new Promise<void>((resolve) => oldAgent.listen(stack.agentPort, '127.0.0.1', resolve));
    try {
      const result = await stack.deploy(['push']);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/slipway \S+, API 2\) and the agent on .* \(slipway 0\.0\.9, API 1\)/);
      expect(result.stderr).toContain('upgrade the agent on');
      expect(asked).toEqual(['GET /health']);
    } finally {
      await new Promise<void>((resolve) => oldAgent.close(() => resolve()));
      await stack.restartAgent();
    }
    expect(stateFingerprint(stack)).toEqual(before.state);
    expect(await liveView(stack)).toEqual(before.view);
  });

  /**
   * Starts `deploy push` of a new 40 MB commit and, once the agent has received `atBytes` of it,
   * applies `fault`. Returns the CLI's result, how long after the fault it exited, and the sha.
   */
  async function pushAndFault(seed: string, fault: () => Promise<unknown>, options: { atBytes?: number; pushArgs?: string[] } = {}) {
    const atBytes = options.atBytes ?? 8 * MiB;
    await fs.writeFile(path.join(stack.repo.dir, 'blob.bin'), seededBytes(seed, BIG));
    const sha = await stack.repo.commit({}, `40 MB release ${seed}`);
    const cli = stack.deployInBackground(['push', ...(options.pushArgs ?? [])]);
    let exited = false;
    void cli.done.then(() => { exited = true; });
    const incoming = path.join(stack.home, 'incoming');
    try {
      await waitFor(async () => {
        if (exited) throw new Error('the CLI exited before the fault');
        for (const name of await fs.readdir(incoming)) {
          const size = name.endsWith('.part') ? (await fs.stat(path.join(incoming, name)).catch(() => null))?.size ?? 0 : 0;
          if (size >= atBytes) return true;
        }
        return false;
      }, { timeoutMs: 60_000, intervalMs: 5, description: `the agent to have received ${atBytes} bytes of the upload` });
    } catch (error) {
      cli.kill();
      throw new Error(`${(error as Error).message}\nCLI: ${JSON.stringify(await cli.done)}`);
    }
    const faultAt = Date.now();
    await fault();
    const result = await withDeadline(cli.done, 45_000, 'the CLI to exit after the fault');
    const detectedMs = Date.now() - faultAt;
    console.log(`fault "${seed}": the CLI exited ${result.code} ${detectedMs} ms after it: ${result.stderr.trim().split('\n').find((l) => l.startsWith('deploy:')) ?? ''}`);
    return { sha, result, detectedMs };
  }

  /** No partial release of `sha`: not in the store, not in the database, nothing in incoming/. */
  async function noTraceOf(sha: string, leftoverTimeoutMs: number): Promise<void> {
    await waitFor(async () => (await ingestLeftovers(stack.home)).length === 0, {
      timeoutMs: leftoverTimeoutMs, intervalMs: 100, description: 'the partial upload to be removed',
    });
    // A release id starts with its commit's first 12 hex digits.
    expect((await fs.readdir(path.join(stack.home, 'releases', APP))).filter((name) => name.startsWith(`${sha.slice(0, 12)}-`))).toEqual([]);
    expect(stateFingerprint(stack).releases.some((r) => r.startsWith(`${sha.slice(0, 12)}-`))).toBe(false);
  }

  async function retrySucceeds(sha: string): Promise<void> {
    const retry = await stack.deploy(['push']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, sha) });
    expect(await ingestLeftovers(stack.home)).toEqual([]);
  }

  it('case 12: the connection cut mid-upload (sshd children killed) -> error within seconds, no partial release, retry succeeds', async () => {
    const viewBefore = await liveView(stack);
    let killed = 0;
    const { sha, result, detectedMs } = await pushAndFault('cut', async () => { killed = await stack.sshd.killConnections(); });
    expect(killed).toBeGreaterThan(0);
    expect(result.code, result.stderr).toBe(5);
    expect(detectedMs, 'detected well within 30 s').toBeLessThan(30_000);
    expect(result.stderr).toMatch(/SSH connection to .* lost/);
    expect(result.stderr).toContain('a partial upload is never used as a release');
    await noTraceOf(sha, 35_000);
    expect(await liveView(stack), 'the live slot never stopped answering').toEqual(viewBefore);
    await retrySucceeds(sha);
  });

  it('addition: the agent killed -9 mid-upload -> error, the partial upload removed on restart, retry succeeds', async () => {
    const viewBefore = await liveView(stack);
    const { sha, result, detectedMs } = await pushAndFault('crash', () => stack.restartAgent({ crash: true }));
    expect(result.code, result.stderr).not.toBe(0);
    expect(detectedMs).toBeLessThan(30_000);
    expect(result.stderr).toMatch(/agent|SSH/);
    await noTraceOf(sha, 10_000);
    expect(await liveView(stack)).toEqual(viewBefore);
    await retrySucceeds(sha);
  });

  it('addition: a link that goes silent mid-upload (sshd frozen) -> keepalive reports it, the agent drops the upload at its idle timeout, retry succeeds', async () => {
    const viewBefore = await liveView(stack);
    try {
      // The keepalive comes from deploy.config.json (host.keepaliveIntervalMs/CountMax): 2 s × 2 here.
      const config = await configWith('quick-keepalive', { keepaliveIntervalMs: 2_000, keepaliveCountMax: 2 });
      const { sha, result, detectedMs } = await pushAndFault('frozen', () => stack.sshd.freezeConnections(), { pushArgs: ['--config', config] });
      expect(result.code, result.stderr).toBe(5);
      expect(detectedMs, 'keepalive detects a silent link within 30 s').toBeLessThan(30_000);
      expect(result.stderr).toMatch(/SSH connection to .* lost/);
      expect(result.stderr).toContain('no answer to 2 keepalive(s), one every 2 s');
      // The agent hears nothing either: its 30 s no-data timeout ends the upload.
      await noTraceOf(sha, 40_000);
      expect(await liveView(stack)).toEqual(viewBefore);
      await stack.sshd.killConnections();
      await retrySucceeds(sha);
    } finally {
      await stack.sshd.killConnections();
    }
  });
  it('issue 11: the agent stops reading mid-upload (SIGSTOP; sshd still answers keepalives) -> the stall watchdog ends the push after host.uploadStallTimeoutMs, exit 5, the stall shown while it lasts', async () => {
    const viewBefore = await liveView(stack);
    const stallMs = 6_000;
    const config = await configWith('stall-watchdog', { uploadStallTimeoutMs: stallMs, keepaliveIntervalMs: 2_000, keepaliveCountMax: 2 });
    const agentPid = stack.agent.pid;
    let stopped = false;
    try {
      const { sha, result, detectedMs } = await pushAndFault('stalled', async () => {
        process.kill(agentPid, 'SIGSTOP');
        stopped = true;
      }, { pushArgs: ['--config', config] });
      expect(result.code, result.stderr).toBe(5);
      expect(detectedMs, 'not before the stall timeout').toBeGreaterThanOrEqual(stallMs);
      // After the stall the push still tries to release its lock, waiting at most 5 s for the stopped agent.
      expect(detectedMs, 'the stall timeout, the bounded lock release, and slack for a busy machine').toBeLessThan(stallMs + 5_000 + 8_000);
      expect(result.stderr).toContain(`deploy: upload to ${stack.sshd.user}@${stack.sshd.host}:${stack.sshd.port} stalled: the agent accepted no bytes for 6 s`);
      expect(result.stderr).toContain('limit: host.uploadStallTimeoutMs in deploy.config.json');
      expect(result.stderr).toMatch(/^ {2}upload: no progress for 5 s \([\d.]+ MB of [\d.]+ MB sent\)$/m);
      expect(result.stderr, 'the keepalive (2 s x 2) never declared the link dead').not.toMatch(/SSH connection to .* lost/);
      expect(await liveView(stack), 'nginx and the app do not need the agent').toEqual(viewBefore);

      process.kill(agentPid, 'SIGCONT');
      stopped = false;
      await noTraceOf(sha, 30_000);
      // The push's lock release reached a stopped agent; whether it was carried out once the agent resumed
      // is up to the connection's fate, so a lock still reserved is released as an operator would.
      if (readState(stack.home, APP).lock) {
        const released = await stack.deploy(['lock', 'release', '--force']);
        expect(released.code, released.stderr).toBe(0);
      }
      await retrySucceeds(sha);
    } finally {
      if (stopped) process.kill(agentPid, 'SIGCONT');
    }
  });

  it('issue 10: the link cut while a rollout runs on the host -> exit 6 (outcome unknown here), and the rollout finishes on the host', async () => {
    const sha = await stack.repo.commit({ 'message.txt': 'in doubt\n' }, 'cut during the rollout');
    const cli = stack.deployInBackground(['push']);
    let exited = false;
    void cli.done.then(() => { exited = true; });
    const running = await waitFor(() => {
      if (exited) throw new Error('the CLI exited before the rollout started');
      return readState(stack.home, APP).deployments.find((d) => d.releaseId?.startsWith(`${sha.slice(0, 12)}-`) && d.outcome === null) ?? null;
    }, { timeoutMs: 60_000, intervalMs: 5, description: 'the rollout to start on the host' });
    await stack.sshd.killConnections();
    const result = await withDeadline(cli.done, 30_000, 'the CLI to exit after the cut');
    expect(result.code, result.stderr).toBe(6);
    expect(result.stderr).toMatch(/lost the link to the agent on .* while it ran POST \/apps\/sample\/deployments: SSH connection to .* lost/);
    expect(result.stderr).toContain('hint: the rollout goes on on the host');
    const finished = await waitFor(() => readState(stack.home, APP).deployments.find((d) => d.id === running.id && d.outcome !== null) ?? null, {
      timeoutMs: 60_000, description: 'the rollout to finish on the host without a listener',
    });
    expect(finished.outcome).toBe('succeeded');
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, sha) });
  });
});
