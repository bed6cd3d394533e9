/**
 * The page server of `deploy ui` without a browser or a host: who it answers (Host, session,
 * Origin, CSRF token), what it forwards to the agent (the CLI's own requests, token never in an
 * answer), and how a rollout's stream or refusal reaches the page.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import type { DeploymentStreamLine } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { CSRF_HEADER, checkRequest, cookieValue, newSecrets, secretMatches, sessionCookieName, type PageSecrets, type RequestFacts } from '../../controller/ui/guard.js';
import { buildUiServer } from '../../controller/ui/server.js';
import type { UiAgent } from '../../controller/ui/overview.js';
import { openCommand } from '../../controller/commands/ui.js';

const PORT = 4321;
const TOKEN = 'agent-token-that-must-never-reach-the-browser';

/** A stand-in for AgentClient: records the requests, answers like an agent would. */
function fakeAgent(options: { refuse?: SlipwayError } = {}) {
  const calls: { method: string; path: string; body?: unknown }[] = [];
  const agent: UiAgent = {
    async get<T>(path: string): Promise<T> {
      calls.push({ method: 'GET', path });
      if (path === '/apps') return { apps: [{ app: 'shop', liveSlot: 'blue', generation: 2 }] } as T;
      if (path === '/apps/shop') return { app: 'shop', liveSlot: 'blue', liveReleaseId: 'r1', generation: 2, publicUrl: 'http://x', slots: [], releases: [] } as T;
      if (path.startsWith('/apps/shop/dora')) throw new SlipwayError('agent_unreachable', 'request failed: socket hang up');
      return { deployments: [], releases: [] } as T;
    },
    async find<T>(path: string): Promise<T | null> {
      calls.push({ method: 'GET', path });
      return null;
    },
    async stream(method: string, path: string, body: unknown, onLine: (line: DeploymentStreamLine) => void | 'stop'): Promise<void> {
      calls.push({ method, path, body });
      if (options.refuse) throw options.refuse;
      onLine({ type: 'event', deploymentId: 7, step: 'switching', status: 'ok', message: null, at: 'now', elapsedMs: 12 });
      onLine({ type: 'result', deploymentId: 7, app: 'shop', kind: 'rollback', outcome: 'succeeded', phase: null, slot: 'green', releaseId: 'r0', liveSlot: 'green', liveReleaseId: 'r0', publicUrl: 'http://x', reason: null, error: null, stepDurationsMs: {} });
    },
  };
  return { agent, calls };
}

let server: FastifyInstance | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function build(agent: UiAgent, secrets: PageSecrets = newSecrets()) {
  server = buildUiServer({ agent, app: 'shop', env: null, hostLabel: 'deploy@10.0.0.5:22', secrets });
  return { server, secrets };
}

const host = `127.0.0.1:${PORT}`;
const origin = `http://${host}`;
/** inject() has no socket port: the server reads localPort from the request's socket. */
const inject = (s: FastifyInstance, options: InjectOptions) => s.inject({ ...options, remoteAddress: '127.0.0.1' });

describe('guard (pure)', () => {
  const secrets: PageSecrets = { sessionKey: 'k'.repeat(43), csrfToken: 'c'.repeat(43) };
  const cookie = `${sessionCookieName(PORT)}=${secrets.sessionKey}`;
  const ok: RequestFacts = { method: 'GET', path: '/api/overview', host, origin: undefined, cookie, csrf: undefined, port: PORT };
  const code = (facts: Partial<RequestFacts>) => {
    try {
      checkRequest({ ...ok, ...facts }, secrets);
      return 'ok';
    } catch (error) {
      return `${(error as SlipwayError).code} ${(error as SlipwayError).status}`;
    }
  };

  it('answers the bound address only: another name (DNS rebinding), another port or no Host is refused', () => {
    expect(code({})).toBe('ok');
    expect(code({ host: `localhost:${PORT}` })).toBe('ok');
    expect(code({ host: `LOCALHOST:${PORT}` })).toBe('ok');
    expect(code({ host: `evil.example:${PORT}` })).toBe('host_not_allowed 421');
    expect(code({ host: '127.0.0.1:80' })).toBe('host_not_allowed 421');
    expect(code({ host: '127.0.0.1' })).toBe('host_not_allowed 421');
    expect(code({ host: undefined })).toBe('host_not_allowed 421');
  });

  it('every /api request needs the session cookie of this run and this port; the page\'s files do not', () => {
    expect(code({ cookie: undefined })).toBe('ui_session_required 401');
    expect(code({ cookie: `${sessionCookieName(PORT)}=wrong` })).toBe('ui_session_required 401');
    expect(code({ cookie: `${sessionCookieName(PORT + 1)}=${secrets.sessionKey}` })).toBe('ui_session_required 401');
    expect(code({ path: '/app.js', cookie: undefined })).toBe('ok');
  });

  it('an action needs its own origin and the CSRF token besides the session', () => {
    const action = { method: 'POST', path: '/api/apps/shop/rollback', origin, csrf: secrets.csrfToken };
    expect(code(action)).toBe('ok');
    expect(code({ ...action, csrf: undefined })).toBe('csrf_token_invalid 403');
    expect(code({ ...action, csrf: 'c'.repeat(42) })).toBe('csrf_token_invalid 403');
    // The session cookie is no CSRF token: a page that could send the cookie along still lacks the header.
    expect(code({ ...action, csrf: secrets.sessionKey })).toBe('csrf_token_invalid 403');
    // Another port of the same host is the same site for SameSite, not the same origin.
    expect(code({ ...action, origin: `http://127.0.0.1:${PORT + 1}` })).toBe('origin_not_allowed 403');
    expect(code({ ...action, origin: 'null' })).toBe('origin_not_allowed 403');
    expect(code({ ...action, origin: undefined })).toBe('origin_not_allowed 403');
    expect(code({ ...action, host: `localhost:${PORT}`, origin: `http://localhost:${PORT}` })).toBe('ok');
  });

  it('cookies and secrets', () => {
    expect(cookieValue('a=1; slipway_ui_4321=xyz; b=2', 'slipway_ui_4321')).toBe('xyz');
    expect(cookieValue('slipway_ui_43210=xyz', 'slipway_ui_4321')).toBeUndefined();
    expect(secretMatches('abc', 'abc')).toBe(true);
    expect(secretMatches('abc', 'abd')).toBe(false);
    expect(secretMatches('abc', '')).toBe(false);
    expect(secretMatches('abc', undefined)).toBe(false);
    const a = newSecrets();
    expect(a.sessionKey).not.toBe(a.csrfToken);
    expect(a.sessionKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('opens the browser with an argv, per platform', () => {
    expect(openCommand('linux', 'http://127.0.0.1:1/?key=a&b')).toEqual(['xdg-open', 'http://127.0.0.1:1/?key=a&b']);
    expect(openCommand('darwin', 'u')).toEqual(['open', 'u']);
  });
});

describe('page server (inject, fake agent)', () => {
  // inject() reports no local port; the guard then checks against port 0.
  const injectHost = '127.0.0.1:0';
  const injectOrigin = `http://${injectHost}`;
  const session = (secrets: PageSecrets) => `${sessionCookieName(0)}=${secrets.sessionKey}`;

  it('the printed URL\'s key becomes an HttpOnly SameSite=Strict cookie; a wrong key opens nothing', async () => {
    const { server: s, secrets } = build(fakeAgent().agent);
    const opened = await inject(s, { url: `/?key=${secrets.sessionKey}`, headers: { host: injectHost } });
    expect(opened.statusCode).toBe(303);
    expect(opened.headers.location).toBe('/');
    expect(opened.headers['set-cookie']).toBe(`${sessionCookieName(0)}=${secrets.sessionKey}; Path=/; HttpOnly; SameSite=Strict`);
    for (const url of ['/?key=nope', `/?key=${secrets.sessionKey}&key=${secrets.sessionKey}`]) {
      const wrong = await inject(s, { url, headers: { host: injectHost } });
      expect(wrong.statusCode, url).toBe(403);
      expect(wrong.headers['set-cookie']).toBeUndefined();
    }
    const page = await inject(s, { url: '/', headers: { host: injectHost } });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['x-frame-options']).toBe('DENY');
    // No external asset: every src/href of the page is its own.
    expect([...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])).toEqual(['/app.css', '/app.js', '#main']);
  });

  it('reads go to the agent paths the CLI uses; a failing part is reported on its own; no answer carries the token', async () => {
    const { agent, calls } = fakeAgent();
    const { server: s, secrets } = build(agent);
    const answer = await inject(s, { url: '/api/overview?since=7d', headers: { host: injectHost, cookie: session(secrets) } });
    expect(answer.statusCode).toBe(200);
    expect(calls.map((c) => c.path).sort()).toEqual(['/apps', '/apps/shop', '/apps/shop/deployments?limit=20', '/apps/shop/dora?since=7d', '/apps/shop/releases', '/backups', '/notifications']);
    const body = answer.json();
    expect(body).toMatchObject({ app: 'shop', target: 'shop', status: { ok: true }, dora: { ok: false, error: { error: 'agent_unreachable' } }, backups: { ok: true, value: null } });
    const sessionAnswer = await inject(s, { url: '/api/session', headers: { host: injectHost, cookie: session(secrets) } });
    expect(sessionAnswer.json()).toEqual({ app: 'shop', env: null, host: 'deploy@10.0.0.5:22', csrfToken: secrets.csrfToken, csrfHeader: CSRF_HEADER });
    for (const text of [answer.body, sessionAnswer.body]) expect(text).not.toContain(TOKEN);
    const bad = await inject(s, { url: '/api/overview?app=../etc', headers: { host: injectHost, cookie: session(secrets) } });
    expect(bad.statusCode).toBe(400);
  });

  it('a rollback with session, origin and token streams the agent\'s lines; without the token nothing reaches the agent', async () => {
    const { agent, calls } = fakeAgent();
    const { server: s, secrets } = build(agent);
    const headers = { host: injectHost, origin: injectOrigin, cookie: session(secrets), 'content-type': 'application/json' };
    const refused = await inject(s, { method: 'POST', url: '/api/apps/shop/rollback', headers, payload: { reason: 'broken checkout' } });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ error: 'csrf_token_invalid' });
    const wrong = await inject(s, { method: 'POST', url: '/api/apps/shop/rollback', headers: { ...headers, [CSRF_HEADER]: 'guess' }, payload: { reason: 'x' } });
    expect(wrong.statusCode).toBe(403);
    expect(calls.filter((c) => c.method === 'POST')).toEqual([]);

    const done = await inject(s, { method: 'POST', url: '/api/apps/shop/rollback', headers: { ...headers, [CSRF_HEADER]: secrets.csrfToken }, payload: { reason: 'broken checkout' } });
    expect(done.statusCode).toBe(200);
    expect(done.headers['content-type']).toContain('application/x-ndjson');
    expect(done.body.trim().split('\n').map((l) => JSON.parse(l).type)).toEqual(['event', 'result']);
    expect(calls.filter((c) => c.method === 'POST')).toEqual([{ method: 'POST', path: '/apps/shop/rollback', body: { reason: 'broken checkout', force: false } }]);
  });

  it('an action needs a reason, targets the app deploy ui was started for, and an agent refusal keeps its status and message', async () => {
    const { agent, calls } = fakeAgent({ refuse: new SlipwayError('slot_not_running', 'green runs nothing', { status: 409, hint: 'push first' }) });
    const { server: s, secrets } = build(agent);
    const headers = { host: injectHost, origin: injectOrigin, cookie: session(secrets), 'content-type': 'application/json', [CSRF_HEADER]: secrets.csrfToken };
    for (const reason of [undefined, '', '   ', 'two\nlines']) {
      const answer = await inject(s, { method: 'POST', url: '/api/apps/shop/switch', headers, payload: { slot: 'green', ...(reason === undefined ? {} : { reason }) } });
      expect(answer.statusCode, JSON.stringify(reason)).toBe(400);
    }
    const other = await inject(s, { method: 'POST', url: '/api/apps/blog/switch', headers, payload: { slot: 'green', reason: 'x' } });
    expect(other.statusCode).toBe(403);
    expect(other.json()).toMatchObject({ error: 'ui_app_not_targeted' });
    expect(calls.filter((c) => c.method === 'POST')).toEqual([]);
    const refused = await inject(s, { method: 'POST', url: '/api/apps/shop/switch', headers, payload: { slot: 'green', reason: 'try green' } });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toEqual({ error: 'slot_not_running', message: 'green runs nothing', hint: 'push first' });
    expect(calls.filter((c) => c.method === 'POST')).toEqual([{ method: 'POST', path: '/apps/shop/switch', body: { slot: 'green', reason: 'try green' } }]);
  });
});
