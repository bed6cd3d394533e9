import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupService } from '../../agent/backups/service.js';
import { openBackupHost, type BackupHost } from '../helpers/backup-host.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhook, type Webhook } from '../helpers/webhook.js';

// Verification of `command` jobs whose output is raw (no format Slipway can read): real dump
// processes, real files, real SQLite history of earlier runs, a real webhook.

const KB = 1000;

describe('raw command dumps: verified by size against the job\'s previous verified dumps', () => {
  let root: string;
  let host: BackupHost;
  let service: BackupService;
  let webhook: Webhook;
  let source: string;

  /** The dump program prints `source`; each case writes there the bytes the next dump will hold. */
  const dumpOf = (bytes: number) => fs.writeFile(source, randomBytes(bytes));
  const run = (job: string) => service.run(job, { trigger: 'manual', actor: 'tester' });
  const checksOf = (row: Awaited<ReturnType<typeof run>>) => row.verification!.checks.map((c) => [c.name, c.skipped ? 'skipped' : c.ok]);
  const job = (extra: Record<string, unknown> = {}) => ({ app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', source], ...extra });

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-raw-'));
    source = path.join(root, 'source.bin');
    webhook = await startWebhook();
    host = await openBackupHost(root);
    service = await host.service({
      dir: path.join(root, 'backups'), notifyWebhook: webhook.url,
      jobs: { files: job(), tight: job({ verify: { minSizeRatio: 0.9, maxSizeRatio: 1.1 } }), packed: job({ format: 'gzip', command: ['gzip', '-c', source] }) },
    });
  });

  afterAll(async () => {
    await host?.close();
    await webhook?.close();
    await fs.rm(root, { recursive: true, force: true });
  });

  it('the first dump of a job: not empty is checked, the size range is skipped with the reason', async () => {
    await dumpOf(100 * KB);
    const row = await run('files');
    expect(row.status, row.reason ?? '').toBe('verified');
    expect(checksOf(row)).toEqual([['checksum', true], ['size', true], ['size range', 'skipped'], ['restore drill', 'skipped']]);
    expect(row.verification!.checks[1]!.detail).toBe('100000 bytes, not empty');
    expect(row.verification!.checks[2]!.detail).toBe('no earlier verified dump of this job to compare with: the size range is checked from the next run on');
  });

  it('a dump of about the usual size is verified, the range check saying what it compared with', async () => {
    const row = await run('files');
    expect(row.status, row.reason ?? '').toBe('verified');
    expect(checksOf(row)).toEqual([['checksum', true], ['size', true], ['size range', true], ['restore drill', 'skipped']]);
    expect(row.verification!.checks[2]!.detail).toBe('100.0 KB is 1× the median 100.0 KB of the last 1 verified dump(s) (allowed 0.5× to 4×)');
  });

  it('a dump far smaller than the usual (cut short?) is kept but unverified, notified, and does not become the reference', async () => {
    await dumpOf(30 * KB);
    const small = await run('files');
    expect(small).toMatchObject({ status: 'unverified', verifiedAt: null });
    expect(small.reason).toBe('size range: 30.0 KB is 0.3× the median 100.0 KB of the last 2 verified dump(s), below verify.minSizeRatio 0.5 (cut short?)');
    expect(existsSync(small.file!), 'an odd size does not prove the file broken: it is kept').toBe(true);
    const message = await waitFor(() => webhook.messages.find((m) => m.text.includes(`backup files #${small.id} `)), { description: 'the unverified notification' });
    expect(message.text).toContain('unverified. The backup was written but did not pass verification (size range: 30.0 KB is 0.3×');

    await dumpOf(120 * KB);
    const next = await run('files');
    expect(next.status, next.reason ?? '').toBe('verified');
    expect(next.verification!.checks[2]!.detail).toBe('120.0 KB is 1.2× the median 100.0 KB of the last 2 verified dump(s) (allowed 0.5× to 4×)');
  });

  it('a dump far larger than the usual is unverified too', async () => {
    await dumpOf(500 * KB);
    const row = await run('files');
    expect(row.status).toBe('unverified');
    expect(row.reason).toBe('size range: 500.0 KB is 5× the median 100.0 KB of the last 3 verified dump(s), above verify.maxSizeRatio 4');
  });

  it('the bounds are the job\'s own (verify.minSizeRatio / maxSizeRatio)', async () => {
    await dumpOf(100 * KB);
    expect((await run('tight')).status).toBe('verified');
    await dumpOf(95 * KB);
    expect((await run('tight')).status).toBe('verified');
    await dumpOf(85 * KB);
    const row = await run('tight');
    expect(row.status).toBe('unverified');
    expect(row.reason).toMatch(/^size range: 85\.0 KB is 0\.87× the median 97\.5 KB of the last 2 verified dump\(s\), below verify\.minSizeRatio 0\.9/);
  });

  it('a gzip command job is checked by its gzip stream, not by size', async () => {
    await dumpOf(10 * KB);
    const row = await run('packed');
    expect(row.status, row.reason ?? '').toBe('verified');
    expect(checksOf(row)).toEqual([['checksum', true], ['gzip', true], ['restore drill', 'skipped']]);
  });
});
