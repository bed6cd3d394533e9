/**
 * RELIABILITY cases 1–9 end to end: hostile release archives, built byte by byte, PUT to the
 * running agent (over its loopback port, and once through the controller's SSH tunnel) while an
 * earlier release serves traffic through nginx. Each refusal must leave the box as it was: no
 * file outside the release store changed (a canary dir sits where `..` entries point), not even
 * a temp dir in the store, disk usage back to its start, the live slot answering through nginx
 * with the same generation, and the state database without a trace of the release.
 */
import { promises as fs, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../controller/agent-client.js';
import { connectSsh } from '../../controller/ssh.js';
import { SlipwayError } from '../../contract/errors.js';
import { entryBlocks, gzip, gzipBomb, gzipBombExpandedBytes, header, tarball, type CraftEntry } from '../helpers/crafted-tar.js';
import { APP, SAMPLE_APP_DIR, startStack, type Stack } from '../helpers/stack.js';
import {
  agentRequest, agentToken, duBytes, ingestLeftovers, liveView, newReleaseId, putRelease, sampleReleaseEntries,
  sha256Hex, snapshotTree, stateFingerprint, watchDir, type ApiAnswer,
} from '../helpers/box.js';
import { sealRelease } from '../helpers/release-content.js';
import { releaseOfCommit } from '../helpers/state.js';

const MiB = 1024 * 1024;
// Small caps so that limit cases are cheap; unpacked below release so a plain tar can hit it.
const LIMITS = { maxReleaseBytes: 16 * MiB, maxUnpackedBytes: 8 * MiB, maxEntries: 300 };
/** From `home/releases/sample/.tmp-x/` up to the stack dir, where the canary dir is. */
const UP_TO_STACK = '../../../..';

describe('hostile release archives through the running agent (RELIABILITY 1–9)', () => {
  let stack: Stack;
  let liveSha: string;
  let canary: string;
  let serverJs: string;

  beforeAll(async () => {
    stack = await startStack({ agentConfig: { limits: LIMITS } });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    liveSha = releaseOfCommit(stack.home, APP, await stack.repo.head());
    canary = path.join(stack.dir, 'canary');
    await fs.mkdir(canary);
    await fs.writeFile(path.join(canary, 'file'), 'canary\n');
    serverJs = await fs.readFile(path.join(SAMPLE_APP_DIR, 'server.js'), 'utf8');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const good = (releaseId: string): CraftEntry[] => sampleReleaseEntries(APP, releaseId, serverJs);

  interface Expected { status: number; code: string; message?: RegExp; unpacks?: boolean; releaseExists?: boolean }

  /**
   * Sends `upload` (a PUT through the API by default) and proves the box is unchanged: every file
   * of the stack dir but the agent's log and database, the nginx include dir and the live release
   * byte for byte; no inotify event in the canary dir, nor (unless the archive got as far as
   * unpacking) in the app's release dir; du of home; leftovers; state; what nginx serves.
   */
  async function expectRefused(
    releaseId: string, expected: Expected, upload: () => Promise<ApiAnswer>,
  ): Promise<ApiAnswer> {
    const outside = (rel: string) => rel === 'agent.log' || /^home\/agent\.db/.test(rel);
    const before = {
      tree: await snapshotTree(stack.dir, { exclude: outside }),
      nginx: await snapshotTree(stack.nginx.includeDir, { hash: true }),
      live: await snapshotTree(path.join(stack.home, 'releases', APP, liveSha), { hash: true }),
      du: await duBytes(stack.home, ['agent.db*']),
      state: stateFingerprint(stack),
      view: await liveView(stack),
      passwd: sha256Hex(await fs.readFile('/etc/passwd')),
    };
    expect(before.view).toMatchObject({ status: 200, release: liveSha });
    const canaryWatch = watchDir(canary);
    const appWatch = watchDir(path.join(stack.home, 'releases', APP));
    try {
      const answer = await upload();
      expect({ status: answer.status, code: answer.json?.error }, answer.text).toEqual({ status: expected.status, code: expected.code });
      if (expected.message) expect(answer.json?.message).toMatch(expected.message);
      expect(answer.json?.hint, 'every refusal says what to do next').toBeTruthy();
      expect(await canaryWatch.settle(), 'nothing may appear where ../ points, even briefly').toEqual([]);
      const appEvents = await appWatch.settle();
      if (!expected.unpacks) expect(appEvents, 'refused before anything was written into the release store').toEqual([]);
      expect(await ingestLeftovers(stack.home)).toEqual([]);
      expect(await snapshotTree(stack.dir, { exclude: outside })).toEqual(before.tree);
      expect(await snapshotTree(stack.nginx.includeDir, { hash: true })).toEqual(before.nginx);
      expect(await snapshotTree(path.join(stack.home, 'releases', APP, liveSha), { hash: true })).toEqual(before.live);
      expect(await duBytes(stack.home, ['agent.db*']), 'disk usage back to where it was').toBe(before.du);
      expect(stateFingerprint(stack)).toEqual(before.state);
      expect(await liveView(stack), 'the live slot answers through nginx, same release, same generation').toEqual(before.view);
      expect(sha256Hex(await fs.readFile('/etc/passwd'))).toBe(before.passwd);
      const lookup = await agentRequest(stack, 'GET', `/apps/${APP}/releases/${releaseId}`);
      expect(lookup.status).toBe(expected.releaseExists ? 200 : 404);
      return answer;
    } finally {
      canaryWatch.close();
      appWatch.close();
    }
  }

  const refuse = (entries: (id: string) => CraftEntry[], expected: Expected, encode: (tar: Buffer) => Buffer = gzip) => {
    const releaseId = newReleaseId();
    const archive = encode(tarball(entries(releaseId)));
    return expectRefused(releaseId, expected, () => putRelease(stack, releaseId, archive));
  };

  it.each([
    ['../../etc/cron.d/x'],
    [`${UP_TO_STACK}/canary/cron`],
    ['ok/../../../x'],
  ])('case 1: entry %s -> 400, nothing written outside, live slot untouched', async (entryPath) => {
    const answer = await refuse((id) => [...good(id), { path: entryPath, body: '* * * * * root sh -c "id > /tmp/pwned"\n' }],
      { status: 400, code: 'bad_tarball', message: /'\.\.' segment/ });
    expect(answer.json?.message).toContain(JSON.stringify(entryPath));
    expect(existsSync('/etc/cron.d/x')).toBe(false);
    expect(existsSync(path.join(stack.home, 'releases', 'etc'))).toBe(false);
  });

  it('case 1 through the controller\'s SSH tunnel: the same refusal reaches the CLI side intact', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball([{ path: `${UP_TO_STACK}/canary/first`, body: 'x' }, ...good(releaseId)]));
    const file = path.join(stack.dir, 'tunnel-upload.tar.gz');
    await fs.writeFile(file, archive);
    const ssh = await connectSsh({
      host: stack.sshd.host, port: stack.sshd.port, username: stack.sshd.user,
      privateKeyPath: stack.sshd.clientKeyPath, knownHostsPath: stack.sshd.knownHostsPath, agentSocket: '',
    });
    try {
      const client = new AgentClient(() => ssh.forwardOut('127.0.0.1', stack.agentPort), agentToken(stack), 'tester@reliability');
      await expectRefused(releaseId, { status: 400, code: 'bad_tarball', message: /canary\/first/ }, async () => {
        try {
          await client.upload(`/apps/${APP}/releases/${releaseId}`, file, archive.length, sha256Hex(archive), () => undefined);
        } catch (error) {
          if (!(error instanceof SlipwayError)) throw error;
          return { status: error.status, headers: {}, text: error.message, json: { error: error.code, message: error.message, hint: error.hint } };
        }
        throw new Error('the upload was accepted');
      });
    } finally {
      await ssh.close();
      await fs.rm(file);
    }
  });

  it.each([
    ['/etc/passwd'],
    ['////tmp/slipway-reliability-never-written'],
  ])('case 2: absolute entry %s -> 400, not silently made relative', async (entryPath) => {
    const answer = await refuse((id) => [...good(id), { path: entryPath, body: 'root::0:0::/:/bin/sh\n' }],
      { status: 400, code: 'bad_tarball', message: /absolute/ });
    expect(answer.json?.message).toContain(JSON.stringify(entryPath));
    expect(existsSync('/tmp/slipway-reliability-never-written')).toBe(false);
  });

  it.each([
    ['a -> /etc, then a/passwd', [{ path: 'a', type: 'symlink', linkpath: '/etc' }, { path: 'a/passwd', body: 'x' }], /absolute/],
    ['a -> ../../../../canary, then a/x', [{ path: 'a', type: 'symlink', linkpath: `${UP_TO_STACK}/canary` }, { path: 'a/x', body: 'x' }], /outside the release/],
    ['sub/, a -> sub, then a/x written through it', [{ path: 'sub/', type: 'dir' }, { path: 'a', type: 'symlink', linkpath: 'sub' }, { path: 'a/x', body: 'x' }], /passes through symlink/],
    ['manifest.json -> the agent token file', [{ path: 'secret', type: 'symlink', linkpath: `${UP_TO_STACK}/agent.token` }], /outside the release/],
  ] as Array<[string, CraftEntry[], RegExp]>)('case 3: %s -> 400', async (_label, hostile, message) => {
    await refuse((id) => [...good(id), ...hostile], { status: 400, code: 'bad_tarball', message });
  });

  it.each([
    ['/etc/passwd'],
    [`${UP_TO_STACK}/canary/file`],
    ['server.js'],
  ])('case 4: hardlink to %s -> 400; the target keeps its link count', async (target) => {
    const passwdLinks = (await fs.stat('/etc/passwd')).nlink;
    const canaryLinks = (await fs.stat(path.join(canary, 'file'))).nlink;
    await refuse((id) => [...good(id), { path: 'link', type: 'hardlink', linkpath: target }],
      { status: 400, code: 'bad_tarball', message: /hardlinks are not allowed/ });
    expect((await fs.stat('/etc/passwd')).nlink).toBe(passwdLinks);
    expect((await fs.stat(path.join(canary, 'file'))).nlink).toBe(canaryLinks);
  });

  it('case 5: a ~1 MB gzip declaring a 1 GiB file -> 413 at its header; disk usage back to its start', async () => {
    const releaseId = newReleaseId();
    const head = tarball([...good(releaseId), { path: 'bomb.bin', size: 1024 * MiB }], { endMarker: false });
    const bomb = gzipBomb(head, 1024 * MiB);
    expect(bomb.length).toBeLessThan(1.5 * MiB);
    expect(gzipBombExpandedBytes(head, 1024 * MiB)).toBeGreaterThan(1024 * MiB);
    const started = Date.now();
    const answer = await expectRefused(releaseId, { status: 413, code: 'release_limit_exceeded', message: /limits\.maxUnpackedBytes/ },
      () => putRelease(stack, releaseId, bomb));
    expect(answer.json?.hint).toMatch(/raise limits\.maxUnpackedBytes/);
    expect(Date.now() - started, 'refused long before 1 GiB is inflated').toBeLessThan(15_000);
  });

  it('case 5: a gzip bomb hidden after the end-of-archive marker -> 400 early; disk usage back to its start', async () => {
    const releaseId = newReleaseId();
    const bomb = gzipBomb(tarball(good(releaseId)), 1024 * MiB);
    const answer = await expectRefused(releaseId, { status: 400, code: 'bad_tarball', message: /gzip bomb/ },
      () => putRelease(stack, releaseId, bomb));
    expect(Number(/over (\d+) bytes of tar stream/.exec(String(answer.json?.message))?.[1])).toBeLessThan(4 * MiB);
  });

  it('case 6: too many entries -> 413 naming limits.maxEntries and how to raise it', async () => {
    const answer = await refuse((id) => [...good(id), ...Array.from({ length: LIMITS.maxEntries }, (_, i): CraftEntry => ({ path: `f/${i}.js`, body: `${i}` }))],
      { status: 413, code: 'release_limit_exceeded', message: /limits\.maxEntries/ });
    expect(answer.json?.hint).toMatch(/raise limits\.maxEntries in the agent config/);
  });

  it('case 6: a plain (uncompressed) tar over the unpacked cap -> 413 naming limits.maxUnpackedBytes', async () => {
    const answer = await refuse((id) => [...good(id), { path: 'big.bin', body: Buffer.alloc(LIMITS.maxUnpackedBytes + 1, 7) }],
      { status: 413, code: 'release_limit_exceeded', message: /limits\.maxUnpackedBytes/ }, (plain) => plain);
    expect(answer.json?.hint).toMatch(/raise limits\.maxUnpackedBytes/);
  });

  it('case 6: an upload over limits.maxReleaseBytes -> 413 before it is stored', async () => {
    const releaseId = newReleaseId();
    const body = Buffer.alloc(LIMITS.maxReleaseBytes + 1, 1);
    const answer = await expectRefused(releaseId, { status: 413, code: 'release_too_large', message: /limits\.maxReleaseBytes/ },
      () => putRelease(stack, releaseId, body));
    expect(answer.json?.hint).toMatch(/raise limits\.maxReleaseBytes/);
  });

  it('case 7: a gzip cut in half -> 400, temp dir cleaned', async () => {
    const releaseId = newReleaseId();
    const whole = gzip(tarball([...good(releaseId), { path: 'data.bin', body: Buffer.alloc(200_000, 3) }]));
    await expectRefused(releaseId, { status: 400, code: 'bad_tarball', message: /corrupt or truncated/ },
      () => putRelease(stack, releaseId, whole.subarray(0, Math.floor(whole.length / 2))));
  });

  it('case 7: a tar cut at an entry boundary (no end marker, which node-tar accepts) -> 400', async () => {
    await refuse((id) => good(id), { status: 400, code: 'bad_tarball', message: /end-of-archive marker/ },
      (full) => gzip(full.subarray(0, full.length - 1024)));
  });

  it('case 7: a corrupt header checksum after good entries -> 400', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(Buffer.concat([...good(releaseId).map(entryBlocks), header({ path: 'corrupt.js', corruptChecksum: true }), Buffer.alloc(1024)]));
    await expectRefused(releaseId, { status: 400, code: 'bad_tarball', message: /checksum/ }, () => putRelease(stack, releaseId, archive));
  });

  it.each([
    ['fifo', /FIFO/],
    ['char', /CharacterDevice/],
    ['block', /BlockDevice/],
  ] as const)('case 8: a %s entry -> 400', async (type, message) => {
    await refuse((id) => [...good(id), { path: 'dev/thing', type, devmajor: 1, devminor: 3 }], { status: 400, code: 'bad_tarball', message });
  });

  it('case 8: setuid, setgid, sticky and world-writable entries are stored with normalised modes, owned by the agent', async () => {
    const { releaseId, entries } = sealRelease(APP, [
      { path: './', type: 'dir', mode: 0o777 },
      { path: './manifest.json', mode: 0o666 },
      { path: './server.js', body: serverJs, mode: 0o4777, uid: 0, gid: 0 },
      { path: './bin/run', body: '#!/bin/sh\n', mode: 0o2775, uid: 4242, gid: 4242 },
      { path: './public/', type: 'dir', mode: 0o1777 },
      { path: './public/open.txt', body: 'x', mode: 0o666 },
    ]);
    const archive = gzip(tarball(entries));
    const answer = await putRelease(stack, releaseId, archive);
    expect(answer.status, answer.text).toBe(201);
    const dir = path.join(stack.home, 'releases', APP, releaseId);
    const modes: Record<string, string> = {};
    for (const rel of ['.', 'manifest.json', 'server.js', 'bin', 'bin/run', 'public', 'public/open.txt']) {
      const st = await fs.lstat(path.join(dir, rel));
      modes[rel] = (st.mode & 0o7777).toString(8);
      expect(st.mode & 0o7022, `${rel} has no setuid/setgid/sticky or group/world write bit`).toBe(0);
      expect(st.uid, `${rel} is owned by the agent, not by the archive's uid`).toBe(process.getuid!());
    }
    expect(modes).toEqual({
      // Read-only once stored (least privilege): the app cannot write into its own release.
      '.': '555', 'manifest.json': '444', 'server.js': '555', bin: '555', 'bin/run': '555', public: '555', 'public/open.txt': '444',
    });
    expect(stateFingerprint(stack).releases).toContain(`${releaseId} ready`);
    expect(await ingestLeftovers(stack.home)).toEqual([]);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: liveSha });
  });

  it('case 9: a declared sha256 that does not match the bytes -> 400 before anything is published', async () => {
    const releaseId = newReleaseId();
    const archive = gzip(tarball(good(releaseId)));
    const declared = sha256Hex('something else');
    const answer = await expectRefused(releaseId, { status: 400, code: 'checksum_mismatch', message: /does not match/ },
      () => putRelease(stack, releaseId, archive, { sha256: declared }));
    expect(answer.json?.details).toEqual(expect.arrayContaining([`expected: ${declared}`, `actual: ${sha256Hex(archive)}`]));
  });

  it('addition: a different tarball under the live release id -> 409, the live release not read over', async () => {
    const archive = gzip(tarball([...good(liveSha), { path: 'server.js', body: 'require("child_process").execSync("id > /tmp/pwned")\n' }]));
    await expectRefused(liveSha, { status: 409, code: 'release_exists', releaseExists: true }, () => putRelease(stack, liveSha, archive));
  });

  it('addition: a manifest naming another app -> 400 after unpacking, the temp dir removed', async () => {
    const releaseId = newReleaseId();
    const entries = good(releaseId);
    entries[1] = { path: './manifest.json', body: JSON.stringify({ ...JSON.parse(String(entries[1]!.body)), app: 'other' }) };
    await expectRefused(releaseId, { status: 400, code: 'manifest_mismatch', unpacks: true }, () => putRelease(stack, releaseId, gzip(tarball(entries))));
  });

  it('addition: files other than the ones the manifest names (content digest) -> 400 after unpacking, nothing published', async () => {
    const { releaseId, entries } = sealRelease(APP, good(newReleaseId()));
    // Packed and sealed, then one file swapped: the tarball's own sha256 is still right.
    const swapped = entries.map((e) => (e.path === './server.js' ? { ...e, body: `${serverJs}\n// changed after packing\n` } : e));
    const answer = await expectRefused(releaseId, { status: 400, code: 'release_digest_mismatch', message: /do not match the manifest's content digest/, unpacks: true },
      () => putRelease(stack, releaseId, gzip(tarball(swapped))));
    expect(answer.json?.hint).toMatch(/deploy push/);
  });

  it('addition: an upload under a commit-SHA id (no content in it) -> 400 before anything is stored', async () => {
    const commitOnly = 'e'.repeat(40);
    await expectRefused(commitOnly, { status: 400, code: 'invalid_release_id', message: /names no content/ },
      () => putRelease(stack, commitOnly, gzip(tarball(good(newReleaseId())))));
  });

  it('addition: an upload with a wrong token -> 401, and not a byte of it is stored', async () => {
    const releaseId = newReleaseId();
    await expectRefused(releaseId, { status: 401, code: 'unauthorized' },
      () => putRelease(stack, releaseId, gzip(tarball(good(releaseId))), { token: 'x'.repeat(43) }));
  });
});
