import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { BackupService } from '../../agent/backups/service.js';
import { dumpToFile } from '../../agent/backups/dump-file.js';

// The closing note's figure: MB/s of a backup run (streamed to disk while hashed, fsynced)
// against a plain `cat src > file` of the same bytes on the same disk. Printed, never asserted
// (timings on a shared 2-core box vary); the bytes written are checked. SLIPWAY_BENCH_MB sets the size.

const MB = Number(process.env.SLIPWAY_BENCH_MB ?? 256);
const ROUNDS = 3;

function catToFile(src: string, dest: string, fsync: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const fd = openSync(dest, 'w', 0o600);
    // exactly what the shell does for `cat src > dest`: cat's stdout is the file
    const child = spawn('cat', [src], { stdio: ['ignore', fd, 'inherit'] });
    child.once('error', reject);
    child.once('close', (code) => {
      if (fsync) fsyncSync(fd);
      closeSync(fd);
      if (code !== 0) reject(new Error(`cat exited ${code}`));
      else resolve(performance.now() - started);
    });
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const rate = (ms: number) => `${(MB / (ms / 1000)).toFixed(0).padStart(5)} MB/s (${(ms / 1000).toFixed(2)} s)`;

describe(`backup throughput (${MB} MB, median of ${ROUNDS})`, () => {
  let dir: string;
  let src: string;
  let srcSha: string;
  let db: Db;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-backup-bench-'));
    src = path.join(dir, 'source.bin');
    const hash = createHash('sha256');
    const handle = await fs.open(src, 'w');
    // Incompressible bytes, as a gzip'd dump is.
    for (let i = 0; i < MB; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      await handle.write(chunk);
    }
    await handle.close();
    srcSha = hash.digest('hex');
    // Warm the page cache for the source so every variant reads it the same way.
    await catToFile(src, path.join(dir, 'warm'), false);
  });

  afterAll(async () => {
    db?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('measures slipway\'s streamed, hashed, fsynced write against cat > file', async () => {
    const results: Record<string, number[]> = { 'cat > file': [], 'cat > file + fsync': [], 'slipway dump (hash + write + fsync)': [], 'slipway run (dump + rename + read-back verify)': [] };
    const home = path.join(dir, 'home');
    const config = parseAgentConfig({
      home, api: { port: 7070, tokenFile: path.join(dir, 'token') }, nginx: { pidFile: path.join(dir, 'n.pid'), includeDir: dir },
      apps: { bench: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 's.js' }, public: { listenPort: 8080 } } },
      backups: { jobs: { bench: { app: 'bench', schedule: '0 3 * * *', kind: 'command', command: ['cat', src], retention: { daily: 1, weekly: 0, monthly: 0 } } } },
    });
    db = openDatabase(path.join(home, 'agent.db'));
    const service = new BackupService({ config, db, logger: createLogger({ level: 'silent' }), notify: async () => undefined });
    for (let round = 0; round < ROUNDS; round++) {
      const plain = path.join(dir, `plain-${round}`);
      results['cat > file']!.push(await catToFile(src, plain, false));
      await fs.rm(plain);
      results['cat > file + fsync']!.push(await catToFile(src, plain, true));
      await fs.rm(plain);

      const dumped = path.join(dir, `dump-${round}.part`);
      const started = performance.now();
      const dump = await dumpToFile(['cat', src], dumped, { env: process.env, timeoutMs: 600_000 });
      results['slipway dump (hash + write + fsync)']!.push(performance.now() - started);
      expect(dump).toMatchObject({ exitCode: 0, bytes: MB * 1024 * 1024, sha256: srcSha });
      await fs.rm(dumped);

      const row = await service.run('bench', { trigger: 'manual', actor: 'bench@local' });
      expect(row).toMatchObject({ status: 'verified', sha256: srcSha, bytes: MB * 1024 * 1024 });
      results['slipway run (dump + rename + read-back verify)']!.push(row.durationMs!);
    }
    const lines = Object.entries(results).map(([name, ms]) => `  ${name.padEnd(48)} ${rate(median(ms))}`);
    console.log(`\nbackup throughput, ${MB} MB of random bytes, ${os.cpus().length} CPU(s), same disk (${dir}):\n${lines.join('\n')}\n`);
  });
});
