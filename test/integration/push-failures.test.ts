import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, REPO_TEMPLATE_DIR, startStack, type Stack } from '../helpers/stack.js';
import { gzip, tarball } from '../helpers/crafted-tar.js';
import { releaseOfCommit } from '../helpers/state.js';

describe('deploy push failure paths leave the live slot serving (real sshd, nginx, PM2)', () => {
  let stack: Stack;
  let templateDir: string;
  let liveSha: string;
  let token: string;

  beforeAll(async () => {
    // A private copy of the templates, so a test can break it without touching the package's.
    templateDir = await fs.mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'slipway-templates-'));
    await fs.cp(REPO_TEMPLATE_DIR, templateDir, { recursive: true });
    stack = await startStack({ templateDir });
    token = readFileSync(path.join(stack.dir, 'agent.token'), 'utf8').trim();
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    liveSha = releaseOfCommit(stack.home, APP, await stack.repo.head());
  });
  afterAll(async () => {
    await stack?.stop();
    if (templateDir) await fs.rm(templateDir, { recursive: true, force: true });
  });

  async function expectLiveUntouched(): Promise<void> {
    const answer = await stack.get('/');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ release: liveSha, slot: 'blue' });
  }

  it('a template nginx rejects: nginx -t fails, live config byte-identical, nginx\'s own message shown', async () => {
    const liveConfigPath = path.join(stack.nginx.includeDir, `${APP}.conf`);
    const liveConfig = await fs.readFile(liveConfigPath, 'utf8');
    const good = await fs.readFile(path.join(templateDir, 'app.conf.njk'), 'utf8');
    await fs.writeFile(path.join(templateDir, 'app.conf.njk'), good.replace('client_max_body_size', 'bogus_directive on;\n    client_max_body_size'));
    try {
      await stack.repo.commit({ 'message.txt': 'never served\n' }, 'release under a broken template');
      const result = await stack.deploy(['push']);
      expect(result.code).toBe(3);
      expect(result.stdout).toContain('unknown directive "bogus_directive"');
      expect(result.stdout).toContain('live slot untouched');
      expect(await fs.readFile(liveConfigPath, 'utf8')).toBe(liveConfig);
      await expectLiveUntouched();
    } finally {
      await fs.writeFile(path.join(templateDir, 'app.conf.njk'), good);
    }
  });

  it('a template using an unknown variable fails before nginx is touched', async () => {
    const good = await fs.readFile(path.join(templateDir, 'app.conf.njk'), 'utf8');
    await fs.writeFile(path.join(templateDir, 'app.conf.njk'), `${good}\n# {{ notAVariable }}\n`);
    try {
      const result = await stack.deploy(['push']);
      expect(result.code).toBe(3);
      expect(result.stdout).toMatch(/nginx template .* failed to render/);
      await expectLiveUntouched();
    } finally {
      await fs.writeFile(path.join(templateDir, 'app.conf.njk'), good);
    }
  });

  it('a tarball with ../ entries is refused and nothing is written outside the release store', async () => {
    // A release id as `deploy push` names them (<12 hex of the commit>-<12 hex of the content digest>).
    const evilSha = `${'e'.repeat(12)}-${'e'.repeat(12)}`;
    const body = gzip(tarball([
      { path: 'manifest.json', body: '{}' },
      { path: '../../escaped.txt', body: 'pwned' },
    ]));
    const response = await fetch(`http://127.0.0.1:${stack.agentPort}/apps/${APP}/releases/${evilSha}`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/gzip',
        'x-slipway-sha256': createHash('sha256').update(body).digest('hex'),
      },
      body: new Uint8Array(body),
    });
    expect(response.status).toBe(400);
    const error = await response.json() as { error: string; message: string };
    expect(error.error).toBe('bad_tarball');
    expect(error.message).toContain('../../escaped.txt');
    await expect(fs.access(path.join(stack.home, 'escaped.txt'))).rejects.toThrow();
    await expect(fs.access(path.join(stack.home, 'releases', 'escaped.txt'))).rejects.toThrow();
    await expect(fs.access(path.join(stack.home, 'releases', APP, evilSha))).rejects.toThrow();
    expect((await fs.readdir(path.join(stack.home, 'releases', APP))).filter((f) => f.startsWith('.tmp'))).toEqual([]);
    expect(await fs.readdir(path.join(stack.home, 'incoming'))).toEqual([]);
    await expectLiveUntouched();
  });

  it('the API refuses a missing or wrong token with 401', async () => {
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${token}x`]) {
      const response = await fetch(`http://127.0.0.1:${stack.agentPort}/apps/${APP}`, { headers: authorization ? { authorization } : {} });
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ error: 'unauthorized' });
    }
  });

  it('a host missing from known_hosts is refused, with its fingerprint and the command to trust it', async () => {
    const emptyKnownHosts = path.join(stack.dir, 'empty_known_hosts');
    await fs.writeFile(emptyKnownHosts, '');
    const configPath = path.join(stack.repo.dir, 'deploy.config.json');
    const config = JSON.parse(await fs.readFile(configPath, 'utf8'));
    config.host.knownHostsFile = emptyKnownHosts;
    const otherConfig = path.join(stack.dir, 'unknown-host.config.json');
    await fs.writeFile(otherConfig, JSON.stringify(config));
    const result = await stack.deploy(['push', '--config', otherConfig]);
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/SHA256:[A-Za-z0-9+/]{43}/);
    expect(result.stderr).toContain(`ssh-keyscan -p ${stack.sshd.port}`);
    await expectLiveUntouched();
  });
});
