/**
 * A release is its files, not only its commit (issue 11, "Releases whose files differ from the
 * commit"), end to end through the CLI against real sshd, nginx, PM2 and SQLite. The sample app's
 * message.txt and a node-gyp-like `native/` build dir are build output shipped through `include`,
 * not committed; native/ holds a hardlink, as node-gyp's build output does.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { readState } from '../helpers/state.js';

const ADDON = Buffer.from('\u007fELF stand-in for a compiled addon\n');

describe('release identity: a release covers its files (real sshd, nginx, PM2, SQLite)', () => {
  let stack: Stack;
  let commit: string;
  let firstRelease: string;
  let secondRelease: string;

  /** The build output as a build would leave it: message.txt, and native/ with a hardlinked addon. */
  async function build(message: string): Promise<void> {
    await fs.writeFile(path.join(stack.repo.dir, 'message.txt'), `${message}\n`);
    const release = path.join(stack.repo.dir, 'native', 'build', 'Release');
    await fs.rm(path.join(stack.repo.dir, 'native'), { recursive: true, force: true });
    await fs.mkdir(path.join(release, 'obj.target'), { recursive: true });
    await fs.writeFile(path.join(release, 'obj.target', 'addon.node'), ADDON, { mode: 0o755 });
    // node-gyp links its final output to the object dir's copy.
    await fs.link(path.join(release, 'obj.target', 'addon.node'), path.join(release, 'addon.node'));
  }

  async function pushJson(): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; output: string }> {
    const result = await stack.deploy(['--json', 'push']);
    const lines = result.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    return { code: result.code, lines, output: result.stdout + result.stderr };
  }

  const served = async (): Promise<{ release: string; message: string }> => JSON.parse((await stack.get('/')).body);
  const releasesOfCommit = () => readState(stack.home, APP).releases.filter((r) => r.manifest.sha === commit);

  beforeAll(async () => {
    stack = await startStack();
    const config = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as Record<string, unknown>;
    commit = await stack.repo.commit({
      'message.txt': null,
      '.gitignore': 'message.txt\nnative/\n',
      'deploy.config.json': JSON.stringify({ ...config, include: ['message.txt', 'native'] }, null, 2),
    }, 'build output ships through include');
    await build('first build');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('packs hardlinked build output as regular files, which the box accepts', async () => {
    const linked = await fs.stat(path.join(stack.repo.dir, 'native/build/Release/addon.node'));
    expect(linked.nlink, 'the work tree really holds a hardlink').toBe(2);
    const pushed = await pushJson();
    expect(pushed.code, pushed.output).toBe(0);
    expect(await served()).toMatchObject({ message: 'first build' });
    firstRelease = (await served()).release;
    expect(firstRelease.startsWith(`${commit.slice(0, 12)}-`), firstRelease).toBe(true);
    const dir = path.join(stack.home, 'releases', APP, firstRelease, 'native/build/Release');
    for (const file of ['addon.node', 'obj.target/addon.node']) {
      const st = await fs.lstat(path.join(dir, file));
      expect(st.isFile(), file).toBe(true);
      expect(st.nlink, `${file} is a file of its own on the box`).toBe(1);
      expect(st.mode & 0o777, file).toBe(0o555);
      expect(await fs.readFile(path.join(dir, file)), file).toEqual(ADDON);
    }
  });

  it('a fixed build of the same commit is a new release: uploaded, served, listed beside the first', async () => {
    await build('second build');
    const pushed = await pushJson();
    expect(pushed.code, pushed.output).toBe(0);
    expect(pushed.lines.some((l) => typeof l.message === 'string' && l.message.includes('nothing uploaded')), pushed.output).toBe(false);
    expect(pushed.lines.at(-1)).toMatchObject({ type: 'result', outcome: 'succeeded', uploadedBytes: expect.any(Number) });
    expect(pushed.lines.at(-1)?.uploadedBytes).toBeGreaterThan(0);
    const now = await served();
    expect(now.message).toBe('second build');
    secondRelease = now.release;
    expect(secondRelease).not.toBe(firstRelease);
    expect(secondRelease.startsWith(`${commit.slice(0, 12)}-`), secondRelease).toBe(true);

    expect(releasesOfCommit().map((r) => r.releaseId).sort()).toEqual([firstRelease, secondRelease].sort());
    const listed = await stack.deploy(['--json', 'releases']);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = JSON.parse(listed.stdout) as Array<{ releaseId: string; sha: string }>;
    expect(rows.filter((r) => r.sha === commit).map((r) => r.releaseId).sort()).toEqual([firstRelease, secondRelease].sort());
    const table = await stack.deploy(['releases']);
    expect(table.stdout).toContain(firstRelease);
    expect(table.stdout).toContain(secondRelease);
    const history = await stack.deploy(['history']);
    expect(history.stdout).toContain(firstRelease);
    expect(history.stdout).toContain(secondRelease);
  });

  it('only identical files are the same release: nothing to do, or nothing uploaded', async () => {
    const again = await pushJson();
    expect(again.code, again.output).toBe(0);
    expect(again.lines.at(-1)).toMatchObject({ outcome: 'unchanged' });

    await build('first build');
    const back = await pushJson();
    expect(back.code, back.output).toBe(0);
    expect(back.lines.find((l) => typeof l.message === 'string' && l.message.includes('nothing uploaded')), back.output).toBeTruthy();
    expect(back.lines.some((l) => l.type === 'progress')).toBe(false);
    expect(back.lines.at(-1)).toMatchObject({ type: 'result', outcome: 'succeeded', uploadedBytes: 0 });
    expect(await served()).toEqual(expect.objectContaining({ release: firstRelease, message: 'first build' }));
    expect(releasesOfCommit()).toHaveLength(2);
  });
});
