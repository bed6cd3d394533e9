/**
 * RELIABILITY cases 20 and 31–34 against the running agent: what any process on the box can
 * send to its loopback port. Bad tokens, bodies, names and types are refused with the right
 * status (never 500) and nothing changes; the agent listens on loopback only and refuses to start
 * with a readable token file; every mutating call leaves an audit row; and recognisable secrets
 * (env values, a database URI, the token, secrets sent in headers and bodies) never show up in
 * the agent's log, its responses, the CLI's output or the state database. The agent API's own
 * rules (issue 11): it answers only requests addressed to it (Host) and not sent by a web page
 * (Origin); every route's params, query and body are strict; a JSON route takes UTF-8 JSON only
 * (415 otherwise); every refusal, the framework's too, has Slipway's {error, message, hint} shape.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { AGENT_HOST } from '../../contract/api.js';
import { AGENT_MAIN } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';
import { Pm2Adapter } from '../../agent/pm2.js';
import { freePort } from '../helpers/ports.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import {
  agentRequest, agentToken, auditRows, dumpDatabase, liveView, newReleaseId, secretHits, snapshotTree, stateFingerprint,
  type ApiAnswer,
} from '../helpers/box.js';
import { releaseOfCommit } from '../helpers/state.js';

const tag = (name: string) => `${name}-${randomBytes(6).toString('hex')}`;
const ENV_SECRET = tag('envsecret');
const URI_PASSWORD = tag('uripassword');
const HEADER_SECRET = tag('headersecret');
const BODY_SECRET = tag('bodysecret');
const JSON_SECRET = tag('jsonsecret');
const LINE_SECRET = tag('linesecret');

describe('the agent API under hostile input (RELIABILITY 20, 31–34)', () => {
  let stack: Stack;
  let token: string;
  let liveSha: string;
  /** Everything the agent answered, and everything the CLI printed: scanned for secrets at the end. */
  const seen: Record<string, string> = {};
  let seenCount = 0;
  const record = (label: string, text: string) => { seen[`${label} #${++seenCount}`] = text; };
  const api = async (method: string, pathname: string, options: Parameters<typeof agentRequest>[3] = {}): Promise<ApiAnswer> => {
    const answer = await agentRequest(stack, method, pathname, options);
    record(`${method} ${pathname}`, answer.text);
    return answer;
  };
  const deploy = async (args: string[]) => {
    const result = await stack.deploy(args);
    record(`deploy ${args.join(' ')}`, result.stdout + result.stderr);
    return result;
  };

  beforeAll(async () => {
    stack = await startStack();
    await fs.writeFile(stack.envFile, [
      'SAMPLE_GREETING=hello',
      `SAMPLE_DB_PASSWORD=${ENV_SECRET}`,
      `DATABASE_URL=mongodb://app:${URI_PASSWORD}@127.0.0.1:27017/shop`,
      '',
    ].join('\n'), { mode: 0o600 });
    token = agentToken(stack);
    const first = await deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    liveSha = await stack.repo.head();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** Nothing but the audit table may change while the agent refuses requests. */
  async function unchangedBy(run: () => Promise<void>): Promise<void> {
    const before = { state: stateFingerprint(stack), nginx: await snapshotTree(stack.nginx.includeDir, { hash: true }), view: await liveView(stack) };
    await run();
    expect(stateFingerprint(stack)).toEqual(before.state);
    expect(await snapshotTree(stack.nginx.includeDir, { hash: true })).toEqual(before.nginx);
    expect(await liveView(stack)).toEqual(before.view);
  }

  it('case 31: missing, wrong, different-length and non-Bearer tokens -> 401 on every route, never 500', async () => {
    const authorizations: (string | undefined)[] = [
      undefined, '', 'Bearer', 'Bearer ', 'Bearer wrong', `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`,
      `Bearer ${'a'.repeat(8_000)}`, `Bearer ${token} extra`, `bearer ${token.toUpperCase()}`, `Token ${token}`,
      `Basic ${Buffer.from(`deploy:${token}`).toString('base64')}`, `Bearer ${HEADER_SECRET}`, `Bearer ${token}\u00ff`,
    ];
    const routes: [string, string, Parameters<typeof agentRequest>[3]][] = [
      ['GET', `/apps/${APP}`, {}],
      ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } }],
      ['POST', `/apps/${APP}/switch`, { json: { slot: 'green' } }],
      ['POST', `/apps/${APP}/rollback`, { json: {} }],
      ['DELETE', `/apps/${APP}/lock?force=true`, {}],
      ['POST', '/backups/1/restore', { json: { confirm: true } }],
      ['GET', '/no/such/route', {}],
    ];
    await unchangedBy(async () => {
      for (const authorization of authorizations) {
        for (const [method, route, options] of routes) {
          const answer = await api(method, route, { ...options, token: null, headers: authorization === undefined ? {} : { authorization } });
          expect({ status: answer.status, error: answer.json?.error }, `${method} ${route} with ${JSON.stringify(authorization?.slice(0, 40))}`)
            .toEqual({ status: 401, error: 'unauthorized' });
        }
      }
    });
    expect((await api('GET', `/apps/${APP}`)).status).toBe(200);
    expect((await api('GET', '/health', { token: null })).status, 'only /health answers without a token').toBe(200);
  });

  it('case 32: a body over the limit -> 413; with a wrong token -> 401 before the body is read', async () => {
    await unchangedBy(async () => {
      for (const size of [64 * 1024 + 1, 1024 * 1024]) {
        const body = JSON.stringify({ releaseId: 'a'.repeat(size) });
        const answer = await api('POST', `/apps/${APP}/lock`, { body, headers: { 'content-type': 'application/json' } });
        expect({ status: answer.status, error: answer.json?.error }).toEqual({ status: 413, error: 'body_too_large' });
        const anonymous = await api('POST', `/apps/${APP}/lock`, { token: 'wrong', body, headers: { 'content-type': 'application/json' } });
        expect(anonymous.status).toBe(401);
      }
    });
  });

  it('case 32: malformed JSON -> 400 invalid_json naming the problem, without echoing the body', async () => {
    await unchangedBy(async () => {
      for (const body of ['{', `{"releaseId": ${JSON_SECRET}}`, `{"releaseId": "${JSON_SECRET}"`, '', '\u0000', `${'['.repeat(30_000)}${']'.repeat(30_000)}`]) {
        const answer = await api('POST', `/apps/${APP}/lock`, { body, headers: { 'content-type': 'application/json' } });
        expect(answer.status, `${body.slice(0, 30)} -> ${answer.text}`).toBe(400);
        expect(answer.json?.error).toMatch(/^invalid_(json|request)$/);
        expect(answer.json?.message).toMatch(/JSON|must be object/);
      }
    });
  });

  it('case 32: unknown fields, wrong types and missing fields -> 400 naming the field', async () => {
    const cases: [string, string, unknown, string][] = [
      ['POST', `/apps/${APP}/lock`, { releaseId: newReleaseId(), password: BODY_SECRET }, 'body/password: is not a known field'],
      ['POST', `/apps/${APP}/lock`, { releaseId: 123 }, 'body/releaseId: must be string'],
      ['POST', `/apps/${APP}/lock`, {}, 'body/releaseId: is required'],
      ['POST', `/apps/${APP}/lock`, [newReleaseId()], 'body: must be object'],
      ['POST', `/apps/${APP}/lock`, null, 'body: must be object'],
      ['POST', `/apps/${APP}/rollback`, { force: 'true' }, 'body/force: must be boolean'],
      ['POST', `/apps/${APP}/switch`, { slot: 1 }, 'body/slot: must be string'],
      ['POST', `/apps/${APP}/deployments`, { releaseId: liveSha, slot: 'green', lockId: 42 }, 'body/lockId: must be string'],
      ['GET', `/apps/${APP}/deployments?limit=ten`, undefined, 'querystring/limit'],
      ['GET', `/apps/${APP}/deployments?secret=${BODY_SECRET}`, undefined, 'querystring/secret: is not a known field'],
      ['POST', '/backups/1/restore', { confirm: false, to: `mongodb://admin:${URI_PASSWORD}@127.0.0.1/db` }, 'body/confirm'],
    ];
    await unchangedBy(async () => {
      for (const [method, route, body, field] of cases) {
        const answer = await api(method, route, body === undefined ? {} : { body: body === null ? 'null' : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        expect({ status: answer.status, error: answer.json?.error }, `${method} ${route} ${JSON.stringify(body)}: ${answer.text}`)
          .toEqual({ status: 400, error: 'invalid_request' });
        expect(answer.json?.message).toContain(field);
      }
      const polluted = await api('POST', `/apps/${APP}/lock`, { body: `{"releaseId":"${liveSha}","__proto__":{"admin":true}}`, headers: { 'content-type': 'application/json' } });
      expect(polluted.status, polluted.text).toBe(400);
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
    });
  });

  it('case 20: app names, release ids, slots and headers with ; newline } .. -> 400 naming the field; unknown valid names -> 404', async () => {
    const badApps = ['sa;mple', 'sample%0A', 'sample%0D%0Ax', 'sample%7D', '..', '%2E%2E', '..%2F..%2Fetc', 'Sample', 'a'.repeat(41), 'sample%00'];
    const badIds = [`${liveSha};reboot`, '..%2F..%2F..%2Fetc%2Fpasswd', `${liveSha}%0A`, `${liveSha}}`, liveSha.toUpperCase(), liveSha.slice(0, 39)];
    await unchangedBy(async () => {
      for (const app of badApps) {
        for (const [method, route] of [['GET', `/apps/${app}`], ['POST', `/apps/${app}/lock`], ['GET', `/apps/${app}/releases/${liveSha}`]] as const) {
          const answer = await api(method, route, method === 'POST' ? { json: { releaseId: liveSha } } : {});
          expect({ status: answer.status, message: answer.json?.message }, `${method} ${route}`)
            .toEqual({ status: 400, message: expect.stringContaining('params/app') });
        }
      }
      for (const id of badIds) {
        const answer = await api('GET', `/apps/${APP}/releases/${id}`);
        expect({ status: answer.status, message: answer.json?.message }, id).toEqual({ status: 400, message: expect.stringContaining('params/releaseId') });
        const put = await api('PUT', `/apps/${APP}/releases/${id}`, { body: Buffer.alloc(10), headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': 'a'.repeat(64) } });
        expect(put.status, id).toBe(400);
      }
      const bodies: [string, unknown, string][] = [
        [`/apps/${APP}/lock`, { releaseId: `${liveSha};reboot` }, 'body/releaseId'],
        [`/apps/${APP}/lock`, { releaseId: `${liveSha}\n` }, 'body/releaseId'],
        [`/apps/${APP}/deployments`, { releaseId: liveSha, slot: 'blue;' }, 'body/slot'],
        [`/apps/${APP}/switch`, { slot: 'green}' }, 'body/slot'],
        [`/apps/${APP}/switch`, { slot: '../blue' }, 'body/slot'],
        [`/apps/${APP}/rollback`, { to: '../../etc' }, 'body/to'],
        [`/apps/${APP}/rollback`, { reason: 'line one\nline two' }, 'body/reason'],
      ];
      for (const [route, body, field] of bodies) {
        const answer = await api('POST', route, { json: body });
        expect({ status: answer.status, message: answer.json?.message }, `${route} ${JSON.stringify(body)}`)
          .toEqual({ status: 400, message: expect.stringContaining(field) });
      }
      const sha = await api('PUT', `/apps/${APP}/releases/${newReleaseId()}`, { body: Buffer.alloc(10), headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': `${'a'.repeat(63)};` } });
      expect({ status: sha.status, message: sha.json?.message }).toEqual({ status: 400, message: expect.stringContaining('headers/x-slipway-sha256') });
      expect((await api('GET', '/apps/nosuchapp')).status).toBe(404);
      expect((await api('POST', '/apps/nosuchapp/lock', { json: { releaseId: liveSha } })).status).toBe(404);
      expect((await api('GET', `/apps/${APP}/releases/${newReleaseId()}`)).status).toBe(404);
    });
  });

  it('case 20: a controller config or an agent config with such names is rejected before anything runs', async () => {
    const controllerConfig = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8'));
    for (const app of ['sa;mple', 'sample\n', 'sample}', '../sample']) {
      const file = path.join(stack.dir, 'bad-controller.json');
      await fs.writeFile(file, JSON.stringify({ ...controllerConfig, app }));
      const result = await deploy(['push', '--config', file]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(/app: has characters or a form that is not allowed/);
    }
    const agentConfig = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8'));
    const variants: [string, (c: typeof agentConfig) => void, RegExp][] = [
      ['server name with ;', (c) => { c.apps[APP].public.serverNames = ['example.com; return 301 http://evil'] }, /serverNames\/0/],
      ['server name with }', (c) => { c.apps[APP].public.serverNames = ['x}'] }, /serverNames\/0/],
      ['server name with a newline', (c) => { c.apps[APP].public.serverNames = ['a.example\nb'] }, /serverNames\/0/],
      ['app name with ;', (c) => { c.apps['evil;app'] = c.apps[APP] }, /apps: property name must be valid/],
      ['health path with a space', (c) => { c.apps[APP].health.path = '/health x' }, /health\/path/],
      ['start script climbing out', (c) => { c.apps[APP].start.script = '../../bin/sh' }, /start\/script/],
      ['api.host 0.0.0.0', (c) => { c.api.host = '0.0.0.0' }, /api\/host/],
      ['api.host ::', (c) => { c.api.host = '::' }, /api\/host/],
    ];
    for (const [label, mutate, field] of variants) {
      const copy = structuredClone(agentConfig);
      mutate(copy);
      const file = path.join(stack.dir, 'bad-agent.json');
      await fs.writeFile(file, JSON.stringify(copy));
      const result = await runCommand([process.execPath, AGENT_MAIN, 'check-config', '--config', file], { timeoutMs: 20_000 });
      expect(result.exitCode, `${label}: ${result.stdout}${result.stderr}`).toBe(2);
      expect(result.stderr, label).toMatch(field);
    }
  });

  it('case 33: the agent listens on 127.0.0.1 only, and is not reachable from the box\'s other addresses', async () => {
    const listeners: string[] = [];
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
        const [, local, , state] = line.trim().split(/\s+/);
        const [address, portHex] = local!.split(':');
        if (state === '0A' && parseInt(portHex!, 16) === stack.agentPort) listeners.push(`${table} ${address}`);
      }
    }
    expect(listeners).toEqual(['/proc/net/tcp 0100007F']);
    const ss = await runCommand(['ss', '-Hltn', `sport = :${stack.agentPort}`], { timeoutMs: 10_000 });
    expect(ss.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[3])).toEqual([`127.0.0.1:${stack.agentPort}`]);
    const external = Object.values(os.networkInterfaces()).flat()
      .filter((i) => i && !i.internal && i.family === 'IPv4').map((i) => i!.address);
    for (const address of external) {
      const outcome = await new Promise<string>((resolve) => {
        const socket = net.connect({ host: address, port: stack.agentPort });
        socket.setTimeout(3_000, () => { socket.destroy(); resolve('timeout'); });
        socket.once('connect', () => { socket.destroy(); resolve('connected'); });
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
      expect(outcome, `connect to ${address}:${stack.agentPort}`).toBe('ECONNREFUSED');
    }
  });

  it('case 33: token and env files are 0600; the agent refuses to start with a readable token file', async () => {
    expect((await fs.stat(path.join(stack.dir, 'agent.token'))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(stack.envFile)).mode & 0o777).toBe(0o600);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-tokenmode-'));
    try {
      const tokenFile = path.join(dir, 'agent.token');
      await fs.writeFile(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o644 });
      await fs.chmod(tokenFile, 0o644);
      const config = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8'));
      const port = await freePort();
      const file = path.join(dir, 'agent.json');
      await fs.writeFile(file, JSON.stringify({ ...config, home: path.join(dir, 'home'), pm2: { home: path.join(dir, 'pm2') }, api: { ...config.api, port, tokenFile } }));
      const result = await runCommand([process.execPath, AGENT_MAIN, 'run', '--config', file], { timeoutMs: 30_000 });
      expect(result.timedOut, 'it exits instead of serving').toBe(false);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(`token file ${tokenFile} is readable by other users (mode 644)`);
      expect(result.stderr).toContain(`chmod 600 ${tokenFile}`);
      expect(await fs.readdir(path.join(dir)).then((names) => names.includes('pm2'))).toBe(false);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('case 33: an env file readable by group or others stops a deploy before any change, naming the fix', async () => {
    const sha = await stack.repo.commit({ 'message.txt': 'env mode\n' }, 'env mode');
    const before = { view: await liveView(stack), nginx: await snapshotTree(stack.nginx.includeDir, { hash: true }), state: stateFingerprint(stack) };
    await fs.chmod(stack.envFile, 0o640);
    try {
      const result = await deploy(['push']);
      expect(result.code).toBe(3);
      expect(result.stdout).toContain(`env file of ${APP} (${stack.envFile}) is readable by other users (mode 640)`);
      expect(result.stdout).toContain(`chmod 600 ${stack.envFile}`);
      expect(result.stdout).toContain('live slot untouched');
    } finally {
      await fs.chmod(stack.envFile, 0o600);
    }
    expect(await liveView(stack)).toEqual(before.view);
    expect(await snapshotTree(stack.nginx.includeDir, { hash: true })).toEqual(before.nginx);
    const after = stateFingerprint(stack);
    expect({ liveSlot: after.liveSlot, generation: after.generation, slots: after.slots }, 'no slot was touched')
      .toEqual({ liveSlot: before.state.liveSlot, generation: before.state.generation, slots: before.state.slots });
    expect(after.deployments[0]).toMatch(/ deploy failed$/);
    expect(after.releases).toContain(`${releaseOfCommit(stack.home, APP, sha)} ready`);
  });

  it('case 33: SLIPWAY_HOME, its database and the PM2 home (with PM2\'s control sockets) are private to the agent', async () => {
    const mode = async (p: string) => (await fs.stat(p)).mode & 0o777;
    // As if an operator or a mount had made them: the agent must tighten them, not trust them.
    await fs.chmod(stack.home, 0o755);
    await fs.chmod(stack.pm2.pm2Home, 0o755);
    await fs.chmod(path.join(stack.home, 'agent.db'), 0o644);
    await stack.restartAgent();
    expect(await mode(stack.home)).toBe(0o700);
    expect(await mode(path.join(stack.home, 'incoming'))).toBe(0o700);
    for (const name of (await fs.readdir(stack.home)).filter((n) => n.startsWith('agent.db'))) {
      expect(await mode(path.join(stack.home, name)), name).toBe(0o600);
    }
    expect(await mode(stack.pm2.pm2Home)).toBe(0o700);
    const writable = await runCommand(['find', stack.home, stack.pm2.pm2Home, '-perm', '/022', '!', '-type', 'l', '!', '-type', 's'], { timeoutMs: 10_000 });
    expect(writable.stdout.trim(), 'nothing under the agent\'s dirs is group- or world-writable').toBe('');
  });

  /** A refusal in Slipway's shape: a stable code, a message and a hint, none of the framework's own fields. */
  function expectRefusal(answer: ApiAnswer, status: number, error: string, label: string): void {
    expect({ status: answer.status, error: answer.json?.error }, `${label}: ${answer.text}`).toEqual({ status, error });
    expect(Object.keys(answer.json ?? {}).filter((key) => !['error', 'message', 'hint', 'details'].includes(key)), label).toEqual([]);
    expect(answer.json?.message, label).toEqual(expect.any(String));
    expect(answer.json?.hint, `${label}: a refusal says what to do next`).toEqual(expect.any(String));
    expect(answer.text, `${label}: no stream internals`).not.toMatch(/_events|_readableState|Readable|IncomingMessage/);
  }

  it('agent API: a Host other than the loopback names or the controller\'s -> 421 on every route, /health included; nothing runs', async () => {
    const port = stack.agentPort;
    const routes: [string, string, Parameters<typeof agentRequest>[3]][] = [
      ['GET', '/health', { token: null }],
      ['GET', `/apps/${APP}`, {}],
      ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } }],
      ['DELETE', `/apps/${APP}/lock?force=true`, {}],
      ['POST', `/apps/${APP}/releases/cleanup`, {}],
      ['GET', '/backups', {}],
    ];
    const hosts = [
      'evil.example', `evil.example:${port}`, `127.0.0.1:${port + 1}`, '127.0.0.1:0', `127.0.0.1.nip.io:${port}`,
      `localhost.evil.example:${port}`, `${AGENT_HOST}.evil.example`, `${AGENT_HOST}:1`, '10.0.0.1', `[::2]:${port}`, `127.0.0.1:${port}@evil.example`,
    ];
    // A lock held by someone else must survive a force-release sent under a foreign Host.
    const held = await api('POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } });
    expect(held.status, held.text).toBe(201);
    try {
      await unchangedBy(async () => {
        for (const host of hosts) {
          for (const [method, route, options] of routes) {
            const answer = await api(method, route, { ...options, headers: { host } });
            expectRefusal(answer, 421, 'host_not_allowed', `${method} ${route} Host ${host}`);
          }
        }
      });
    } finally {
      expect((await api('DELETE', `/apps/${APP}/lock?force=true`)).status).toBe(200);
    }
    for (const host of ['127.0.0.1', `127.0.0.1:${port}`, 'localhost', `LOCALHOST:${port}`, '[::1]', `[::1]:${port}`, AGENT_HOST]) {
      expect((await api('GET', `/apps/${APP}`, { headers: { host } })).status, `Host ${host}`).toBe(200);
      expect((await api('GET', '/health', { token: null, headers: { host } })).status, `/health, Host ${host}`).toBe(200);
    }
  });

  it('agent API: any request carrying an Origin -> 403, /health included; nothing runs', async () => {
    const port = stack.agentPort;
    const held = await api('POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } });
    expect(held.status, held.text).toBe(201);
    try {
      await unchangedBy(async () => {
        for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://${AGENT_HOST}`]) {
          for (const [method, route, options] of [
            ['GET', '/health', { token: null }],
            ['GET', `/apps/${APP}`, {}],
            ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } }],
            ['DELETE', `/apps/${APP}/lock?force=true`, {}],
          ] as [string, string, Parameters<typeof agentRequest>[3]][]) {
            const answer = await api(method, route, { ...options, headers: { origin } });
            expectRefusal(answer, 403, 'origin_not_allowed', `${method} ${route} Origin ${origin}`);
          }
        }
      });
    } finally {
      expect((await api('DELETE', `/apps/${APP}/lock?force=true`)).status).toBe(200);
    }
  });

  it('agent API: unknown query fields, bodies where none is expected, non-object bodies -> 400 on every route; nothing runs', async () => {
    const cleanup = `/apps/${APP}/releases/cleanup`;
    const gzipHeaders = { 'content-type': 'application/gzip', 'x-slipway-sha256': 'a'.repeat(64) };
    const cases: [string, string, Parameters<typeof agentRequest>[3], string][] = [
      ['POST', cleanup, { json: { all: true } }, 'body/all: is not a known field'],
      ['POST', cleanup, { json: [] }, 'body: must be object'],
      ['POST', cleanup, { json: 'all' }, 'body: must be object'],
      ['POST', cleanup, { json: 1 }, 'body: must be object'],
      ['POST', `${cleanup}?all=true`, {}, 'querystring/all: is not a known field'],
      ['POST', `${cleanup}?all=true`, { json: {} }, 'querystring/all: is not a known field'],
      ['DELETE', `/apps/${APP}/lock?force=true`, { json: { lockId: '00000000-0000-0000-0000-000000000000' } }, 'body/lockId: is not a known field'],
      ['DELETE', `/apps/${APP}/lock?force=true`, { json: [] }, 'body: must be object'],
      ['PUT', `/apps/${APP}/releases/${newReleaseId()}?force=true`, { body: Buffer.alloc(10), headers: gzipHeaders }, 'querystring/force: is not a known field'],
      ['GET', `/health?verbose=1`, { token: null }, 'querystring/verbose: is not a known field'],
      ['GET', `/apps?all=1`, {}, 'querystring/all: is not a known field'],
      ['GET', `/apps/${APP}?verbose=1`, {}, 'querystring/verbose: is not a known field'],
      ['GET', `/apps/${APP}/lock?lockId=x`, {}, 'querystring/lockId: is not a known field'],
      ['GET', `/apps/${APP}/releases?limit=1`, {}, 'querystring/limit: is not a known field'],
      ['GET', `/apps/${APP}/releases/${liveSha}?x=1`, {}, 'querystring/x: is not a known field'],
      ['GET', `/apps/${APP}/deployments/1?events=0`, {}, 'querystring/events: is not a known field'],
      ['GET', `/apps/${APP}?token=${token}`, {}, 'querystring/token: is not a known field'],
      ['DELETE', `/apps/${APP}/lock?force=true&token=${token}`, {}, 'querystring/token: is not a known field'],
      ['POST', `/apps/${APP}/lock?force=true`, { json: { releaseId: newReleaseId() } }, 'querystring/force: is not a known field'],
      ['POST', `/apps/${APP}/switch?force=true`, { json: { slot: 'blue' } }, 'querystring/force: is not a known field'],
      ['POST', `/apps/${APP}/rollback?force=true`, { json: {} }, 'querystring/force: is not a known field'],
      ['POST', `/apps/${APP}/deployments?slot=blue`, { json: { releaseId: liveSha } }, 'querystring/slot: is not a known field'],
      ['POST', '/backups/nightly/run?wait=false', { json: {} }, 'querystring/wait: is not a known field'],
      ['POST', '/backups/1/restore?force=true', { json: { confirm: true } }, 'querystring/force: is not a known field'],
    ];
    // A lock that a DELETE slipping past its schema would force-release.
    const held = await api('POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() } });
    expect(held.status, held.text).toBe(201);
    try {
      await unchangedBy(async () => {
        for (const [method, route, options, field] of cases) {
          const answer = await api(method, route, options);
          expectRefusal(answer, 400, 'invalid_request', `${method} ${route} ${JSON.stringify(options?.json)}`);
          expect(answer.json?.message, `${method} ${route}`).toContain(field);
        }
      });
    } finally {
      expect((await api('DELETE', `/apps/${APP}/lock?force=true`)).status).toBe(200);
    }
    expect((await api('POST', cleanup, { json: {} })).status, 'an empty object is no body').toBe(200);
  });

  it('agent API: a JSON route sent another media type, a non-UTF-8 charset or a content coding -> 415 with a clean message; nothing runs', async () => {
    const json = JSON.stringify({ releaseId: newReleaseId() });
    const sent: [Record<string, string>, Buffer][] = [
      [{ 'content-type': 'application/octet-stream' }, Buffer.from(json)],
      [{ 'content-type': 'application/gzip' }, gzipSync(json)],
      [{ 'content-type': 'text/plain' }, Buffer.from(json)],
      [{ 'content-type': 'text/plain; charset=utf-8' }, Buffer.from(json)],
      [{ 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(`releaseId=${newReleaseId()}`)],
      [{ 'content-type': 'multipart/form-data; boundary=x' }, Buffer.from(`--x\r\n\r\n${json}\r\n--x--\r\n`)],
      [{}, Buffer.from(json)],
      [{ 'content-type': 'application/json; charset=utf-16' }, Buffer.from(json, 'utf16le')],
      [{ 'content-type': 'application/json; charset=UTF-16LE' }, Buffer.from(json, 'utf16le')],
      [{ 'content-type': 'application/json; charset=iso-8859-1' }, Buffer.from(json, 'latin1')],
      [{ 'content-type': `application/json; charset=${token}` }, Buffer.from(json)],
      [{ 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync(json)],
    ];
    await unchangedBy(async () => {
      for (const [headers, body] of sent) {
        const answer = await api('POST', `/apps/${APP}/lock`, { body, headers });
        expectRefusal(answer, 415, 'unsupported_media_type', JSON.stringify(headers));
        expect(answer.json?.message, JSON.stringify(headers)).toMatch(headers['content-encoding'] ? /Content-Encoding "gzip"/ : /takes application\/json bodies/);
      }
      const upload = await api('PUT', `/apps/${APP}/releases/${newReleaseId()}`, { body: Buffer.from(json), headers: { 'content-type': 'application/json', 'x-slipway-sha256': 'a'.repeat(64) } });
      expectRefusal(upload, 415, 'unsupported_media_type', 'an upload sent as JSON');
      expect(upload.json?.message).toMatch(/takes application\/gzip or application\/octet-stream bodies, not application\/json/);
      for (const contentType of ['application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json;charset="utf-8"']) {
        const answer = await api('POST', `/apps/${APP}/switch`, { body: JSON.stringify({ slot: 'purple' }), headers: { 'content-type': contentType } });
        expect({ status: answer.status, error: answer.json?.error }, `${contentType} is parsed: ${answer.text}`).toEqual({ status: 400, error: 'invalid_request' });
      }
    });
  });

  it('agent API: framework-level refusals (long path segment or URL, malformed % escape, unknown route, large body or headers) use Slipway\'s error shape', async () => {
    await unchangedBy(async () => {
      expectRefusal(await api('GET', `/apps/${'a'.repeat(150)}`), 414, 'path_too_long', 'a 150-character app name');
      expectRefusal(await api('GET', `/apps/${APP}/releases/${'a'.repeat(150)}`), 414, 'path_too_long', 'a 150-character release id');
      for (const route of [`/apps/%zz`, `/apps/${APP}/releases/%E0%A4%A`, `/apps/${APP}/lock%`]) {
        expectRefusal(await api('GET', route), 400, 'bad_url', route);
      }
      expectRefusal(await api('GET', '/no/such/route'), 404, 'not_found', 'an unknown route');
      expectRefusal(await api('PATCH', `/apps/${APP}/lock`, { json: {} }), 404, 'not_found', 'an unknown method');
      expectRefusal(await api('POST', `/apps/${APP}/lock`, { json: { releaseId: 'a'.repeat(70_000) } }), 413, 'body_too_large', 'a 70 KB body');
      expectRefusal(await api('GET', `/apps/${APP}`, { headers: { 'x-padding': 'p'.repeat(20_000) } }), 431, 'headers_too_large', '20 KB of headers');
      expectRefusal(await api('GET', `/apps/${APP}/deployments?limit=${'1'.repeat(20_000)}`), 431, 'headers_too_large', 'a 20 KB URL');
    });
  });

  it('case 34: every mutating call writes one audit row (who, what, when, result), with no secret in it', async () => {
    const before = auditRows(stack.home).length;
    const actor = { 'x-slipway-actor': 'auditor@reliability' };
    const calls: [string, string, Parameters<typeof agentRequest>[3], number][] = [
      ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() }, headers: actor }, 201],
      ['GET', `/apps/${APP}/lock`, { headers: actor }, 200],
      ['DELETE', `/apps/${APP}/lock?force=true`, { headers: actor }, 200],
      ['POST', `/apps/${APP}/switch`, { json: { slot: 'blue' }, headers: actor }, 409],
      ['POST', `/apps/${APP}/rollback`, { json: { to: newReleaseId() }, headers: actor }, 404],
      ['POST', `/apps/${APP}/releases/cleanup`, { headers: actor }, 200],
      ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId(), token: BODY_SECRET }, headers: actor }, 400],
      ['POST', '/backups/1/restore', { json: { confirm: false, to: `postgres://admin:${URI_PASSWORD}@127.0.0.1/db` }, headers: actor }, 400],
      ['PUT', `/apps/${APP}/releases/${newReleaseId()}`, { body: Buffer.from('not a tarball'), headers: { ...actor, 'content-type': 'application/gzip', 'x-slipway-sha256': 'a'.repeat(64) } }, 400],
      ['POST', `/apps/${APP}/lock`, { json: { releaseId: newReleaseId() }, token: HEADER_SECRET, headers: actor }, 401],
      ['GET', `/apps/${APP}/deployments`, { headers: actor }, 200],
    ];
    const started = new Date().toISOString();
    for (const [method, route, options, status] of calls) {
      const answer = await api(method, route, options);
      expect(answer.status, `${method} ${route}: ${answer.text}`).toBe(status);
    }
    const mutating = calls.filter(([method]) => method !== 'GET');
    // The row is written once the response has gone out: wait for it rather than race it.
    const rows = await waitFor(() => {
      const all = auditRows(stack.home).slice(before);
      return all.length >= mutating.length ? all : null;
    }, { description: `${mutating.length} new audit rows` });
    expect(rows.map((r) => [r.action.split(' ')[0], r.result])).toEqual(mutating.map(([method, , , status]) => [method, String(status)]));
    for (const row of rows) {
      expect(row.at >= started, 'when').toBe(true);
      expect(row.action, 'what').toMatch(/^(POST|PUT|DELETE) \/(apps|backups)\//);
    }
    expect(rows.at(-1)!.caller, 'a caller that did not authenticate is not taken at its word').not.toBe('auditor@reliability');
    expect(rows.slice(0, -1).every((r) => r.caller === 'auditor@reliability'), 'who').toBe(true);
    expect(JSON.parse(rows[0]!.args)).toMatchObject({ params: { app: APP }, body: { releaseId: expect.any(String) } });
    expect(JSON.parse(rows[1]!.args), 'a DELETE records its query too').toMatchObject({ query: { force: 'true' } });
    expect(secretHits(Object.fromEntries(rows.map((r) => [`audit ${r.id}`, JSON.stringify(r)])), [BODY_SECRET, URI_PASSWORD, HEADER_SECRET, token])).toEqual([]);
  });

  it('case 34: no token, password, database URI or env value in the agent log, responses, CLI output or database', async () => {
    // A deploy reads the env file and starts the app with it; a broken env line must not be echoed.
    await stack.repo.commit({ 'message.txt': 'secrets sweep\n' }, 'secrets sweep');
    const ok = await deploy(['push']);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    const good = await fs.readFile(stack.envFile, 'utf8');
    await fs.writeFile(stack.envFile, `${good}this line is broken ${LINE_SECRET}\n`, { mode: 0o600 });
    try {
      await stack.repo.commit({ 'message.txt': 'broken env\n' }, 'broken env');
      const broken = await deploy(['push']);
      expect(broken.code).toBe(3);
      expect(broken.stdout).toMatch(/cannot be parsed/);
    } finally {
      await fs.writeFile(stack.envFile, good, { mode: 0o600 });
    }
    for (const args of [['--json', 'status'], ['history'], ['releases'], ['--json', 'history']]) {
      const result = await deploy(args);
      expect(result.code, result.stderr).toBe(0);
    }
    for (const route of [`/apps/${APP}`, `/apps/${APP}/deployments`, `/apps/${APP}/releases`, '/apps', '/backups']) await api('GET', route);
    const texts = {
      ...seen,
      'agent log': stack.agent.log(),
      'PM2 daemon log': await fs.readFile(path.join(stack.pm2.pm2Home, 'pm2.log'), 'utf8'),
      'state database': dumpDatabase(stack.home),
      'nginx includes': Object.values(await snapshotTree(stack.nginx.includeDir)).join('\n')
        + (await Promise.all((await fs.readdir(stack.nginx.includeDir)).map((n) => fs.readFile(path.join(stack.nginx.includeDir, n), 'utf8')))).join('\n'),
    };
    expect(stack.agent.log().length, 'the log was captured').toBeGreaterThan(1000);
    expect(secretHits(texts, [ENV_SECRET, URI_PASSWORD, HEADER_SECRET, BODY_SECRET, JSON_SECRET, LINE_SECRET, token])).toEqual([]);
    // The app itself did get its secrets: keeping them out of logs must not mean the app lost them.
    const pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    try {
      const live = await pm2.describe(`${APP}-${stateFingerprint(stack).liveSlot}`);
      const environ = await fs.readFile(`/proc/${live!.pid}/environ`, 'utf8');
      expect(environ.split('\0')).toEqual(expect.arrayContaining([`SAMPLE_DB_PASSWORD=${ENV_SECRET}`]));
    } finally {
      await pm2.disconnect();
    }
  });
});
