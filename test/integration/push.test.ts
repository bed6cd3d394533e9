import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, httpGet, startStack, type HttpAnswer, type Stack } from '../helpers/stack.js';
import { PROBE_HEADER, probeSecretPath, probeSnippetPath } from '../../agent/nginx/probe-secret.js';
import { Pm2Adapter } from '../../agent/pm2.js';
import { readState as readStateAt, releaseOfCommit } from '../helpers/state.js';

const readState = (stack: Stack) => readStateAt(stack.home, APP);

describe('deploy push end to end (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;
  let pm2: Pm2Adapter;
  let firstSha: string;
  let secondSha: string;

  /** A release id covers the commit and the files: the release on the box packed from `sha`. */
  const releaseOf = (sha: string): string => releaseOfCommit(stack.home, APP, sha);

  beforeAll(async () => {
    stack = await startStack();
    pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    firstSha = await stack.repo.head();
  });
  afterAll(async () => {
    await pm2?.disconnect();
    await stack?.stop();
  });

  it('pushes the first release to blue and nginx serves its SHA', async () => {
    const result = await stack.deploy(['push']);
    expect(result.stderr + result.stdout).toContain('is live on blue');
    expect(result.code).toBe(0);
    const answer = await stack.get('/');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ release: releaseOf(firstSha), slot: 'blue' });
    expect(answer.headers['x-slipway-release']).toBe(releaseOf(firstSha));
    const blue = await pm2.describe(`${APP}-blue`);
    expect(blue?.pmCwd).toBe(await fs.realpath(path.join(stack.home, 'releases', APP, releaseOf(firstSha))));
    expect(readState(stack).app?.liveSlot).toBe('blue');
  });

  it('sends the X-Slipway-* markers only to the agent\'s probes, never to ordinary clients', async () => {
    const markers = (answer: HttpAnswer) => Object.keys(answer.headers).filter((name) => name.startsWith('x-slipway-'));
    const plain = await httpGet(`${stack.publicUrl}/`);
    expect(plain.status).toBe(200);
    expect(markers(plain)).toEqual([]);
    const guessed = await httpGet(`${stack.publicUrl}/`, { headers: { [PROBE_HEADER]: 'f'.repeat(64) } });
    expect(markers(guessed)).toEqual([]);
    const probe = await stack.get('/');
    expect(probe.headers).toMatchObject({ 'x-slipway-release': releaseOf(firstSha), 'x-slipway-slot': 'blue', 'x-slipway-switch': 'file' });
    expect((await fs.stat(probeSecretPath(stack.home))).mode & 0o777).toBe(0o600);
    // The secret sits in its own 0600 file, which the include only names: the include itself holds none.
    const secret = (await fs.readFile(probeSecretPath(stack.home), 'utf8')).trim();
    expect((await fs.stat(probeSnippetPath(stack.home))).mode & 0o777).toBe(0o600);
    expect(await fs.readFile(probeSnippetPath(stack.home), 'utf8')).toContain(secret);
    const include = await fs.readFile(path.join(stack.nginx.includeDir, `${APP}.conf`), 'utf8');
    expect(include).toContain(`include ${probeSnippetPath(stack.home)};`);
    expect(include).not.toContain(secret);
  });

  it('pushes a second commit to green; blue keeps running untouched', async () => {
    const bluePidBefore = (await pm2.describe(`${APP}-blue`))?.pid;
    secondSha = await stack.repo.commit({ 'message.txt': 'second commit\n' }, 'second');
    const result = await stack.deploy(['push', '--slot', 'green']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`${releaseOf(secondSha)} is live on green`);
    // the summary names every step with its time
    expect(result.stdout).toMatch(/upload .*healthy .*switching/s);
    const answer = await stack.get('/');
    expect(JSON.parse(answer.body)).toMatchObject({ release: releaseOf(secondSha), slot: 'green', message: 'second commit' });
    expect(answer.headers['x-slipway-slot']).toBe('green');
    // blue is still up on its own port, same process, old release
    const blueDirect = await fetch(`http://127.0.0.1:${stack.slotPorts.blue}/`).then((r) => r.json());
    expect(blueDirect).toMatchObject({ release: releaseOf(firstSha), slot: 'blue' });
    expect((await pm2.describe(`${APP}-blue`))?.pid).toBe(bluePidBefore);
    const state = readState(stack);
    expect(state.app?.liveSlot).toBe('green');
    expect(state.slots.map((s) => [s.slot, s.releaseId, s.state])).toEqual([
      ['blue', releaseOf(firstSha), 'running'],
      ['green', releaseOf(secondSha), 'running'],
    ]);
    expect(state.deployments[0]).toMatchObject({ outcome: 'succeeded', slot: 'green', releaseId: releaseOf(secondSha), previousSlot: 'blue' });
  });

  it('status shows both slots, the live one and the releases', async () => {
    const result = await stack.deploy(['--json', 'status']);
    expect(result.code, result.stderr).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(status.liveSlot).toBe('green');
    expect(status.slots).toEqual([
      expect.objectContaining({ slot: 'blue', releaseId: releaseOf(firstSha), live: false, health: expect.objectContaining({ ok: true }) }),
      expect.objectContaining({ slot: 'green', releaseId: releaseOf(secondSha), live: true, health: expect.objectContaining({ ok: true }) }),
    ]);
    expect(status.releases.map((r: { releaseId: string }) => r.releaseId).sort()).toEqual([releaseOf(firstSha), releaseOf(secondSha)].sort());
  });

  it('deploy switch moves traffic between running slots, proving each one healthy first', async () => {
    // Both slots run and the include already names both releases: switching is a flag flip, so
    // nginx keeps its workers (no reload) and the include is not rewritten.
    const workers = stack.nginx.workerPids();
    const include = await fs.readFile(path.join(stack.nginx.includeDir, `${APP}.conf`), 'utf8');
    const toBlue = await stack.deploy(['switch', 'blue']);
    expect(toBlue.code, toBlue.stderr).toBe(0);
    expect(JSON.parse((await stack.get('/')).body)).toMatchObject({ release: releaseOf(firstSha), slot: 'blue' });
    const again = await stack.deploy(['switch', 'blue']);
    expect(again.code, again.stderr).toBe(3);
    expect(again.stderr).toContain('blue is already the live slot');
    const toGreen = await stack.deploy(['switch', 'green', '--reason', 'green has the fix']);
    expect(toGreen.code, toGreen.stderr).toBe(0);
    expect(JSON.parse((await stack.get('/')).body)).toMatchObject({ release: releaseOf(secondSha), slot: 'green' });
    expect(readState(stack).deployments.slice(0, 2).map((d) => [d.kind, d.slot, d.outcome])).toEqual([
      ['switch', 'green', 'succeeded'], ['switch', 'blue', 'succeeded'],
    ]);
    expect(readState(stack).deployments[0]!.note).toBe('green has the fix');
    expect(stack.nginx.workerPids()).toEqual(workers);
    expect(await fs.readFile(path.join(stack.nginx.includeDir, `${APP}.conf`), 'utf8')).toBe(include);
  });

  it('deploy switch refuses a slot whose app stopped answering, and traffic stays', async () => {
    await pm2.stop(`${APP}-blue`);
    try {
      const result = await stack.deploy(['switch', 'blue']);
      expect(result.code).toBe(3);
      expect(result.stdout).toContain('failed its health check');
      expect(JSON.parse((await stack.get('/')).body)).toMatchObject({ release: releaseOf(secondSha), slot: 'green' });
      expect(readState(stack).app?.liveSlot).toBe('green');
    } finally {
      // bring blue back exactly as the agent would: a fresh deploy of the same release
      const redeploy = await stack.deploy(['push', '--sha', firstSha, '--slot', 'blue']);
      expect(redeploy.code, redeploy.stderr).toBe(0);
      const back = await stack.deploy(['switch', 'green']);
      expect(back.code, back.stderr).toBe(0);
    }
  });

  it('re-pushing the live SHA sends nothing and changes nothing', async () => {
    const generationBefore = readState(stack).app?.generation;
    const result = await stack.deploy(['--json', 'push']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ outcome: 'unchanged' });
    expect(lines.some((l) => l.type === 'progress')).toBe(false);
    expect(readState(stack).app?.generation).toBe(generationBefore);
  });

  it('pushing a release the host already has uploads nothing and still rolls out', async () => {
    const result = await stack.deploy(['--json', 'push', '--sha', firstSha]);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((l) => l.type === 'progress')).toBe(false);
    expect(lines.find((l) => l.message?.includes('nothing uploaded'))).toBeTruthy();
    expect(lines.at(-1)).toMatchObject({ type: 'result', outcome: 'succeeded', slot: 'blue', uploadedBytes: 0 });
    expect(JSON.parse((await stack.get('/')).body)).toMatchObject({ release: releaseOf(firstSha), slot: 'blue' });
  });

  it('asking for the live slot is refused with the command to use instead', async () => {
    const result = await stack.deploy(['push', '--sha', secondSha, '--slot', 'blue']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('blue is the live slot');
    expect(result.stderr).toContain('deploy push --slot green');
  });

  it('a release that fails its health check never gets traffic', async () => {
    const liveBefore = await stack.get('/');
    const badSha = await stack.repo.commit({ FAIL_HEALTH: 'yes\n' }, 'unhealthy release');
    const result = await stack.deploy(['push']);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('failed before the switch (live slot untouched)');
    expect(result.stdout).toContain('health check');
    const liveAfter = await stack.get('/');
    expect(JSON.parse(liveAfter.body).release).toBe(JSON.parse(liveBefore.body).release);
    expect(liveAfter.headers['x-slipway-generation']).toBe(liveBefore.headers['x-slipway-generation']);
    // the failed slot was stopped, and the state says so
    expect(await pm2.describe(`${APP}-green`)).toBeNull();
    const state = readState(stack);
    expect(state.app?.liveSlot).toBe('blue');
    expect(state.slots.find((s) => s.slot === 'green')).toMatchObject({ releaseId: releaseOf(badSha), state: 'failed' });
    expect(state.deployments[0]).toMatchObject({ outcome: 'failed', releaseId: releaseOf(badSha) });
    await stack.repo.commit({ FAIL_HEALTH: null }, 'healthy again');
  });

  it('refuses a dirty work tree unless --allow-dirty, which tags the release', async () => {
    await fs.writeFile(path.join(stack.repo.dir, 'message.txt'), 'uncommitted\n');
    const refused = await stack.deploy(['push']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('uncommitted changes');
    const result = await stack.deploy(['push', '--allow-dirty']);
    expect(result.code, result.stderr).toBe(0);
    const body = JSON.parse((await stack.get('/')).body);
    expect(body.release, result.stderr + result.stdout).toMatch(/^[0-9a-f]{12}-[0-9a-f]{12}$/);
    expect(readState(stack).releases.find((r) => r.releaseId === body.release)?.manifest.dirty).toBe(true);
    expect(body.message).toBe('uncommitted');
  });
});
