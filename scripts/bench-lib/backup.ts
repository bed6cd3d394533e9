// Item 7: the backup write path exactly as the agent runs it (agent/backups/dump-file.ts: the dump
// program's stdout is the temp file; once it exits the file is hashed while it is fsynced, then
// renamed into place and the directory fsynced) against the shell's `cat dump > file` of the same
// bytes on the same disk. Both sides run `cat` on the same page-cached source into a new file in
// the same directory; the durable baseline adds only the fsync (not the rename and directory
// fsync, ~1 ms).
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, openSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dumpToFile, publishFile } from '../../agent/backups/dump-file.js';
import type { BenchContext } from './context.js';
import { epochMs } from './poller.js';
import { makeFigure } from './report.js';
import { writeRandomFile } from './release-data.js';
import { throughput } from './stats.js';

const MiB = 1024 * 1024;

/** `cat src > dest` as the shell runs it: cat's stdout is the file itself. */
function catToFile(src: string, dest: string, fsync: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = epochMs();
    const fd = openSync(dest, 'w', 0o600);
    const child = spawn('cat', [src], { stdio: ['ignore', fd, 'inherit'] });
    child.once('error', (error) => { closeSync(fd); reject(error); });
    child.once('close', (code) => {
      if (fsync) fsyncSync(fd);
      closeSync(fd);
      if (code !== 0) reject(new Error(`cat exited ${code}`));
      else resolve(epochMs() - started);
    });
  });
}

export async function benchBackup(ctx: Pick<BenchContext, 'plan' | 'figures' | 'log'>): Promise<void> {
  const { plan } = ctx;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-backup-'));
  try {
    const bytes = plan.backupMB * MiB;
    const src = path.join(dir, 'dump-source.bin');
    // A compressed dump is incompressible: random bytes stand in for it.
    const sha256 = await writeRandomFile(src, bytes, 'backup');
    await catToFile(src, path.join(dir, 'warm'), false);
    await fs.rm(path.join(dir, 'warm'));
    const slipway: number[] = [];
    const cat: number[] = [];
    const catSync: number[] = [];
    const runSlipway = async () => {
      const temp = path.join(dir, 'backup.tmp');
      const final = path.join(dir, 'backup.final');
      const started = epochMs();
      const result = await dumpToFile(['cat', src], temp, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, timeoutMs: 300_000 });
      await publishFile(temp, final);
      const ms = epochMs() - started;
      if (result.exitCode !== 0 || result.error) throw new Error(`dumpToFile failed: exit ${result.exitCode} ${result.error ?? ''} ${result.stderrTail}`);
      if (result.bytes !== bytes || result.sha256 !== sha256) throw new Error(`dumpToFile wrote ${result.bytes} bytes with sha256 ${result.sha256}, expected ${bytes} / ${sha256}`);
      slipway.push(throughput(bytes, ms));
      await fs.rm(final);
    };
    const runCat = async (fsync: boolean) => {
      const dest = path.join(dir, 'plain.bin');
      const ms = await catToFile(src, dest, fsync);
      if ((await fs.stat(dest)).size !== bytes) throw new Error('cat > file wrote the wrong size');
      (fsync ? catSync : cat).push(throughput(bytes, ms));
      await fs.rm(dest);
    };
    for (let rep = 0; rep < plan.backupReps; rep++) {
      if (rep % 2 === 0) { await runCat(false); await runSlipway(); await runCat(true); } else { await runCat(true); await runSlipway(); await runCat(false); }
    }
    const section = '7. Backup write path';
    ctx.figures.push(makeFigure({
      id: 'backup.write', section, title: `${plan.backupMB} MiB dump: hash + fsync + rename (MB/s)`, unit: 'MB/s',
      slipway: { label: 'dumpToFile + publishFile', samples: slipway }, baseline: { label: 'cat > file', samples: cat },
      goal: { kind: 'ratioAtLeast', value: 0.9 },
    }));
    ctx.figures.push(makeFigure({
      id: 'backup.write.durable', section, title: `${plan.backupMB} MiB dump vs a durable copy (MB/s)`, unit: 'MB/s',
      slipway: { label: 'dumpToFile + publishFile', samples: slipway }, baseline: { label: 'cat > file + fsync', samples: catSync },
    }));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
