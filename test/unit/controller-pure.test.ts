import { describe, expect, it } from 'vitest';
import { buildManifest, tarballName } from '../../controller/manifest.js';
import { parseControllerConfig } from '../../controller/config.js';
import { progressLine, formatBytes } from '../../controller/output.js';
import { exitCodeFor, EXIT } from '../../controller/errors.js';
import { SlipwayError } from '../../contract/errors.js';
import { compileValidator } from '../../lib/validate.js';
import { manifestSchema, type ReleaseManifest } from '../../contract/manifest.js';
import { tokenMatches } from '../../agent/auth.js';
import { AgentClient } from '../../controller/agent-client.js';
import { Duplex } from 'node:stream';

const sha = 'a'.repeat(40);
const digest = 'c'.repeat(64);
const source = {
  app: 'shop', sha, dirtySnapshot: null, branch: 'main', authorName: 'Ada', authorEmail: 'ada@example.com',
  commitTime: '2026-11-01T10:00:00.000Z',
};

describe('release manifest', () => {
  it('is valid against the schema the agent checks', () => {
    const manifest = buildManifest(source, digest, new Date('2026-11-02T00:00:00Z'), '0.1.0');
    expect(manifest).toMatchObject({ app: 'shop', releaseId: 'aaaaaaaaaaaa-cccccccccccc', sha, shortSha: 'aaaaaaaaaaaa', dirty: false, branch: 'main' });
    expect(compileValidator<ReleaseManifest>(manifestSchema)(manifest)).toEqual({ ok: true, value: manifest });
  });

  it('tags dirty builds so they never pass for the commit', () => {
    const dirty = { ...source, dirtySnapshot: 'b'.repeat(40) };
    // A dirty tree's files differ from the commit's, so its content digest and release id do too.
    const manifest = buildManifest(dirty, 'd'.repeat(64), new Date(), '0.1.0');
    expect(manifest.releaseId).not.toBe(buildManifest(source, digest, new Date(), '0.1.0').releaseId);
    expect(manifest.dirty).toBe(true);
    expect(compileValidator(manifestSchema)(manifest).ok).toBe(true);
    expect(tarballName('shop', manifest.releaseId)).toBe(`shop-${manifest.releaseId}.tar.gz`);
  });

  it('rejects a manifest with unknown fields or a bad app name', () => {
    const manifest = { ...buildManifest(source, digest, new Date(), '0.1.0'), app: 'Shop;rm', extra: 1 };
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
