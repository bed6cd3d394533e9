/**
 * The upload-once relay, agent side (DESIGN-S10), between two real agents on 127.0.0.1 (two
 * stacks): a full or delta upload kept with ?relay=1 on A, a TLS-PSK session opened on A, B
 * fetching the bytes into the same ingest as an upload of that kind. B must store the release A
 * stored (same content digest, same kept tarball); every refusal must leave B without it; the
 * session must end after its fetches with its kept file gone; the key must never be written down.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentHashes } from '../../contract/file-manifest.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import type { RelayFetchRequest, RelaySessionRequest } from '../../contract/relay.js';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { buildManifest } from '../../controller/manifest.js';
import { prepareRelease, type PreparedRelease } from '../../controller/pack.js';
import { runCommand } from '../../lib/exec.js';
import { freePort } from '../helpers/ports.js';
import { contentDigestOfStoredRelease } from '../helpers/release-content.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

const MTIME = new Date('2024-01-01T00:00:00Z');
const LOCAL = '127.0.0.1';

interface Release { prep: PreparedRelease; manifest: ReleaseManifest }
interface Body { file: string; bytes: number; sha256: string }

describe('relay between two real agents: keep, serve over TLS-PSK, fetch into the upload ingest', () => {
  let a: Stack;
  let b: Stack;
  let work: string;
  let repo: string;
  const prepared: PreparedRelease[] = [];
  /** Every key handed to an agent in this test: none may reach a log or the audit table. */
  const keys: string[] = [];
  let base: Release;

  const tokenOf = async (stack: Stack) => (await fs.readFile(String((stack.agentConfig.api as { tokenFile: string }).tokenFile), 'utf8')).trim();
  const tokens = new Map<Stack, string>();
  const api = (stack: Stack, pathname: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${stack.agentPort}${pathname}`, {
    ...init, headers: { authorization: `Bearer ${tokens.get(stack)!}`, 'x-slipway-actor': 'dev@test', ...(init.headers as Record<string, string> ?? {}) },
  });
  const json = (stack: Stack, method: string, pathname: string, body: unknown) => api(stack, pathname, {
    method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });

  async function pack(files: Record<string, string | Buffer>): Promise<Release> {
    const dir = await fs.mkdtemp(path.join(work, 'src-'));
    for (const [rel, body] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await fs.writeFile(path.join(dir, rel), body, { mode: 0o644 });
    }
    const prep = await prepareRelease({ repo, treeish: 'HEAD', include: [], builtDir: dir, mtime: MTIME, hashCache: null });
    prepared.push(prep);
    const manifest = buildManifest({
      app: APP, sha: randomBytes(20).toString('hex'), dirtySnapshot: null, branch: 'main', authorName: 'T', authorEmail: 't@example.com',
      commitTime: MTIME.toISOString(),
    }, prep.contentDigest, '0.0.0-test');
    return { prep, manifest };
  }

  function tree(version: string): Record<string, string | Buffer> {
    const files: Record<string, string | Buffer> = { 'server.js': `console.log(${JSON.stringify(version)})\n` };
    // Enough bytes that the transfer streams in many chunks; shared by every version.
    for (let i = 0; i < 20; i++) files[`assets/blob${i}.bin`] = createHash('sha512').update(`blob ${i}`).digest().toString('hex').repeat(1500);
    files['version.txt'] = version;
    return files;
  }

  async function put(stack: Stack, pathname: string, body: Body): Promise<Response> {
    return api(stack, pathname, {
      method: 'PUT', headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': body.sha256, 'content-length': String(body.bytes) },
      body: await fs.readFile(body.file),
    });
  }

  const keptFile = (stack: Stack, sha256: string) => path.join(stack.home, 'relay', sha256);
  const exists = (file: string) => fs.lstat(file).then(() => true, () => false);

  function session(sha256: string, bytes: number, port: number, overrides: Partial<RelaySessionRequest> = {}): RelaySessionRequest {
    const key = randomBytes(32).toString('hex');
    keys.push(key);
    return { sha256, bytes, address: LOCAL, port, identity: `s-${randomBytes(6).toString('hex')}`, key, fetches: 1, ttlMs: 60_000, ...overrides };
  }

  const fetchBody = (open: RelaySessionRequest, kind: 'full' | 'delta', overrides: Partial<RelayFetchRequest> = {}): RelayFetchRequest => ({
    from: { address: open.address, port: open.port }, identity: open.identity, key: open.key, sha256: open.sha256, bytes: open.bytes, kind, ...overrides,
  });

  /** Neither B's release dir, nor its row, nor anything in its incoming/. */
  async function expectNotOn(stack: Stack, releaseId: string): Promise<void> {
    expect((await api(stack, `/apps/${APP}/releases/${releaseId}`)).status).toBe(404);
    expect(await exists(path.join(stack.home, 'releases', APP, releaseId))).toBe(false);
    expect(await fs.readdir(path.join(stack.home, 'incoming'))).toEqual([]);
  }

  beforeAll(async () => {
    [a, b] = [await startStack(), await startStack()];
    for (const stack of [a, b]) tokens.set(stack, await tokenOf(stack));
    work = await fs.mkdtemp(path.join(a.dir, 'relay-'));
    repo = path.join(work, 'repo');
    await fs.mkdir(repo);
    for (const argv of [['git', 'init', '-q'], ['git', 'commit', '-q', '--allow-empty', '-m', 'empty']]) {
      const result = await runCommand(argv, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@e' } });
      expect(result.exitCode, result.stderr).toBe(0);
    }
    // Both hosts have the base release: what a delta is made against.
    base = await pack(tree('v1'));
    const sealed = await base.prep.seal(base.manifest);
    for (const stack of [a, b]) {
      const answer = await put(stack, `/apps/${APP}/releases/${base.manifest.releaseId}`, sealed);
      expect(answer.status, await answer.text()).toBe(201);
    }
    // Nothing is kept without ?relay=1.
    expect(await exists(keptFile(a, sealed.sha256))).toBe(false);
  }, 240_000);

  afterAll(async () => {
    for (const prep of prepared) await prep.cleanup().catch(() => undefined);
    await a?.stop();
    await b?.stop();
  });

  it('full: kept on A (0600 in a 0700 dir), served once, stored on B as on A; the session then closes and its file is gone', async () => {
    const release = await pack(tree('v2-full'));
    const sealed = await release.prep.seal(release.manifest);
    const releaseId = release.manifest.releaseId;
    const uploaded = await put(a, `/apps/${APP}/releases/${releaseId}?relay=1`, sealed);
    expect(uploaded.status, await uploaded.clone().text()).toBe(201);
    const kept = await fs.stat(keptFile(a, sealed.sha256));
    expect(kept.mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.join(a.home, 'relay'))).mode & 0o777).toBe(0o700);
    expect(kept.size).toBe(sealed.bytes);

    const open = session(sealed.sha256, sealed.bytes, await freePort());
    const opened = await json(a, 'POST', `/apps/${APP}/relay`, open);
    const openedBody = await opened.json() as Record<string, unknown>;
    expect(opened.status, JSON.stringify(openedBody)).toBe(201);
    expect(openedBody).toEqual({ identity: open.identity, address: LOCAL, port: open.port, expiresAt: expect.any(String) as string });
    expect(Date.parse(openedBody.expiresAt as string)).toBeGreaterThan(Date.now());

    const fetched = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch?env=production`, fetchBody(open, 'full'));
    const stored = await fetched.json() as Record<string, unknown>;
    expect(fetched.status, JSON.stringify(stored)).toBe(201);
    expect(stored).toEqual({ releaseId, bytes: sealed.bytes, dir: path.join(b.home, 'releases', APP, releaseId) });
    expect(await contentDigestOfStoredRelease(stored.dir as string)).toBe(release.manifest.contentDigest);
    // B keeps the very tarball A kept: the same bytes a promotion would fetch.
    const artifact = await api(b, `/apps/${APP}/releases/${releaseId}/artifact`);
    expect(createHash('sha256').update(Buffer.from(await artifact.arrayBuffer())).digest('hex')).toBe(sealed.sha256);
    expect(JSON.parse(await fs.readFile(path.join(stored.dir as string, 'DEPLOYMENT_INFO.json'), 'utf8'))).toMatchObject({ deployedBy: 'dev@test', env: 'production' });

    // One fetch asked for, one served: the session ended itself.
    await waitFor(async () => !await exists(keptFile(a, sealed.sha256)), { description: 'the kept upload to be removed once its one fetch was served' });
    const again = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full'));
    expect(again.status).toBe(409);
    // The listener is gone too: a fetch of another release from it finds no one there.
    const nobody = await json(b, 'POST', `/apps/${APP}/releases/${base.manifest.releaseId.replace(/.$/, (c) => (c === '0' ? '1' : '0'))}/fetch`, fetchBody(open, 'full'));
    const nobodyBody = await nobody.json() as { error: string; hint: string };
    expect(nobody.status).toBe(502);
    expect(nobodyBody.error).toBe('relay_unreachable');
    expect(nobodyBody.hint).toMatch(/reachable from this host/);
    // Gone: DELETE is still 204.
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
  }, 120_000);

  it('delta: the bundle kept on A, fetched by two peers\' worth of GETs; B assembles the release a full upload makes', async () => {
    const release = await pack(tree('v3-delta'));
    const releaseId = release.manifest.releaseId;
    const askB = await json(b, 'POST', `/apps/${APP}/files/missing`, { sha256: contentHashes(release.prep.files) });
    const missing = (await askB.json() as { missing: string[] }).missing;
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.length).toBeLessThan(release.prep.files.length);
    const bundle = await release.prep.bundle(release.manifest, new Set(missing));
    const uploaded = await put(a, `/apps/${APP}/releases/${releaseId}/delta?relay=1`, bundle);
    expect(uploaded.status, await uploaded.clone().text()).toBe(201);
    expect((await fs.stat(keptFile(a, bundle.sha256))).size).toBe(bundle.bytes);

    const open = session(bundle.sha256, bundle.bytes, await freePort(), { fetches: 2 });
    expect((await json(a, 'POST', `/apps/${APP}/relay`, open)).status).toBe(201);
    const fetched = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'delta'));
    const stored = await fetched.json() as { releaseId: string; bytes: number; dir: string; delta: { received: number; linked: number; copied: number } };
    expect(fetched.status, JSON.stringify(stored)).toBe(201);
    expect(stored).toMatchObject({ releaseId, bytes: bundle.bytes, delta: { received: missing.length } });
    expect(stored.delta.linked).toBeGreaterThan(0);
    expect(await contentDigestOfStoredRelease(stored.dir)).toBe(release.manifest.contentDigest);
    expect(await contentDigestOfStoredRelease(path.join(a.home, 'releases', APP, releaseId))).toBe(release.manifest.contentDigest);

    // One of two fetches served: still open and still kept, until DELETE (idempotent).
    expect(await exists(keptFile(a, bundle.sha256))).toBe(true);
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
    expect(await exists(keptFile(a, bundle.sha256))).toBe(false);
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
  }, 120_000);

  it('a wrong key, or another identity, fails the handshake: relay_refused, nothing stored on B, the session still serves the right key', async () => {
    const release = await pack(tree('v4-refused'));
    const sealed = await release.prep.seal(release.manifest);
    const releaseId = release.manifest.releaseId;
    expect((await put(a, `/apps/${APP}/releases/${releaseId}?relay=1`, sealed)).status).toBe(201);
    const open = session(sealed.sha256, sealed.bytes, await freePort());
    expect((await json(a, 'POST', `/apps/${APP}/relay`, open)).status).toBe(201);

    const wrongKey = randomBytes(32).toString('hex');
    keys.push(wrongKey);
    for (const overrides of [{ key: wrongKey }, { identity: `${open.identity}-x` }]) {
      const refused = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full', overrides));
      const body = await refused.json() as { error: string; message: string; hint: string };
      expect(refused.status, JSON.stringify(body)).toBe(502);
      expect(body.error).toBe('relay_refused');
      expect(body.hint).toMatch(/expired or its key/);
      for (const key of [open.key, wrongKey]) expect(JSON.stringify(body)).not.toContain(key);
      await expectNotOn(b, releaseId);
    }
    // A sha256 the session does not serve: NO, refused.
    const other = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full', { sha256: 'f'.repeat(64) }));
    expect(other.status).toBe(502);
    expect((await other.json() as { message: string }).message).toMatch(/not served in this session/);
    await expectNotOn(b, releaseId);

    // None of those counted: the right key still gets the release.
    const fetched = await json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full'));
    expect(fetched.status, await fetched.clone().text()).toBe(201);
    await waitFor(async () => !await exists(keptFile(a, sealed.sha256)), { description: 'the kept upload to be removed after the one fetch' });
  }, 120_000);

  it('refuses a session it cannot serve: no kept upload, a wildcard or foreign address, a busy port, an identity in use', async () => {
    const release = await pack(tree('v5-sessions'));
    const sealed = await release.prep.seal(release.manifest);
    const open = session(sealed.sha256, sealed.bytes, await freePort());
    const refusal = async (body: RelaySessionRequest) => {
      const answer = await json(a, 'POST', `/apps/${APP}/relay`, body);
      return { status: answer.status, ...(await answer.json() as { error: string; message: string; hint: string }) };
    };
    expect(await refusal(open)).toMatchObject({ status: 404, error: 'relay_artifact_missing', hint: expect.stringMatching(/relay=1/) as string });

    // An upload of a release the host already has keeps nothing.
    const again = await put(a, `/apps/${APP}/releases/${base.manifest.releaseId}?relay=1`, await base.prep.seal(base.manifest));
    expect(again.status).toBe(409);
    expect(await fs.readdir(path.join(a.home, 'relay')).catch(() => [])).toEqual([]);

    expect((await put(a, `/apps/${APP}/releases/${release.manifest.releaseId}?relay=1`, sealed)).status).toBe(201);
    for (const address of ['0.0.0.0', '::', '192.0.2.7', 'localhost']) {
      expect(await refusal({ ...open, address })).toMatchObject({ status: 400, error: 'relay_address_invalid' });
    }
    expect(await refusal({ ...open, bytes: sealed.bytes + 1 })).toMatchObject({ status: 404, error: 'relay_artifact_missing' });
    expect(await refusal({ ...open, port: a.agentPort })).toMatchObject({ status: 409, error: 'relay_port_busy', hint: expect.stringMatching(/rollout\.relay\.port/) as string });
    // Schema: a short key, a bad identity, too many fetches.
    for (const bad of [{ key: 'ab' }, { identity: 'UPPER-case' }, { fetches: 65 }, { ttlMs: 999 }]) {
      const answer = await json(a, 'POST', `/apps/${APP}/relay`, { ...open, ...bad });
      expect(answer.status).toBe(400);
    }
    expect((await json(a, 'POST', `/apps/${APP}/relay`, open)).status).toBe(201);
    expect(await refusal({ ...open, port: await freePort() })).toMatchObject({ status: 409, error: 'relay_session_exists' });
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
    expect(await exists(keptFile(a, sealed.sha256))).toBe(false);
  }, 120_000);

  it('at start the agent sweeps kept uploads older than 15 minutes and leaves younger ones', async () => {
    const dir = path.join(a.home, 'relay');
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const [old, young] = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
    for (const name of [old, young]) await fs.writeFile(path.join(dir, name), name, { mode: 0o600 });
    const past = new Date(Date.now() - 16 * 60_000);
    await fs.utimes(path.join(dir, old), past, past);
    await a.restartAgent();
    expect(await fs.readdir(dir)).toEqual([young]);
    await fs.rm(path.join(dir, young));
  }, 120_000);

  /** A PUT whose body the test sends in parts: `send` more, then `end` it or `cut` the connection. */
  function streamingPut(stack: Stack, pathname: string, body: { bytes: number; sha256: string }) {
    const request = http.request({
      host: '127.0.0.1', port: stack.agentPort, path: pathname, method: 'PUT',
      headers: {
        authorization: `Bearer ${tokens.get(stack)!}`, 'x-slipway-actor': 'dev@test', 'content-type': 'application/gzip',
        'x-slipway-sha256': body.sha256, 'content-length': String(body.bytes),
      },
    });
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      request.on('response', (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => { text += chunk; });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
        response.on('error', reject);
      });
      request.on('error', reject);
    });
    // A cut PUT rejects; the test looks at the agent's side instead.
    answer.catch(() => undefined);
    return {
      answer,
      send: (chunk: Buffer) => new Promise<void>((resolve, reject) => request.write(chunk, (error) => (error ? reject(error) : resolve()))),
      end: (chunk: Buffer) => new Promise<void>((resolve) => request.end(chunk, () => resolve())),
      cut: () => request.destroy(),
    };
  }

  /** How many bytes of `sha256` B's ingest holds in its .part (0 when none). */
  const partBytes = (stack: Stack, sha256: string) => fs.stat(path.join(stack.home, 'incoming', `${sha256}.part`)).then((st) => st.size, () => 0);

  it('pipelined: a session opened before the upload waits for it; B fetches while A still receives, and stores the same release', async () => {
    // Incompressible bytes: the tarball streams in many chunks.
    const release = await pack({ ...tree('v6-pipe'), 'noise.bin': randomBytes(3 * 1024 * 1024) });
    const sealed = await release.prep.seal(release.manifest);
    const releaseId = release.manifest.releaseId;
    const bytes = await fs.readFile(sealed.file);
    const half = Math.floor(bytes.length / 2);

    // Opened first, as the controller does: it waits for the upload to start arriving.
    const open = session(sealed.sha256, sealed.bytes, await freePort(), { waitMs: 20_000 });
    const opening = json(a, 'POST', `/apps/${APP}/relay`, open);
    const upload = streamingPut(a, `/apps/${APP}/releases/${releaseId}?relay=1`, sealed);
    await upload.send(bytes.subarray(0, half));
    const opened = await opening;
    expect(opened.status, await opened.clone().text()).toBe(201);

    const fetching = json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full'));
    // B receives bytes while A has only half of the upload.
    await waitFor(async () => await partBytes(b, sealed.sha256) > 0, { timeoutMs: 30_000, description: 'B to receive the first bytes while A is still receiving' });
    expect(await exists(path.join(a.home, 'releases', APP, releaseId))).toBe(false);

    await upload.end(bytes.subarray(half));
    const uploaded = await upload.answer;
    expect(uploaded.status, uploaded.text).toBe(201);
    const fetched = await fetching;
    const stored = await fetched.json() as Record<string, unknown>;
    expect(fetched.status, JSON.stringify(stored)).toBe(201);
    expect(stored).toEqual({ releaseId, bytes: sealed.bytes, dir: path.join(b.home, 'releases', APP, releaseId) });
    expect(await contentDigestOfStoredRelease(stored.dir as string)).toBe(release.manifest.contentDigest);
    expect(await contentDigestOfStoredRelease(path.join(a.home, 'releases', APP, releaseId))).toBe(release.manifest.contentDigest);
    const artifact = await api(b, `/apps/${APP}/releases/${releaseId}/artifact`);
    expect(createHash('sha256').update(Buffer.from(await artifact.arrayBuffer())).digest('hex')).toBe(sealed.sha256);

    // Its one fetch was served before A's ingest kept the bytes: removed once it did.
    await waitFor(async () => !await exists(keptFile(a, sealed.sha256)), { description: 'the bytes kept after the session ended to be removed' });
    expect(await fs.readdir(path.join(a.home, 'incoming'))).toEqual([]);
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
  }, 120_000);

  it('pipelined: an upload cut off in the middle cuts B\'s fetch (relay_unreachable); nothing is stored on B or kept on A', async () => {
    const release = await pack({ ...tree('v7-cut'), 'noise.bin': randomBytes(3 * 1024 * 1024) });
    const sealed = await release.prep.seal(release.manifest);
    const releaseId = release.manifest.releaseId;
    const bytes = await fs.readFile(sealed.file);

    const upload = streamingPut(a, `/apps/${APP}/releases/${releaseId}?relay=1`, sealed);
    await upload.send(bytes.subarray(0, Math.floor(bytes.length / 2)));
    const open = session(sealed.sha256, sealed.bytes, await freePort(), { waitMs: 20_000 });
    const opened = await json(a, 'POST', `/apps/${APP}/relay`, open);
    expect(opened.status, await opened.clone().text()).toBe(201);
    const fetching = json(b, 'POST', `/apps/${APP}/releases/${releaseId}/fetch`, fetchBody(open, 'full'));
    await waitFor(async () => await partBytes(b, sealed.sha256) > 0, { timeoutMs: 30_000, description: 'B to receive the first bytes while A is still receiving' });

    upload.cut();
    const fetched = await fetching;
    const answer = await fetched.json() as { error: string; hint: string };
    expect(fetched.status, JSON.stringify(answer)).toBe(502);
    expect(answer.error).toBe('relay_unreachable');
    await expectNotOn(b, releaseId);
    await waitFor(async () => (await fs.readdir(path.join(a.home, 'incoming'))).length === 0, { description: 'A to remove its cut upload' });
    expect(await exists(path.join(a.home, 'releases', APP, releaseId))).toBe(false);
    expect(await exists(keptFile(a, sealed.sha256))).toBe(false);

    // With nothing arriving any more, a session for those bytes is refused at once.
    const late = await json(a, 'POST', `/apps/${APP}/relay`, session(sealed.sha256, sealed.bytes, await freePort()));
    expect(late.status).toBe(404);
    expect((await late.json() as { error: string }).error).toBe('relay_artifact_missing');
    expect((await api(a, `/apps/${APP}/relay/${open.identity}`, { method: 'DELETE' })).status).toBe(204);
  }, 120_000);

  it('the keys were never written down: not in either agent\'s log, not in their audit tables', async () => {
    expect(keys.length).toBeGreaterThan(4);
    for (const stack of [a, b]) {
      const log = stack.agent.log();
      expect(log).toMatch(/relay/);
      const db = openDatabase(path.join(stack.home, 'agent.db'));
      let audit: string;
      try {
        audit = JSON.stringify(new StateStore(db).auditRows(1000));
      } finally {
        db.close();
      }
      // The requests that carried a key are there, the key field replaced.
      expect(audit).toMatch(/relay|fetch/);
      expect(audit).toContain('[REDACTED]');
      for (const key of keys) {
        expect(log.includes(key), `key in ${stack.agent.logPath}`).toBe(false);
        expect(audit.includes(key), 'key in the audit table').toBe(false);
      }
    }
  });
});
