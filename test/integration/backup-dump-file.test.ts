import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { dumpToFile, publishFile } from '../../agent/backups/dump-file.js';
import { BackupService } from '../../agent/backups/service.js';
import { runCommand } from '../../lib/exec.js';
import { isAlive } from '../helpers/nginx.js';
import { waitFor } from '../helpers/wait.js';

// The backup write path with real programs and files: the dump program's stdout is the temp file
// itself, the file is hashed once the program (and its process group) is done, and a full disk
// is met by the program, which fails the run.

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const MiB = 1024 * 1024;
/** A dump program written in JS, run by this very node binary. */
const nodeProgram = (source: string) => [process.execPath, '-e', source];
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

describe('dumpToFile: the program writes the temp file itself', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-dump-file-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stdout is the file (no pipe through the agent); sha256 and size are of the finished file, mode 0600; publishFile renames it', async () => {
    const data = path.join(dir, 'data.bin');
    // Several read chunks and a partial last one.
    await fs.writeFile(data, randomBytes(3 * MiB + 5));
    const temp = path.join(dir, 'a.part');
    const program = nodeProgram(`
      const fs = require('node:fs');
      if (!fs.fstatSync(1).isFile()) { console.error('stdout is not a file'); process.exit(9); }
      fs.writeSync(1, fs.readFileSync(${JSON.stringify(data)}));
    `);
    const result = await dumpToFile(program, temp, { env, timeoutMs: 30_000 });
    expect(result, result.stderrTail).toMatchObject({ exitCode: 0, signal: null, timedOut: false, error: null, bytes: 3 * MiB + 5 });
    expect(result.sha256).toBe(sha256(readFileSync(data)));
    expect((await fs.stat(temp)).mode & 0o777).toBe(0o600);
    const final = path.join(dir, 'a.final');
    await publishFile(temp, final);
    expect(existsSync(temp)).toBe(false);
    expect(sha256(readFileSync(final))).toBe(result.sha256);
  });

  it('a program that rewrites the start of its output at the end (pg_dump -Fc does, to a seekable stdout): the hash is of the finished file', async () => {
    const temp = path.join(dir, 'b.part');
    const program = nodeProgram(`
      const fs = require('node:fs');
      fs.writeSync(1, Buffer.alloc(${2 * MiB}, 0x61));
      fs.writeSync(1, 'TOC with offsets', 0);
    `);
    const result = await dumpToFile(program, temp, { env, timeoutMs: 30_000 });
    expect(result.exitCode, result.stderrTail).toBe(0);
    const written = readFileSync(temp);
    expect(written.subarray(0, 16).toString()).toBe('TOC with offsets');
    expect(result).toMatchObject({ bytes: 2 * MiB, sha256: sha256(written) });
  });

  it('what the program left running in its group is killed once it exits, so nothing changes the file after it was hashed', async () => {
    const temp = path.join(dir, 'c.part');
    const pidFile = path.join(dir, 'c.pid');
    // The leftover holds stdout (the file) but not stderr, so the run does not wait for it.
    const program = nodeProgram(`
      const { spawn } = require('node:child_process');
      const child = spawn(process.execPath, ['-e', 'setInterval(() => process.stdout.write("x".repeat(4096)), 2)'], { stdio: ['ignore', 'inherit', 'ignore'] });
      require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(child.pid));
      child.unref();
      process.stdout.write('leader done\\n');
    `);
    const result = await dumpToFile(program, temp, { env, timeoutMs: 30_000 });
    expect(result.exitCode, result.stderrTail).toBe(0);
    const leftover = Number(readFileSync(pidFile, 'utf8'));
    try {
      await waitFor(() => !isAlive(leftover), { description: 'the leftover writer to be killed' });
    } finally {
      // If it was not, it must not go on filling the disk after this test.
      try { process.kill(leftover, 'SIGKILL'); } catch { /* already gone */ }
    }
    const written = readFileSync(temp);
    expect(result).toMatchObject({ bytes: written.length, sha256: sha256(written) });
  });

  it('a failed program: its output is not hashed, what it wrote is counted, its stderr kept', async () => {
    const temp = path.join(dir, 'd.part');
    const program = nodeProgram(`
      require('node:fs').writeSync(1, Buffer.alloc(100, 1));
      console.error('lost the connection');
      process.exit(3);
    `);
    const result = await dumpToFile(program, temp, { env, timeoutMs: 30_000 });
    expect(result).toMatchObject({ exitCode: 3, bytes: 100, sha256: null, timedOut: false });
    expect(result.stderrTail).toContain('lost the connection');
  });

  it('a timeout kills the group; the partial output is not hashed', async () => {
    const temp = path.join(dir, 'e.part');
    const program = nodeProgram(`
      require('node:fs').writeSync(1, Buffer.alloc(10, 1));
      setInterval(() => {}, 1000);
    `);
    const result = await dumpToFile(program, temp, { env, timeoutMs: 500 });
    expect(result).toMatchObject({ timedOut: true, signal: 'SIGKILL', sha256: null });
  });
});

/** The disk fills during a dump. Needs a small tmpfs, so root and mount(8). */
describe('backup run on a full disk (a command job writing to a small tmpfs)', () => {
  let root: string;
  let mountPoint: string;
  let mounted = false;
  let db: Db;
  let service: BackupService;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-dump-full-'));
    mountPoint = path.join(root, 'disk');
    await fs.mkdir(mountPoint);
    const mount = await runCommand(['mount', '-t', 'tmpfs', '-o', 'size=512k,mode=0700', 'tmpfs', mountPoint], { timeoutMs: 10_000 });
    // This case is about a real full disk: where tmpfs cannot be mounted it must fail, not skip.
    expect(mount.exitCode, `mount tmpfs: ${mount.stderr}`).toBe(0);
    mounted = true;
    await fs.writeFile(path.join(root, 'small.bin'), randomBytes(64 * 1024));
    await fs.writeFile(path.join(root, 'big.bin'), randomBytes(2 * MiB));
    await fs.writeFile(path.join(root, 'shop.env'), '', { mode: 0o600 });
    const config = parseAgentConfig({
      home: path.join(root, 'home'),
      api: { port: 7070, tokenFile: path.join(root, 'token') },
      nginx: { pidFile: path.join(root, 'nginx.pid'), includeDir: root },
      apps: { shop: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 'server.js' }, public: { listenPort: 8080 }, envFile: path.join(root, 'shop.env') } },
      backups: {
        dir: mountPoint,
        jobs: {
          small: { app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', path.join(root, 'small.bin')] },
          big: { app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', path.join(root, 'big.bin')] },
        },
      },
    });
    await fs.mkdir(path.join(root, 'home'), { recursive: true });
    db = openDatabase(path.join(root, 'home', 'agent.db'));
    service = new BackupService({ config, db, logger: createLogger({ level: 'silent' }) });
  });

  afterAll(async () => {
    await service?.close();
    db?.close();
    if (mounted) {
      const unmounted = await runCommand(['umount', mountPoint], { timeoutMs: 10_000 });
      expect(unmounted.exitCode, unmounted.stderr).toBe(0);
    }
    await fs.rm(root, { recursive: true, force: true });
  });

  it('ENOSPC: the dump fails with the reason on record, its temp file is removed, the earlier backup is intact', async () => {
    const earlier = await service.run('small', { trigger: 'manual', actor: 'tester' });
    expect(earlier.file, earlier.reason ?? '').not.toBeNull();
    const earlierSha = sha256(readFileSync(earlier.file!));
    expect(earlierSha).toBe(earlier.sha256);

    const row = await service.run('big', { trigger: 'manual', actor: 'tester' });
    expect(row).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^the disk holding the backups is full: .*; the dump exited with code 1$/), exitCode: 1, file: null, sha256: null });
    expect(row.stderrTail).toMatch(/No space left on device/);
    expect(await fs.readdir(path.join(mountPoint, 'shop', 'big'))).toEqual([]);
    expect(sha256(readFileSync(earlier.file!))).toBe(earlierSha);
  });
});
