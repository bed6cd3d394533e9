import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupService } from '../../agent/backups/service.js';
import { runCommand } from '../../lib/exec.js';
import { diskFullPattern, escapeRegExp, openBackupHost, type BackupHost } from '../helpers/backup-host.js';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhook, type Webhook } from '../helpers/webhook.js';

// Backups meeting a full disk, for real: the backup directory is a 512 KiB tmpfs this test
// mounts (root and mount(8) needed), the dump programs are real processes writing into it, the
// notifications go to a real HTTP webhook.

const MiB = 1024 * 1024;
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('backups on a full disk (a 512 KiB tmpfs as the backup directory)', () => {
  let root: string;
  let disk: string;
  let smallDisk: SmallDisk | undefined;
  let host: BackupHost;
  let service: BackupService;
  let webhook: Webhook;
  let bigFile: string;
  let smallFile: string;

  const jobDir = (job: string) => path.join(disk, 'shop', job);
  /** The reason's words for this 512 KiB disk and its default margin (1%). */
  const full = (job: string, moment: 'before the dump' | 'after the dump') => diskFullPattern({ dir: jobDir(job), mountPoint: disk, total: '524.3 KB', margin: '5.2 KB', moment });
  const run = (job: string) => service.run(job, { trigger: 'manual', actor: 'tester' });
  const freeBytes = async () => {
    const st = await fs.statfs(disk);
    return st.bavail * st.bsize;
  };
  const notified = (id: number) => waitFor(
    () => webhook.messages.find((m) => m.text.includes(` #${id} `)),
    { description: `the webhook message about backup #${id}` },
  );
  const jobs = () => ({
    small: { app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', smallFile] },
    big: { app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', bigFile] },
    // A dump program that loses its write error: cat fails on ENOSPC, the script exits 0 anyway.
    hiding: { app: 'shop', schedule: '0 3 * * *', kind: 'command', format: 'raw', command: ['sh', '-c', 'cat "$1" 2>/dev/null; exit 0', 'hiding', bigFile] },
  });

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-full-'));
    smallDisk = await mountSmallDisk(root, '512k');
    disk = smallDisk.dir;
    smallFile = path.join(root, 'small.bin');
    bigFile = path.join(root, 'big.bin');
    await fs.writeFile(smallFile, randomBytes(64 * 1024));
    await fs.writeFile(bigFile, randomBytes(2 * MiB));
    webhook = await startWebhook();
    host = await openBackupHost(root);
    service = await host.service({ dir: disk, notifyWebhook: webhook.url, jobs: jobs() });
  });

  afterAll(async () => {
    await host?.close();
    await webhook?.close();
    await smallDisk?.unmount();
    await fs.rm(root, { recursive: true, force: true });
  });

  it('a dump that fails because the disk filled: the recorded reason and the notification say the disk is full, how much was free and where', async () => {
    const earlier = await run('small');
    expect(earlier.status, earlier.reason ?? '').toBe('verified');
    const earlierSha = sha256(earlier.file!);

    const row = await run('big');
    expect(row.reason).toMatch(new RegExp(`^${full('big', 'after the dump')}; the dump exited with code 1$`));
    expect(row).toMatchObject({ status: 'failed', exitCode: 1, file: null, sha256: null });
    expect(row.stderrTail).toMatch(/No space left on device/);
    const message = await notified(row.id);
    expect(message.text).toMatch(new RegExp(`backup big #${row.id} \\(app shop\\) on .*: disk full\\. ${full('big', 'after the dump')}; the dump exited with code 1\\. Earlier backups are untouched; free space on ${escapeRegExp(disk)} \\(or change minFreeBytes\\) before the next run\\.$`));
    expect(await fs.readdir(jobDir('big')), 'the temp file is removed').toEqual([]);
    expect(sha256(earlier.file!)).toBe(earlierSha);
  });

  it('a raw command job whose program hides the write failure behind exit 0: failed (not verified), its cut-short file removed, free space named', async () => {
    const row = await run('hiding');
    expect(row).toMatchObject({ status: 'failed', exitCode: 0, file: null, verifiedAt: null });
    expect(row.reason).toMatch(new RegExp(`^${full('hiding', 'after the dump')}; the dump exited 0, but its output may be cut short, so it is not kept$`));
    expect(row.bytes, 'what the program managed to write is on record').toBeGreaterThan(0);
    expect(row.bytes).toBeLessThan(2 * MiB);
    expect(await fs.readdir(jobDir('hiding'))).toEqual([]);
    expect((await notified(row.id)).text).toContain('disk full. the disk holding the backups is full');
    expect(await freeBytes(), 'the space the cut-short file took is given back').toBeGreaterThan(400 * 1024);
  });

  it('a disk already below the margin: no dump is started, the run says why; once there is room it runs', async () => {
    const filler = path.join(disk, 'filler');
    const fill = await runCommand(['fallocate', '-l', String(await freeBytes()), filler], { timeoutMs: 10_000 });
    expect(fill.exitCode, fill.stderr).toBe(0);
    try {
      const before = await fs.readdir(jobDir('small'));
      const row = await run('small');
      expect(row).toMatchObject({ status: 'failed', exitCode: null, bytes: null, file: null });
      expect(row.reason).toMatch(new RegExp(`^not started: ${full('small', 'before the dump')}$`));
      expect(row.reason).toContain(': 0 B free of');
      expect(await fs.readdir(jobDir('small')), 'not even a temp file was created').toEqual(before);
      expect((await notified(row.id)).text).toContain('disk full. not started: the disk holding the backups is full: 0 B free');
    } finally {
      await fs.rm(filler, { force: true });
    }
    const again = await run('small');
    expect(again.status, again.reason ?? '').toBe('verified');
  });

  it('the margin is configurable (minFreeBytes): a complete dump that leaves less than it free is failed and removed', async () => {
    // Room for the dump, but not for the dump and the margin.
    const margin = (await freeBytes()) - 32 * 1024;
    service = await host.service({ dir: disk, notifyWebhook: webhook.url, jobs: { ...jobs(), small: { ...jobs().small, minFreeBytes: margin } } });
    const before = await fs.readdir(jobDir('small'));
    const row = await run('small');
    expect(row).toMatchObject({ status: 'failed', exitCode: 0, file: null });
    expect(row.reason).toMatch(new RegExp(`after the dump, below the margin of ${escapeRegExp((margin / 1000).toFixed(1))} KB \\(minFreeBytes\\); the dump exited 0, but its output may be cut short, so it is not kept$`));
    expect(await fs.readdir(jobDir('small'))).toEqual(before);
  });
});
