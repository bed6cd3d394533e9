/**
 * GET and PATCH /apps/:app/env through the agent's real server (buildServer, inject), on real files
 * in a temp dir: the answers name keys only, the file is replaced atomically at 0600 with its
 * previous content kept, concurrent edits of one app are serialised, and no value reaches the
 * request log or the audit.
 */
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseEnvFile } from '../../contract/env-file.js';
import { buildServer, type ServerDeps } from '../../agent/server.js';
import { createLogger } from '../../agent/logger.js';
import type { AuditEntry } from '../../agent/plugins/audit-log.js';

const TOKEN = 't'.repeat(43);
const APP = 'shop';
const auth = { authorization: `Bearer ${TOKEN}`, host: 'localhost' };
const SECRET = 'hunter2-"quoted" and spaced\nsecond line';
const SECRET_2 = 'sk_live_5d41402abc4b2a76b9719d911017c592';

let dir: string;
let server: FastifyInstance;
let logText: string;
let audit: AuditEntry[];

function start(files: { envFile?: string } = {}) {
  const unused = () => { throw new Error('not expected in this test'); };
  const config = { home: dir, apps: { [APP]: { ...(files.envFile ? { envFile: files.envFile } : {}) } } } as unknown as ServerDeps['config'];
  const deps = {
    config,
    token: TOKEN,
    state: { audit: (entry: AuditEntry) => { audit.push(entry); }, app: () => ({ name: APP, liveSlot: null, generation: 0, updatedAt: '' }) } as unknown as ServerDeps['state'],
    releases: { has: () => false } as unknown as ServerDeps['releases'],
    rollouts: {} as ServerDeps['rollouts'],
    processes: {} as ServerDeps['processes'],
    health: { checkOnce: unused },
    cleanup: vi.fn(),
    backups: { service: {} as ServerDeps['backups']['service'] },
    logger: createLogger({ level: 'trace', destination: new Writable({ write(chunk, _enc, done) { logText += String(chunk); done(); } }) }),
    version: '0.0.0-test',
  } satisfies ServerDeps;
  server = buildServer(deps);
  return server;
}

const envFile = () => path.join(dir, 'apps', APP, 'shared', '.env');
const patch = (body: unknown, app = APP) => server.inject({ method: 'PATCH', url: `/apps/${app}/env`, headers: auth, payload: body as object });
const view = () => server.inject({ method: 'GET', url: `/apps/${APP}/env`, headers: auth });

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-env-routes-'));
  logText = '';
  audit = [];
});
afterEach(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('/apps/:app/env', () => {
  it('a missing file has no keys and no update time', async () => {
    start();
    const answer = await view();
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ file: envFile(), keys: [], mode: '600', updatedAt: null, missing: null });
  });

  it('sets keys (creating the file and its directory private), answers key names only, and reads back the values', async () => {
    start();
    const set = await patch({ set: { DATABASE_URL: SECRET, API_KEY: SECRET_2 } });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toEqual({ keys: ['DATABASE_URL', 'API_KEY'], added: ['DATABASE_URL', 'API_KEY'], changed: [], removed: [], unchanged: [] });
    expect((await fs.stat(envFile())).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(envFile()))).mode & 0o777).toBe(0o700);
    expect(parseEnvFile(await fs.readFile(envFile(), 'utf8'))).toEqual({ ok: true, env: { DATABASE_URL: SECRET, API_KEY: SECRET_2 } });
    // No .previous before there was a previous file.
    await expect(fs.stat(`${envFile()}.previous`)).rejects.toMatchObject({ code: 'ENOENT' });

    const again = await patch({ set: { DATABASE_URL: SECRET, API_KEY: 'rotated' }, unset: ['GONE'] });
    expect(again.json()).toEqual({ keys: ['DATABASE_URL', 'API_KEY'], added: [], changed: ['API_KEY'], removed: [], unchanged: ['DATABASE_URL', 'GONE'] });
    const previous = `${envFile()}.previous`;
    expect((await fs.stat(previous)).mode & 0o777).toBe(0o600);
    expect(parseEnvFile(await fs.readFile(previous, 'utf8'))).toEqual({ ok: true, env: { DATABASE_URL: SECRET, API_KEY: SECRET_2 } });

    const listed = (await view()).json();
    expect(listed).toMatchObject({ keys: ['DATABASE_URL', 'API_KEY'], mode: '600' });
    expect(Date.parse(listed.updatedAt)).not.toBeNaN();

    const unset = await patch({ unset: ['API_KEY'] });
    expect(unset.json()).toMatchObject({ keys: ['DATABASE_URL'], removed: ['API_KEY'] });

    // Not a value in any answer, log line or audit row.
    const everything = [set.body, again.body, unset.body, JSON.stringify(listed), logText, JSON.stringify(audit)].join('\n');
    for (const secret of [SECRET, SECRET_2, 'hunter2', 'rotated', 'sk_live_']) expect(everything).not.toContain(secret);
    expect(audit.map((a) => a.args.body)).toEqual([
      { set: ['DATABASE_URL', 'API_KEY'], unset: [] },
      { set: ['DATABASE_URL', 'API_KEY'], unset: ['GONE'] },
      { set: [], unset: ['API_KEY'] },
    ]);
    expect(logText).toContain('env file edited');
  });

  it('serialises concurrent edits of one app: every key lands', async () => {
    start();
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => patch({ set: { [`K${i}`]: `value ${i}` } })));
    expect(answers.map((a) => a.statusCode)).toEqual(Array(12).fill(200));
    const parsed = parseEnvFile(await fs.readFile(envFile(), 'utf8'));
    expect(parsed).toEqual({ ok: true, env: Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`K${i}`, `value ${i}`])) });
  });

  it('writes a symlinked env file where it points, keeping the link', async () => {
    const real = path.join(dir, 'secrets', 'shop.env');
    const link = path.join(dir, 'shop.env');
    await fs.mkdir(path.dirname(real), { mode: 0o700 });
    await fs.writeFile(real, 'A=1\n', { mode: 0o600 });
    await fs.symlink(real, link);
    start({ envFile: link });
    expect((await patch({ set: { B: 'two words' } })).json()).toMatchObject({ added: ['B'] });
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
    expect(await fs.readFile(real, 'utf8')).toBe("A=1\nB='two words'\n");
    expect(await fs.readFile(`${real}.previous`, 'utf8')).toBe('A=1\n');
  });

  it('refuses an insecure or unparsable file with the existing codes, and leaves it as it was', async () => {
    const file = path.join(dir, 'custom.env');
    start({ envFile: file });
    await fs.writeFile(file, 'A=1\n', { mode: 0o644 });
    await fs.chmod(file, 0o644);
    for (const answer of [await view(), await patch({ set: { B: 'x' } })]) {
      expect(answer.statusCode).toBe(409);
      expect(answer.json()).toMatchObject({ error: 'env_file_insecure', hint: `run: chmod 600 ${file}` });
    }
    await fs.chmod(file, 0o600);
    await fs.writeFile(file, 'A=1\nthis line holds SECRET_TEXT\n');
    const bad = await patch({ set: { B: 'x' } });
    expect(bad.json()).toMatchObject({ error: 'env_file_invalid', details: ['line 2: expected KEY=VALUE'] });
    expect(bad.body).not.toContain('SECRET_TEXT');
    expect(await fs.readFile(file, 'utf8')).toBe('A=1\nthis line holds SECRET_TEXT\n');
  });

  it('refuses bad requests without echoing values: unknown app, bad key, empty change, a value no quoting carries', async () => {
    start();
    expect((await patch({ set: { A: 'x' } }, 'other')).json()).toMatchObject({ error: 'app_not_found' });
    const badKey = await patch({ set: { 'NOT-A-KEY': 'secret-value-1' } });
    expect(badKey.statusCode).toBe(400);
    expect(badKey.json()).toMatchObject({ error: 'invalid_request' });
    expect((await patch({})).statusCode).toBe(400);
    expect((await patch({ set: {}, unset: [] })).json()).toMatchObject({ error: 'invalid_request', details: ['nothing to set or unset'] });
    const nul = await patch({ set: { TOKEN_X: 'secret-value-2\u0000' } });
    expect(nul.json()).toMatchObject({ error: 'env_value_invalid', message: expect.stringContaining('TOKEN_X') });
    expect((await patch({ set: { BIG: 'x'.repeat(64 * 1024 + 1) } })).statusCode).toBe(400);
    const all = [badKey.body, nul.body, logText, JSON.stringify(audit)].join('\n');
    expect(all).not.toContain('secret-value-');
    await expect(fs.stat(envFile())).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
