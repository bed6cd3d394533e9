/**
 * The agent API's composition without a real host: the route table (every route a strict schema
 * for params, query, body and response), and the plugins every request passes (Host and Origin,
 * token, body types, errors), through fastify's inject with stub services. The same rules are
 * tested against the real agent process in test/reliability/api.test.ts.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AGENT_HOST } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { buildServer, type ServerDeps } from '../../agent/server.js';
import { checkAddressing, hostAllowed } from '../../agent/plugins/host-guard.js';
import { charsetOf, isUtf8, mediaTypeOf } from '../../agent/plugins/content-types.js';
import { clientErrorHandler, clientErrorReply, errorReply } from '../../agent/plugins/error-handler.js';
import { roomForUpload } from '../../agent/release/disk-space.js';
import { stepDurations } from '../../agent/status.js';
import { DeploymentFeed } from '../../agent/rollout/feed.js';

const TOKEN = 't'.repeat(43);
const APP = 'shop';
const SHA = 'a'.repeat(40);
const context = { home: '/srv/slipway', bodyLimitBytes: 64 * 1024, maxParamLength: 100 };

function stubDeps(overrides: Partial<ServerDeps> = {}): ServerDeps {
  const unused = () => { throw new Error('not expected in this test'); };
  return {
    config: { home: '/srv/slipway', apps: { [APP]: {} } } as unknown as ServerDeps['config'],
    token: TOKEN,
    state: { audit: vi.fn(), app: () => ({ name: APP, liveSlot: null, generation: 0, updatedAt: '' }) } as unknown as ServerDeps['state'],
    releases: { has: () => false, ingest: unused, ingestDelta: unused, missingContents: unused, repackArtifact: async () => null, artifactPath: unused, artifactSize: async () => null },
    rollouts: { startDeploy: unused, startSwitch: unused, startRollback: unused, lockStatus: () => null, reserveLock: unused, releaseLock: unused } as unknown as ServerDeps['rollouts'],
    processes: {} as ServerDeps['processes'],
    health: { checkOnce: unused },
    cleanup: vi.fn(async (app: string) => ({ app, removed: [], kept: [], skipped: null })),
    backups: { service: {} as ServerDeps['backups']['service'] },
    logger: pino({ level: 'silent' }),
    version: '0.0.0-test',
    relay: { keep: {} as NonNullable<ServerDeps['relay']>['keep'], sessions: {} as NonNullable<ServerDeps['relay']>['sessions'] },
    ...overrides,
  };
}

let server: FastifyInstance | undefined;
afterEach(async () => { await server?.close(); server = undefined; });

async function build(deps = stubDeps()): Promise<{ app: FastifyInstance; routes: RouteOptions[] }> {
  const routes: RouteOptions[] = [];
  server = buildServer(deps);
  server.addHook('onRoute', (route) => { routes.push(route); });
  await server.ready();
  return { app: server, routes };
}

const auth = { authorization: `Bearer ${TOKEN}`, host: 'localhost' };

describe('the route table', () => {
  it('every route has strict params, query and body schemas, and response schemas for success and error', async () => {
    const { routes } = await build();
    const api = routes.filter((r) => r.method !== 'HEAD');
    expect(api.map((r) => `${String(r.method)} ${r.url}`).sort()).toEqual([
      'DELETE /apps/:app/lock', 'DELETE /apps/:app/relay/:identity',
      'GET /apps', 'GET /apps/:app', 'GET /apps/:app/deployments', 'GET /apps/:app/deployments/:id', 'GET /apps/:app/env', 'GET /apps/:app/fleet', 'GET /apps/:app/lock',
      'GET /apps/:app/promotions', 'GET /apps/:app/releases', 'GET /apps/:app/releases/:releaseId', 'GET /apps/:app/releases/:releaseId/artifact',
      'GET /apps/:app/releases/:releaseId/promotion', 'GET /apps/:app/releases/:releaseId/spec', 'GET /backups', 'GET /health',
      'PATCH /apps/:app/env',
      'POST /apps/:app/deployments', 'POST /apps/:app/deployments/:id/abort', 'POST /apps/:app/files/missing', 'POST /apps/:app/lock', 'POST /apps/:app/promotions', 'POST /apps/:app/relay', 'POST /apps/:app/releases/:releaseId/fetch', 'POST /apps/:app/releases/cleanup', 'POST /apps/:app/rollback',
      'POST /apps/:app/switch', 'POST /backups/:id/restore', 'POST /backups/:job/run',
      'PUT /apps/:app/fleet', 'PUT /apps/:app/releases/:releaseId', 'PUT /apps/:app/releases/:releaseId/delta',
    ]);
    for (const route of api) {
      const label = `${String(route.method)} ${route.url}`;
      const schema = route.schema as Record<string, Record<string, unknown> | undefined>;
      expect(schema.querystring?.additionalProperties, `${label} querystring`).toBe(false);
      if (route.url.includes(':')) expect(schema.params?.additionalProperties, `${label} params`).toBe(false);
      if (route.method !== 'GET' && route.method !== 'PUT') expect(schema.body?.additionalProperties, `${label} body`).toBe(false);
      const responses = Object.keys(schema.response ?? {});
      expect(responses.some((code) => /^2\d\d$/.test(code)), `${label} success response`).toBe(true);
      expect(responses, `${label} error responses`).toEqual(expect.arrayContaining(['4xx', '5xx']));
    }
  });
});

describe('the Host and Origin a request may carry', () => {
  it('allows the loopback names and the controller\'s name, with the agent\'s port or none', () => {
    for (const host of ['127.0.0.1', '127.0.0.1:7070', 'localhost', 'LocalHost:7070', '[::1]', '[::1]:7070', AGENT_HOST, `${AGENT_HOST}:7070`]) {
      expect(hostAllowed(host, 7070), host).toBe(true);
    }
    for (const host of [undefined, '', 'evil.example', '127.0.0.1:7071', '127.0.0.1:', 'localhost.', '127.0.0.2', '[::1]:80', `${AGENT_HOST}.evil.example`, '127.0.0.1:7070 ']) {
      expect(hostAllowed(host, 7070), String(host)).toBe(false);
    }
    expect(hostAllowed('localhost:80', undefined), 'no port known: only bare names').toBe(false);
  });

  it('refuses a foreign Host with 421 and any Origin with 403, naming what it saw', () => {
    const refusal = (headers: { host?: string; origin?: string }) => {
      try {
        checkAddressing(headers, 7070);
        return null;
      } catch (error) {
        return error as SlipwayError;
      }
    };
    expect(refusal({ host: 'evil.example' })).toMatchObject({ code: 'host_not_allowed', status: 421, message: expect.stringContaining('"evil.example"') });
    expect(refusal({ host: 'localhost:7070', origin: 'null' })).toMatchObject({ code: 'origin_not_allowed', status: 403, message: expect.stringContaining('"null"') });
    expect(refusal({ host: `h${'x'.repeat(500)}` })?.message.length).toBeLessThan(400);
    expect(refusal({ host: 'localhost:7070' })).toBeNull();
  });

  it('applies to /health, before the token is looked at', async () => {
    const { app } = await build();
    expect((await app.inject({ url: '/health', headers: { host: 'localhost' } })).statusCode).toBe(200);
    const foreign = await app.inject({ url: '/health', headers: { host: 'evil.example' } });
    expect({ status: foreign.statusCode, error: foreign.json().error }).toEqual({ status: 421, error: 'host_not_allowed' });
    const page = await app.inject({ url: `/apps/${APP}/lock`, headers: { host: 'localhost', origin: 'http://evil.example' } });
    expect({ status: page.statusCode, error: page.json().error }).toEqual({ status: 403, error: 'origin_not_allowed' });
  });
});

describe('request bodies', () => {
  it('reads charset and media type from a Content-Type', () => {
    expect(mediaTypeOf('Application/JSON; charset=utf-8')).toBe('application/json');
    expect(mediaTypeOf(undefined)).toBeNull();
    expect(charsetOf('application/json; charset="UTF-8"')).toBe('utf-8');
    expect(charsetOf('application/json')).toBeNull();
    for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json;charset=UTF8']) expect(isUtf8(type), type).toBe(true);
    for (const type of ['application/json; charset=utf-16', 'application/json; charset=latin1', 'application/json; charset=']) expect(isUtf8(type), type).toBe(false);
  });

  it('a route that takes no body refuses one (and runs nothing); no body or {} is fine', async () => {
    const deps = stubDeps();
    const { app } = await build(deps);
    const url = `/apps/${APP}/releases/cleanup`;
    for (const payload of ['{"all":true}', '[]', '"all"', '1']) {
      const answer = await app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'application/json' }, payload });
      expect({ status: answer.statusCode, error: answer.json().error }, payload).toEqual({ status: 400, error: 'invalid_request' });
    }
    const query = await app.inject({ method: 'POST', url: `${url}?all=true`, headers: auth });
    expect(query.json()).toMatchObject({ error: 'invalid_request', message: expect.stringContaining('querystring/all: is not a known field') });
    expect(deps.cleanup).not.toHaveBeenCalled();
    expect((await app.inject({ method: 'POST', url, headers: auth })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' })).statusCode).toBe(200);
    expect(deps.cleanup).toHaveBeenCalledTimes(2);
  });

  it('a JSON route refuses other media types, other charsets and content codings with 415, never showing the body', async () => {
    const { app } = await build();
    const sent: Record<string, string>[] = [
      { 'content-type': 'application/octet-stream' }, { 'content-type': 'application/gzip' }, { 'content-type': 'text/plain' },
      { 'content-type': 'application/json; charset=utf-16' }, { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    ];
    for (const headers of sent) {
      const answer = await app.inject({ method: 'POST', url: `/apps/${APP}/lock`, headers: { ...auth, ...headers }, payload: `{"releaseId":"${SHA}"}` });
      expect({ status: answer.statusCode, error: answer.json().error }, JSON.stringify(headers)).toEqual({ status: 415, error: 'unsupported_media_type' });
      expect(answer.body).not.toMatch(/_readableState|_events|releaseId/);
    }
    const upload = await app.inject({
      method: 'PUT', url: `/apps/${APP}/releases/${SHA}`, payload: '{}',
      headers: { ...auth, 'content-type': 'application/json', 'x-slipway-sha256': 'b'.repeat(64) },
    });
    expect(upload.json()).toMatchObject({ error: 'unsupported_media_type', message: expect.stringContaining('application/gzip') });
  });
});

describe('a rollout\'s progress stream', () => {
  it('is NDJSON serialized by the route\'s declared line schema: a field the contract does not name is not sent', async () => {
    const feed = new DeploymentFeed(7);
    feed.push({ type: 'event', deploymentId: 7, step: 'switching', status: 'ok', message: 'nginx serves green', at: '2024-01-01T00:00:00Z', elapsedMs: 12, internal: 'x' } as never);
    feed.push({
      type: 'result', deploymentId: 7, app: APP, kind: 'switch', outcome: 'succeeded', phase: null, slot: 'green', releaseId: SHA,
      liveSlot: 'green', liveReleaseId: SHA, publicUrl: 'http://127.0.0.1:8080', reason: null, error: null, stepDurationsMs: { switching: 12 }, pm2Env: { SECRET: 'x' },
    } as never);
    const deps = stubDeps({ rollouts: { startSwitch: () => feed } as unknown as ServerDeps['rollouts'] });
    const { app } = await build(deps);
    const answer = await app.inject({ method: 'POST', url: `/apps/${APP}/switch`, headers: { ...auth, 'content-type': 'application/json' }, payload: '{"slot":"green"}' });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers['content-type']).toBe('application/x-ndjson');
    expect(answer.headers['x-slipway-deployment']).toBe('7');
    const lines = answer.body.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toEqual([
      { type: 'event', deploymentId: 7, step: 'switching', status: 'ok', message: 'nginx serves green', at: '2024-01-01T00:00:00Z', elapsedMs: 12 },
      {
        type: 'result', deploymentId: 7, app: APP, kind: 'switch', outcome: 'succeeded', phase: null, slot: 'green', releaseId: SHA,
        liveSlot: 'green', liveReleaseId: SHA, publicUrl: 'http://127.0.0.1:8080', reason: null, error: null, stepDurationsMs: { switching: 12 },
      },
    ]);
  });
});

describe('errors', () => {
  it('every framework refusal gets a Slipway code, a message and a hint', () => {
    const cases: [string, number, string][] = [
      ['FST_ERR_CTP_BODY_TOO_LARGE', 413, 'body_too_large'],
      ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 415, 'unsupported_media_type'],
      ['FST_ERR_CTP_INVALID_JSON_BODY', 400, 'invalid_json'],
      ['FST_ERR_CTP_EMPTY_JSON_BODY', 400, 'invalid_json'],
      ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 400, 'invalid_length'],
      ['FST_ERR_BAD_URL', 400, 'bad_url'],
      ['FST_ERR_MAX_PARAM_LENGTH', 414, 'path_too_long'],
      ['FST_ERR_SOMETHING_NEW', 400, 'bad_request'],
    ];
    for (const [code, status, error] of cases) {
      const reply = errorReply(Object.assign(new Error(`fastify says ${code}`), { code, statusCode: 400 }), context);
      expect({ status: reply.status, error: reply.body.error, internal: reply.internal }, code).toEqual({ status, error, internal: false });
      expect(reply.body.hint, code).toEqual(expect.any(String));
    }
  });

  it('a SlipwayError keeps its own; a full disk is 507 naming the home; anything else is a bare 500', () => {
    expect(errorReply(new SlipwayError('lock_in_use', 'held', { status: 409, hint: 'wait' }), context))
      .toEqual({ status: 409, body: { error: 'lock_in_use', message: 'held', hint: 'wait' }, internal: false });
    expect(errorReply(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), context))
      .toMatchObject({ status: 507, internal: true, body: { error: 'disk_full', message: expect.stringContaining('/srv/slipway') } });
    const bug = errorReply(new TypeError(`cannot read secret ${TOKEN}`), context);
    expect(bug).toEqual({ status: 500, internal: true, body: { error: 'internal_error', message: 'the agent hit an internal error', hint: 'see the agent log for details' } });
  });

  it('a malformed request is answered and logged without the bytes it carried (its token included)', () => {
    const lines: string[] = [];
    const log = pino({ level: 'trace' }, { write: (line: string) => { lines.push(line); } });
    const written: string[] = [];
    const socket = { destroyed: false, writable: true, write: (text: string) => { written.push(text); }, destroy: vi.fn() };
    const raw = Buffer.from(`GET /apps HTTP/1.1\r\nAuthorization: Bearer ${TOKEN}\r\nX-Pad: ${'p'.repeat(100)}`);
    clientErrorHandler.call({ log } as never, Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW', rawPacket: raw }), socket as never);
    expect(written.join('')).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n[\s\S]*"error":"headers_too_large"/);
    expect(socket.destroy).toHaveBeenCalled();
    expect(lines.join('\n')).toContain('HPE_HEADER_OVERFLOW');
    expect(lines.join('\n')).not.toMatch(new RegExp(`${TOKEN}|rawPacket|${[...Buffer.from(TOKEN.slice(0, 4))].join(',')}`));
  });

  it('malformed HTTP gets an answer in the same shape', () => {
    expect(clientErrorReply(Object.assign(new Error('overflow'), { code: 'HPE_HEADER_OVERFLOW' }))).toMatchObject({ status: 431, body: { error: 'headers_too_large' } });
    expect(clientErrorReply(Object.assign(new Error('bad'), { code: 'HPE_INVALID_METHOD' }))).toMatchObject({ status: 400, body: { error: 'bad_http', hint: expect.any(String) } });
  });
});

describe('services behind the routes', () => {
  it('an upload needs 4× its size plus 64 MB free', () => {
    expect(roomForUpload(500e6, 100e6)).toMatchObject({ fits: true, neededBytes: 400e6 + 64 * 1024 * 1024 });
    expect(roomForUpload(400e6, 100e6).fits).toBe(false);
  });

  it('step durations come from steps that finished, ok or failed', () => {
    expect(stepDurations([
      { step: 'upload', status: 'ok', elapsedMs: 120 }, { step: 'start', status: 'started', elapsedMs: null },
      { step: 'start', status: 'failed', elapsedMs: 900 }, { step: 'note', status: 'info', elapsedMs: 5 },
    ])).toEqual({ upload: 120, start: 900 });
  });
});

describe('a release\'s spec (deploy diff)', () => {
  const releaseId = `${'a'.repeat(12)}-${'c'.repeat(12)}`;
  const spec = { processes: { web: { script: 'server.js', env: { A: '1' }, health: { path: '/health' } } }, routes: [{ serverNames: ['shop.test'], path: '/', process: 'web' }] };
  const manifest = (extra: Record<string, unknown>) => ({
    schemaVersion: 3, app: APP, releaseId, sha: SHA, shortSha: SHA.slice(0, 12), contentDigest: 'c'.repeat(64), dirty: false, branch: 'main',
    author: { name: 'a', email: 'a@b' }, commitTime: '2026-11-01T10:00:00.000Z', buildTime: '2026-11-01T10:00:00.000Z', controllerVersion: '0.1.0', ...extra,
  });
  const depsWith = (m: Record<string, unknown>) => stubDeps({
    state: { audit: vi.fn(), release: () => ({ state: 'good', bytes: 1, sha256: 'f'.repeat(64), createdAt: '2026-11-01T10:00:00.000Z', manifest: m }) } as unknown as ServerDeps['state'],
    releases: { has: () => true, ingest: () => { throw new Error('not expected'); }, ingestDelta: () => { throw new Error('not expected'); }, missingContents: () => { throw new Error('not expected'); }, repackArtifact: async () => null, artifactPath: () => { throw new Error('not expected'); }, artifactSize: async () => null },
  });

  it('answers the whole spec and its digest, also inside the release detail', async () => {
    const { app } = await build(depsWith(manifest({ spec, specDigest: 'd'.repeat(64) })));
    const answer = await app.inject({ url: `/apps/${APP}/releases/${releaseId}/spec`, headers: auth });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ releaseId, spec, specDigest: 'd'.repeat(64) });
    const detail = await app.inject({ url: `/apps/${APP}/releases/${releaseId}`, headers: auth });
    expect(detail.json().manifest.spec).toEqual(spec);
  });

  it('a release without a spec (legacy) answers null', async () => {
    const { app } = await build(depsWith(manifest({ schemaVersion: 2 })));
    const answer = await app.inject({ url: `/apps/${APP}/releases/${releaseId}/spec`, headers: auth });
    expect(answer.json()).toEqual({ releaseId, spec: null, specDigest: null });
  });
});

describe('a release\'s kept tarball and its promotion gate', () => {
  const releaseId = 'aaaaaaaaaaaa-bbbbbbbbbbbb';
  const row = { app: APP, releaseId, sha256: 'c'.repeat(64), bytes: 10, state: 'good', rolledBack: null, manifest: { sha: SHA } };
  const deps = (artifactSize: number | null, file = '/nonexistent') => stubDeps({
    state: {
      audit: vi.fn(), app: () => ({ name: APP, liveSlot: null, generation: 0, updatedAt: '' }), release: (_a: string, id: string) => (id === releaseId ? row : undefined),
      deploymentsOfRelease: () => [],
    } as unknown as ServerDeps['state'],
    releases: { has: () => true, ingest: () => { throw new Error('not expected'); }, ingestDelta: () => { throw new Error('not expected'); }, missingContents: () => { throw new Error('not expected'); }, repackArtifact: async () => null, artifactPath: () => file, artifactSize: async () => artifactSize },
  });

  it('a release stored before tarballs were kept: 404 artifact_missing with a hint; an unknown one: release_not_found', async () => {
    const { app } = await build(deps(null));
    const answer = await app.inject({ url: `/apps/${APP}/releases/${releaseId}/artifact`, headers: auth });
    expect(answer.statusCode).toBe(404);
    expect(answer.json()).toMatchObject({ error: 'artifact_missing', hint: expect.stringContaining('deploy push') });
    const unknown = await app.inject({ url: `/apps/${APP}/releases/aaaaaaaaaaaa-cccccccccccc/artifact`, headers: auth });
    expect(unknown.json()).toMatchObject({ error: 'release_not_found' });
  });

  it('streams the tarball with its sha256 and length', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const os = await import('node:os');
    const dir = await mkdtemp(`${os.tmpdir()}/slipway-artifact-`);
    try {
      await writeFile(`${dir}/a.tar.gz`, '0123456789');
      const { app } = await build(deps(10, `${dir}/a.tar.gz`));
      const answer = await app.inject({ url: `/apps/${APP}/releases/${releaseId}/artifact`, headers: auth });
      expect(answer.statusCode).toBe(200);
      expect(answer.headers['x-slipway-sha256']).toBe('c'.repeat(64));
      expect(answer.headers['content-length']).toBe('10');
      expect(answer.body).toBe('0123456789');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the gate answers never_deployed for a release that never went live here', async () => {
    const { app } = await build(deps(10));
    const answer = await app.inject({ url: `/apps/${APP}/releases/${releaseId}/promotion?maxAgeMs=1000`, headers: auth });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toMatchObject({ app: APP, releaseId, passed: false, reason: 'never_deployed', sha256: 'c'.repeat(64), artifactBytes: 10 });
  });
});
