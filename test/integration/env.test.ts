import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.js';
import { openDatabase } from '../../agent/state/db.js';
import { parseEnvFile } from '../../contract/env-file.js';
import type { CliResult } from '../helpers/agent-process.js';

// deploy env on the real single-host stack: the CLI over sshd to the real agent, secrets from the
// CLI's environment and stdin into the app's env file, served by the next push through nginx, and
// never in the CLI's output, the agent's log or the audit.

const DB_PASSWORD = 'p4ss "quoted" it\'s #not-a-comment\nsecond line 8d1c';
const API_TOKEN = 'tok_live_3f9a7c21e0b44d5e';
const STDIN_SECRET = 'from stdin = b7e2 \\ backslash';
const ARGV_SECRET = 'argv-secret-5a0c';
const SECRETS = [DB_PASSWORD, API_TOKEN, STDIN_SECRET, ARGV_SECRET, '8d1c', '3f9a7c21', 'b7e2'];

// An app that answers the values of its environment the test asks for (GET /env?keys=A,B).
const ENV_APP = `'use strict';
const http = require('node:http');
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/health') { res.end('ok'); return; }
  const keys = (url.searchParams.get('keys') || '').split(',').filter(Boolean);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(Object.fromEntries(keys.map((k) => [k, process.env[k] ?? null]))));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

describe('deploy env', () => {
  let stack: Stack;
  let appDir: string;
  const outputs: CliResult[] = [];
  const deploy = async (args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}) => {
    const result = await stack.deploy(args, options);
    outputs.push(result);
    return result;
  };
  const readEnv = async () => parseEnvFile(await fs.readFile(stack.envFile, 'utf8'));

  beforeAll(async () => {
    appDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-env-app-'));
    await fs.writeFile(path.join(appDir, 'server.js'), ENV_APP);
    await fs.writeFile(path.join(appDir, 'package.json'), JSON.stringify({ name: 'env-app', version: '1.0.0', private: true, main: 'server.js' }));
    stack = await startStack({ appDir });
  });
  afterAll(async () => {
    await stack?.stop();
    if (appDir) await fs.rm(appDir, { recursive: true, force: true });
  });

  it('sets secrets from the environment and stdin, lists keys only, and a push serves them', async () => {
    const set = await deploy(['env', 'set', 'DB_PASSWORD', 'API_TOKEN'], { env: { DB_PASSWORD, API_TOKEN } });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('added DB_PASSWORD, API_TOKEN');
    expect(set.stderr).toContain('takes effect when a slot starts');

    const piped = await deploy(['--json', 'env', 'set', '--stdin'], { input: `# from a secrets file\nSTDIN_SECRET='${STDIN_SECRET}'\n` });
    expect(piped.code, piped.stdout + piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout.trim().split('\n').at(-1)!)).toMatchObject({ written: [expect.any(String)], hosts: [{ added: ['STDIN_SECRET'], error: null }] });

    // The file: private, and it reads back exactly what was set (the stack's first key kept).
    expect((await fs.stat(stack.envFile)).mode & 0o777).toBe(0o600);
    expect(await readEnv()).toEqual({ ok: true, env: { SAMPLE_GREETING: 'hello', DB_PASSWORD, API_TOKEN, STDIN_SECRET } });
    expect((await fs.stat(`${stack.envFile}.previous`)).mode & 0o777).toBe(0o600);

    const listed = await deploy(['env']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(`${stack.envFile} (mode 600, updated `);
    expect(listed.stdout).toMatch(/^ {2}SAMPLE_GREETING\n {2}DB_PASSWORD\n {2}API_TOKEN\n {2}STDIN_SECRET$/m);
    const json = await deploy(['--json', 'env', 'list']);
    expect(JSON.parse(json.stdout.trim())).toMatchObject({ hosts: [{ env: { keys: ['SAMPLE_GREETING', 'DB_PASSWORD', 'API_TOKEN', 'STDIN_SECRET'], mode: '600', missing: null } }] });

    const pushed = await deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const served = await stack.get('/env?keys=DB_PASSWORD,API_TOKEN,STDIN_SECRET');
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toEqual({ DB_PASSWORD, API_TOKEN, STDIN_SECRET });
    // With a live release, its required keys (the stack's requiredEnv: SAMPLE_GREETING) are all there.
    expect(JSON.parse((await deploy(['--json', 'env'])).stdout.trim())).toMatchObject({ hosts: [{ env: { missing: [] } }] });
  });

  it('unsets a key, and refuses a value on the command line without writing anything', async () => {
    const unset = await deploy(['env', 'unset', 'API_TOKEN']);
    expect(unset.code, unset.stderr).toBe(0);
    expect(unset.stdout).toContain('removed API_TOKEN');
    expect(await readEnv()).toEqual({ ok: true, env: { SAMPLE_GREETING: 'hello', DB_PASSWORD, STDIN_SECRET } });

    const before = await fs.readFile(stack.envFile);
    const onArgv = await deploy(['env', 'set', `LEAKED=${ARGV_SECRET}`]);
    expect(onArgv.code).toBe(2);
    expect(onArgv.stderr).toContain('a value on the command line is refused (LEAKED=…)');
    const onArgvJson = await deploy(['--json', 'env', 'set', `LEAKED=${ARGV_SECRET}`]);
    expect(onArgvJson.code).toBe(2);
    expect(JSON.parse(onArgvJson.stdout.trim())).toMatchObject({ error: 'env_value_on_argv', kind: 'usage' });
    const missing = await deploy(['env', 'set', 'NOT_IN_ENV']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no value for NOT_IN_ENV');
    expect(await fs.readFile(stack.envFile)).toEqual(before);

    // A required key removed shows as missing for the live release.
    const required = await deploy(['env', 'unset', 'SAMPLE_GREETING']);
    expect(required.code, required.stderr).toBe(0);
    expect((await deploy(['env'])).stdout).toContain('MISSING (the live release requires them): SAMPLE_GREETING');
  });

  it('no value reaches the CLI\'s output, the agent\'s log or the audit', async () => {
    const audit = (() => {
      const db = openDatabase(path.join(stack.home, 'agent.db'));
      try {
        return db.prepare("SELECT action, args FROM audit WHERE action LIKE '%/env'").all() as { action: string; args: string }[];
      } finally {
        db.close();
      }
    })();
    expect(audit.map((a) => a.action)).toEqual(Array(4).fill('PATCH /apps/:app/env'));
    expect(JSON.parse(audit[0]!.args)).toMatchObject({ body: { set: ['DB_PASSWORD', 'API_TOKEN'], unset: [] } });
    const agentLogs = await Promise.all((await fs.readdir(stack.dir)).filter((f) => f.endsWith('.log')).map((f) => fs.readFile(path.join(stack.dir, f), 'utf8')));
    expect(agentLogs.join('')).toContain('env file edited');
    const everything = [
      ...outputs.flatMap((o) => [o.stdout, o.stderr]), ...agentLogs, JSON.stringify(audit),
    ].join('\n');
    for (const secret of SECRETS) expect(everything, secret).not.toContain(secret);
    // The newline'd value is not there in its escaped forms either.
    expect(everything).not.toContain(JSON.stringify(DB_PASSWORD).slice(1, -1));
  });
});
