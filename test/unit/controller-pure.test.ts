import { describe, expect, it } from 'vitest';
import { buildManifest, tarballName } from '../../controller/manifest.js';
import { parseControllerConfig } from '../../controller/config.js';
import { HumanOutput, progressLine, formatBytes, stallNote } from '../../controller/output.js';
import { exitCodeFor, EXIT } from '../../controller/errors.js';
import { SlipwayError } from '../../contract/errors.js';
import { compileValidator } from '../../lib/validate.js';
import { manifestSchema, type ReleaseManifest } from '../../contract/manifest.js';
import { tokenMatches } from '../../agent/auth.js';
import { AgentClient } from '../../controller/agent-client.js';
import { Duplex } from 'node:stream';
import { fakeChannel, jsonAnswer } from '../helpers/fake-channel.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StallWatch } from '../../controller/stall-watch.js';

const sha = 'a'.repeat(40);
const digest = 'c'.repeat(64);
const source = {
  app: 'shop', sha, dirtySnapshot: null, branch: 'main', authorName: 'Ada', authorEmail: 'ada@example.com',
  commitTime: '2026-11-01T10:00:00.000Z',
};

describe('release manifest', () => {
  it('is valid against the schema the agent checks', () => {
    const manifest = buildManifest(source, digest, '0.1.0');
    expect(manifest).toMatchObject({ app: 'shop', releaseId: 'aaaaaaaaaaaa-cccccccccccc', sha, shortSha: 'aaaaaaaaaaaa', dirty: false, branch: 'main' });
    expect(compileValidator<ReleaseManifest>(manifestSchema)(manifest)).toEqual({ ok: true, value: manifest });
  });

  it('tags dirty builds so they never pass for the commit', () => {
    const dirty = { ...source, dirtySnapshot: 'b'.repeat(40) };
    // A dirty tree's files differ from the commit's, so its content digest and release id do too.
    const manifest = buildManifest(dirty, 'd'.repeat(64), '0.1.0');
    expect(manifest.releaseId).not.toBe(buildManifest(source, digest, '0.1.0').releaseId);
    expect(manifest.dirty).toBe(true);
    expect(compileValidator(manifestSchema)(manifest).ok).toBe(true);
    expect(tarballName('shop', manifest.releaseId)).toBe(`shop-${manifest.releaseId}.tar.gz`);
  });

  it('rejects a manifest with unknown fields or a bad app name', () => {
    const manifest = { ...buildManifest(source, digest, '0.1.0'), app: 'Shop;rm', extra: 1 };
    const result = compileValidator(manifestSchema)(manifest);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.errors).toEqual(expect.arrayContaining([
      expect.stringMatching(/^app: has characters/), expect.stringMatching(/^extra: is not a known field/),
    ]));
  });
});

describe('controller config', () => {
  it('applies defaults and resolves paths', () => {
    const config = parseControllerConfig({ app: 'shop', host: { address: 'example.com', user: 'deploy', identityFile: 'keys/id' }, agent: {} }, '/repo/deploy.config.json');
    expect(config.host.port).toBe(22);
    expect(config.host.identityFile).toBe('/repo/keys/id');
    expect(config.agent).toEqual({ port: 7070, tokenFile: '/etc/slipway/agent.token' });
    expect(config.include).toEqual([]);
    expect([config.host.keepaliveIntervalMs, config.host.keepaliveCountMax]).toEqual([5_000, 3]);
  });
  it('takes the SSH keepalive from the host section, within bounds', () => {
    const host = { address: 'example.com', user: 'deploy', keepaliveIntervalMs: 15_000, keepaliveCountMax: 8 };
    expect(parseControllerConfig({ app: 'shop', host, agent: {} }, 'deploy.config.json').host).toMatchObject({ keepaliveIntervalMs: 15_000, keepaliveCountMax: 8 });
    expect(() => parseControllerConfig({ app: 'shop', host: { ...host, keepaliveIntervalMs: 10, keepaliveCountMax: 0 }, agent: {} }, 'deploy.config.json'))
      .toThrowError(expect.objectContaining({ details: expect.arrayContaining([
        expect.stringMatching(/^host\/keepaliveIntervalMs/), expect.stringMatching(/^host\/keepaliveCountMax/),
      ]) }));
  });
  it('names each bad field', () => {
    expect(() => parseControllerConfig({ app: 'shop', host: { address: 'a b', user: 'deploy' }, agent: { port: 0 }, include: ['../x'] }, 'deploy.config.json'))
      .toThrowError(expect.objectContaining({ details: expect.arrayContaining([
        expect.stringMatching(/^host\/address/), 'agent/port: must be >= 1', expect.stringMatching(/^include\/0/),
      ]) }));
  });
});

describe('output and exit codes', () => {
  it('renders a progress line with rate and ETA', () => {
    expect(progressLine('upload', 5_000_000, 10_000_000, 1000, 10)).toBe('  upload [#####-----]  50% 5.0 MB/10.0 MB 5.0 MB/s ETA 1.0 s');
    expect(formatBytes(999)).toBe('999 B');
  });
  it('maps errors to distinct exit codes', () => {
    expect(exitCodeFor(new SlipwayError('config_invalid', 'x'))).toBe(EXIT.usage);
    expect(exitCodeFor(new SlipwayError('host_unknown', 'x'))).toBe(EXIT.unreachable);
    expect(exitCodeFor(new SlipwayError('health_check_failed', 'x'))).toBe(EXIT.failedBeforeSwitch);
    expect(exitCodeFor(new Error('bug'))).toBe(EXIT.internal);
    expect(new Set(Object.values(EXIT)).size).toBe(Object.values(EXIT).length);
  });
});

describe('token check', () => {
  const token = 't'.repeat(43);
  it('accepts only the exact bearer token, whatever the length presented', () => {
    expect(tokenMatches(token, `Bearer ${token}`)).toBe(true);
    expect(tokenMatches(token, `Bearer ${token}x`)).toBe(false);
    expect(tokenMatches(token, 'Bearer short')).toBe(false);
    expect(tokenMatches(token, token)).toBe(false);
    expect(tokenMatches(token, undefined)).toBe(false);
    expect(tokenMatches(token, 'Bearer ')).toBe(false);
  });

  it('takes the scheme in any case, the token only exactly', () => {
    expect(tokenMatches(token, `bearer ${token}`)).toBe(true);
    expect(tokenMatches(token, `BEARER ${token}`)).toBe(true);
    expect(tokenMatches(token, `bearer ${token.toUpperCase()}`)).toBe(false);
  });
});

describe('agent client over a channel that ends without an answer', () => {
  /** A channel that takes the request and then ends, as a cut SSH channel does: http says "socket hang up". */
  const hangingUp = async (): Promise<Duplex> => {
    const channel: Duplex = new Duplex({
      read() {},
      write(_chunk, _encoding, done) {
        done();
        setImmediate(() => channel.push(null));
      },
    });
    return channel;
  };

  it('reports the SSH link as lost when the session closes around the failure', async () => {
    const lost = new SlipwayError('ssh_connection_lost', 'SSH connection to deploy@host lost: read ECONNRESET');
    const client = new AgentClient(hangingUp, 't'.repeat(43), 'tester', async () => lost);
    await expect(client.get('/apps/shop')).rejects.toBe(lost);
  });

  it('blames the agent when the SSH link stays up', async () => {
    const client = new AgentClient(hangingUp, 't'.repeat(43), 'tester', async () => null);
    await expect(client.get('/apps/shop')).rejects.toMatchObject({ code: 'agent_unreachable', message: expect.stringContaining('socket hang up') });
  });
});

/** A channel that answers each request with `response` (raw HTTP) once the request's head has arrived. */
function answering(response: string): () => Promise<Duplex> {
  return async () => fakeChannel({ response });
}

describe('agent client: remote error codes', () => {
  it('keeps a code the contract knows, with its kind', async () => {
    const client = new AgentClient(answering(jsonAnswer(409, { error: 'app_locked', message: 'shop is locked by a@b', hint: 'wait' })), 't'.repeat(43), 'tester');
    const error = await client.get('/apps/shop').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'app_locked', kind: 'refused', status: 409, message: 'shop is locked by a@b', hint: 'wait' });
  });

  it('narrows a code it does not know to agent_error, keeping the name in the message', async () => {
    const client = new AgentClient(answering(jsonAnswer(409, { error: 'from_a_newer_agent', message: 'no' })), 't'.repeat(43), 'tester');
    const error = await client.get('/apps/shop').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'agent_error', kind: 'refused', message: 'GET /apps/shop: from_a_newer_agent: no' });
    expect(exitCodeFor(error)).toBe(EXIT.failedBeforeSwitch);
  });
});

describe('agent client: a rollout whose link is lost', () => {
  const head = 'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n';
  const event = `${JSON.stringify({ type: 'event', deploymentId: 7, step: 'starting', status: 'started', message: null, at: '', elapsedMs: null })}\n`;
  const chunk = `${Buffer.byteLength(event).toString(16)}\r\n${event}\r\n`;
  const lost = new SlipwayError('ssh_connection_lost', 'SSH connection to deploy@host:22 lost: read ECONNRESET');

  it('is in doubt once the request went out: exit 6, naming the cause', async () => {
    const client = new AgentClient(answering(head + chunk), 't'.repeat(43), 'tester', async () => lost, { hostLabel: 'deploy@host:22' });
    const lines: unknown[] = [];
    const error = await client.stream('POST', '/apps/shop/deployments', {}, (line) => { lines.push(line); }).catch((e: unknown) => e);
    expect(lines).toHaveLength(1);
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).kind).toBe('in_doubt');
    expect(exitCodeFor(error)).toBe(EXIT.inDoubt);
    expect((error as SlipwayError).hint).toContain('deploy status');
    expect((error as SlipwayError).message).toBe(
      'lost the link to the agent on deploy@host:22 while it ran POST /apps/shop/deployments: SSH connection to deploy@host:22 lost: read ECONNRESET');
  });

  it('is a plain refusal when the agent answered with an error before starting', async () => {
    const client = new AgentClient(answering(jsonAnswer(409, { error: 'release_bad', message: 'marked bad' })), 't'.repeat(43), 'tester', async () => lost);
    await expect(client.stream('POST', '/apps/shop/rollback', {}, () => undefined)).rejects.toMatchObject({ code: 'release_bad', kind: 'refused' });
  });

  it('is unreachable when no channel could be opened: the request never left', async () => {
    const refused = new SlipwayError('ssh_forward_failed', 'could not open a tunnel');
    const client = new AgentClient(async () => { throw refused; }, 't'.repeat(43), 'tester', async () => lost);
    await expect(client.stream('POST', '/apps/shop/deployments', {}, () => undefined)).rejects.toBe(refused);
  });
});

describe('upload stall watchdog', () => {
  it('StallWatch measures the time since the byte count last moved', () => {
    const watch = new StallWatch(30_000, 1_000);
    watch.progress(100, 2_000);
    expect(watch.stalledMs(5_000)).toBe(3_000);
    watch.progress(100, 6_000);
    expect(watch.stalledMs(6_000), 'the same count is no progress').toBe(4_000);
    expect(watch.expired(31_999)).toBe(false);
    expect(watch.expired(32_000)).toBe(true);
    watch.progress(101, 32_000);
    expect(watch.expired(32_000)).toBe(false);
  });

  it('shows the stall in the progress line while it lasts, and once per 5 s without a terminal', () => {
    let tty = '';
    const ttyOut = new HumanOutput({ stdout: process.stdout, stderr: { write: (s: string) => { tty += s; return true; } } as never, isTTY: true });
    ttyOut.progress('upload', 1_000_000, 4_000_000, Date.now() - 2_000, 12_400);
    expect(tty).toMatch(/upload \[.*\] +25% 1\.0 MB\/4\.0 MB .* no progress for 12 s/);
    expect(stallNote(12_400)).toBe('no progress for 12 s');

    let log = '';
    const logOut = new HumanOutput({ stdout: process.stdout, stderr: { write: (s: string) => { log += s; return true; } } as never, isTTY: false });
    for (const stalledMs of [0, 1_000, 4_000, 5_000, 6_000, 9_000, 10_000, 0]) logOut.progress('upload', 1_000_000, 4_000_000, Date.now(), stalledMs);
    expect(log).toBe('  upload: no progress for 5 s (1.0 MB of 4.0 MB sent)\n  upload: no progress for 10 s (1.0 MB of 4.0 MB sent)\n');
  });

  /** A channel that takes `acceptBytes` and then never finishes another write, as an agent that stopped reading. */
  const stopsReadingAfter = (acceptBytes: number) => async (): Promise<Duplex> => {
    let accepted = 0;
    return new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        accepted += chunk.length;
        if (accepted <= acceptBytes) done();
      },
    });
  };

  it('abandons an upload the agent stops reading, naming the stall, the host and the setting', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-stall-'));
    try {
      const file = path.join(dir, 'release.tar.gz');
      writeFileSync(file, Buffer.alloc(4 * 1024 * 1024, 1));
      const client = new AgentClient(stopsReadingAfter(512 * 1024), 't'.repeat(43), 'tester', async () => null, {
        hostLabel: 'deploy@box:22', uploadStallTimeoutMs: 1_500,
      });
      const stalls: number[] = [];
      const started = Date.now();
      const error = await client.upload('/apps/shop/releases/x', file, 4 * 1024 * 1024, 'f'.repeat(64), (p) => { if (p.stalledMs) stalls.push(p.stalledMs); })
        .catch((e: unknown) => e);
      const tookMs = Date.now() - started;
      expect(error).toMatchObject({ code: 'upload_stalled', kind: 'unreachable' });
      expect((error as SlipwayError).message).toMatch(/^upload to deploy@box:22 stalled: the agent accepted no bytes for 1\.5 s .*host\.uploadStallTimeoutMs/);
      expect(exitCodeFor(error)).toBe(EXIT.unreachable);
      expect(tookMs).toBeGreaterThanOrEqual(1_500);
      expect(tookMs).toBeLessThan(5_000);
      expect(stalls.length, 'the stall was reported while it lasted').toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('after a stall, a later request waits for its answer only briefly', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-stall-'));
    try {
      const file = path.join(dir, 'release.tar.gz');
      writeFileSync(file, Buffer.alloc(1024 * 1024, 1));
      const client = new AgentClient(stopsReadingAfter(64 * 1024), 't'.repeat(43), 'tester', async () => null, { uploadStallTimeoutMs: 1_000 });
      await expect(client.upload('/u', file, 1024 * 1024, 'f'.repeat(64), () => undefined)).rejects.toMatchObject({ code: 'upload_stalled' });
      const started = Date.now();
      await expect(client.delete('/apps/shop/lock?lockId=x')).rejects.toMatchObject({ code: 'agent_unreachable', message: expect.stringContaining('no answer within 5 s') });
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
