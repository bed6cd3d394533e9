/**
 * RELIABILITY case 14 end to end: the agent's home (SLIPWAY_HOME, with its database and
 * releases) on a small tmpfs, and the disk filling up while a `deploy push` is in flight: during
 * the upload (another process takes the space), during the unpack (the release is bigger than
 * the disk), and before the upload (the agent sees it will not fit). Each time: ENOSPC reported
 * as such, nothing partial left, earlier releases byte-identical, the live slot answering, the
 * database consistent, and the next push succeeding once there is room.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { waitFor, withDeadline } from '../helpers/wait.js';
import { ingestLeftovers, liveView, seededBytes, snapshotTree, stateFingerprint, watchDir } from '../helpers/box.js';
import { startWebhook, type Webhook } from '../helpers/webhook.js';
import { diskFullPattern } from '../helpers/backup-host.js';
import { releaseOfCommit } from '../helpers/state.js';

const MiB = 1024 * 1024;
const DISK = '160m';

describe('disk full with SLIPWAY_HOME on a 160 MB tmpfs (RELIABILITY 14)', () => {
  let mountPoint: string;
  let mounted = false;
  let stack: Stack;
  let filler: string;
  let webhook: Webhook;
  let backupSource: string;

  beforeAll(async () => {
    mountPoint = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-smalldisk-'));
    const mount = await runCommand(['mount', '-t', 'tmpfs', '-o', `size=${DISK},mode=0700`, 'tmpfs', mountPoint], { timeoutMs: 10_000 });
    // This suite is about a real full disk: on a box where tmpfs cannot be mounted it must fail, not skip.
    expect(mount.exitCode, `mount tmpfs: ${mount.stderr}`).toBe(0);
    mounted = true;
    filler = path.join(mountPoint, 'filler');
    // A backup job whose 8 MB dump lands on the small disk too (backups.dir defaults to <home>/backups).
    backupSource = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-source-'));
    await fs.writeFile(path.join(backupSource, 'data.bin'), seededBytes('backup-source', 8 * MiB));
    webhook = await startWebhook();
    stack = await startStack({
      homeDir: path.join(mountPoint, 'home'),
      agentConfig: {
        limits: { maxReleaseBytes: 64 * MiB, maxUnpackedBytes: 512 * MiB, maxEntries: 1000 },
        backups: {
          notifyWebhook: webhook.url,
          // Run by hand here; the schedule is one that will not fire during the suite.
          jobs: { files: { app: APP, schedule: '0 0 1 1 *', kind: 'command', command: ['cat', path.join(backupSource, 'data.bin')] } },
        },
      },
    });
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
  });
  afterAll(async () => {
    await stack?.stop();
    await webhook?.close();
    if (backupSource) await fs.rm(backupSource, { recursive: true, force: true });
    if (mounted) {
      const umount = await runCommand(['umount', mountPoint], { timeoutMs: 10_000 });
      expect(umount.exitCode, umount.stderr).toBe(0);
    }
    if (mountPoint) await fs.rm(mountPoint, { recursive: true, force: true });
  });

  const freeBytes = async () => {
    const st = await fs.statfs(mountPoint);
    return st.bavail * st.bsize;
  };
  /**
   * Takes all but about `leave` bytes of the disk, as a runaway log or another upload would. An
   * upload in flight keeps taking space meanwhile, so a refused size is retried a little smaller.
   */
  const fill = async (leave: number) => {
    let last = '';
    for (let attempt = 0; attempt < 20; attempt++) {
      const size = Math.max(0, (await freeBytes()) + ((await fs.stat(filler).catch(() => null))?.size ?? 0) - leave - attempt * 256 * 1024);
      const result = await runCommand(['fallocate', '-l', String(size), filler], { timeoutMs: 10_000 });
      if (result.exitCode === 0) return;
      last = result.stderr;
    }
    throw new Error(`could not fill the disk: ${last}`);
  };
  const unfill = () => fs.rm(filler, { force: true });

  /** What must survive every fault: the live release's files, what nginx serves, the database. */
  async function survivors() {
    const state = stateFingerprint(stack);
    return {
      state,
      view: await liveView(stack),
      releases: Object.fromEntries(await Promise.all(state.releases.map(async (r) => {
        const id = r.split(' ')[0]!;
        return [id, await snapshotTree(path.join(stack.home, 'releases', APP, id), { hash: true })] as const;
      }))),
    };
  }

  async function expectIntact(before: Awaited<ReturnType<typeof survivors>>, failedSha: string): Promise<void> {
    expect(await ingestLeftovers(stack.home), 'no .part file, no temp dir').toEqual([]);
    // A release id starts with its commit's first 12 hex digits.
    expect((await fs.readdir(path.join(stack.home, 'releases', APP))).filter((name) => name.startsWith(`${failedSha.slice(0, 12)}-`))).toEqual([]);
    const after = await survivors();
    expect(after.view, 'the live slot answers through nginx as before').toEqual(before.view);
    expect(after.releases, 'earlier releases byte-identical').toEqual(before.releases);
    expect({ ...after.state, deployments: undefined, lock: undefined }).toEqual({ ...before.state, deployments: undefined, lock: undefined });
    expect(after.state.lock, 'the lock was given back').toBeNull();
    // The database is still a database: an integrity check, and it takes writes again.
    const check = await runCommand(['sqlite3', path.join(stack.home, 'agent.db'), 'PRAGMA integrity_check;'], { timeoutMs: 10_000 });
    expect(check.stdout.trim()).toBe('ok');
  }

  it('case 14: the disk fills during the upload -> ENOSPC reported, nothing partial, earlier releases intact, retry succeeds', async () => {
    await fs.writeFile(path.join(stack.repo.dir, 'blob.bin'), seededBytes('disk-upload', 20 * MiB));
    const sha = await stack.repo.commit({}, '20 MB release');
    const before = await survivors();
    const cli = stack.deployInBackground(['push']);
    let exited = false;
    void cli.done.then(() => { exited = true; });
    const incoming = path.join(stack.home, 'incoming');
    try {
      await waitFor(async () => {
        if (exited) throw new Error(`the CLI exited before the disk was filled: ${JSON.stringify(await cli.done)}`);
        const part = (await fs.readdir(incoming)).find((n) => n.endsWith('.part'));
        return part !== undefined && ((await fs.stat(path.join(incoming, part)).catch(() => null))?.size ?? 0) >= 2 * MiB;
      }, { timeoutMs: 60_000, intervalMs: 5, description: 'the upload to be under way' });
      await fill(256 * 1024);
      const result = await withDeadline(cli.done, 60_000, 'the CLI to exit');
      expect(result.code, result.stderr).toBe(3);
      // The archive is unpacked while it arrives, so the .part and the unpacked files race for
      // the last free blocks: either write may be the one that meets ENOSPC.
      expect(result.stderr).toMatch(/disk filled up while (receiving upload|unpacking the release)/);
      expect(result.stderr).toMatch(/hint: free space on the filesystem holding/);
      await expectIntact(before, sha);
    } finally {
      await unfill();
    }
    const retry = await stack.deploy(['push']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, sha) });
  });

  it('case 14: the disk fills while unpacking (a small upload that inflates past the disk) -> ENOSPC, temp dir and upload removed', async () => {
    await fs.rm(path.join(stack.repo.dir, 'blob.bin'));
    // Zeros: a few hundred KB on the wire, 200 MB on disk, more than the tmpfs has.
    await fs.writeFile(path.join(stack.repo.dir, 'zeros.bin'), Buffer.alloc(200 * MiB));
    const sha = await stack.repo.commit({}, 'inflates past the disk');
    const before = await survivors();
    const result = await stack.deploy(['push']);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(/disk filled up while unpacking the release/);
    await expectIntact(before, sha);
    await fs.rm(path.join(stack.repo.dir, 'zeros.bin'));
    await stack.repo.commit({}, 'fits again');
  });

  it('case 14: an upload that cannot fit is refused before a byte is stored, naming free and needed space', async () => {
    const sha = await stack.repo.commit({ 'message.txt': 'no room\n' }, 'no room');
    const before = await survivors();
    // Less than the 64 MB the agent keeps in reserve.
    await fill(32 * MiB);
    const watch = watchDir(path.join(stack.home, 'incoming'));
    try {
      const result = await stack.deploy(['push']);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/not enough free disk for release .*: \d+ MB free under .*, \d+ MB needed/);
      expect(await watch.settle(), 'not even a .part file was created').toEqual([]);
      await expectIntact(before, sha);
    } finally {
      watch.close();
      await unfill();
    }
    const retry = await stack.deploy(['push']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, sha) });
  });

  it('addition: a switch or rollback asked for while the disk is full -> 507 disk_full naming the disk, nothing changed; works once there is room', async () => {
    const before = await survivors();
    const other = before.state.liveSlot === 'blue' ? 'green' : 'blue';
    await fill(0);
    try {
      for (const args of [['switch', other], ['rollback']]) {
        const result = await stack.deploy(args);
        expect(result.code, result.stderr).toBe(3);
        expect(result.stderr).toContain(`the disk holding the agent's home ${stack.home} is full`);
        expect(result.stderr).toMatch(/hint: free space on that filesystem/);
      }
      expect(await liveView(stack)).toEqual(before.view);
      expect(stateFingerprint(stack)).toEqual(before.state);
    } finally {
      await unfill();
    }
    const switched = await stack.deploy(['switch', other]);
    expect(switched.code, switched.stderr + switched.stdout).toBe(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, slot: other });
  });

  it('addition: a backup dump that fills the disk -> failed; the reason, the CLI and the webhook say the disk is full, how much was free and where; nothing left behind, the live slot untouched', async () => {
    const before = await survivors();
    const jobDir = path.join(stack.home, 'backups', APP, 'files');
    const full = (moment: 'before the dump' | 'after the dump') => new RegExp(diskFullPattern({ dir: jobDir, mountPoint, total: '167.8 MB', margin: '1.7 MB', moment }));
    // More than the margin (1% of 160 MiB) is free, less than the 8 MB dump needs.
    await fill(3 * MiB);
    try {
      const result = await stack.deploy(['backup', 'run', 'files']);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/deploy: backup #1 of files is failed: the disk holding the backups is full/);
      expect(result.stderr).toMatch(full('after the dump'));
      expect(result.stderr).toContain('; the dump exited with code 1');
      const message = await waitFor(() => webhook.messages.find((m) => m.text.includes('backup files #1 ')), { description: 'the webhook message' });
      expect(message.text).toMatch(full('after the dump'));
      expect(message.text).toContain(`disk full. `);
      expect(await fs.readdir(jobDir), 'the cut-short temp file is removed').toEqual([]);
    } finally {
      await unfill();
    }
    // Less than the margin free: no dump starts, so it cannot take the last of the space.
    await fill(1 * MiB);
    try {
      const result = await stack.deploy(['backup', 'run', 'files']);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/deploy: backup #2 of files is failed: not started: the disk holding the backups is full/);
      expect(result.stderr).toMatch(full('before the dump'));
      expect(await fs.readdir(jobDir)).toEqual([]);
    } finally {
      await unfill();
    }
    expect(await liveView(stack), 'the live slot answers through nginx as before').toEqual(before.view);
    expect(stateFingerprint(stack)).toEqual(before.state);
    const check = await runCommand(['sqlite3', path.join(stack.home, 'agent.db'), 'PRAGMA integrity_check;'], { timeoutMs: 10_000 });
    expect(check.stdout.trim()).toBe('ok');
    const retry = await stack.deploy(['backup', 'run', 'files']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(retry.stdout).toContain('backup #3 of files (command): verified');
  });
});
