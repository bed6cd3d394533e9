import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileFollower } from '../../agent/logs/follow.js';
import { rotateLogs } from '../../agent/logs/rotation.js';

// The file mechanics of deploy logs on a real filesystem: following a file the way `tail -F` does,
// and rotating by rename. No PM2 here: logs.test.ts runs both against PM2's own files.

describe('log files', () => {
  let dir: string;
  beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-logfiles-')); });
  afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  it('a follower starts at the end, reads whole lines, finishes the old file after a rename, then reads the new one', async () => {
    const file = path.join(dir, 'web-out.log');
    await fs.writeFile(file, 'before the follow\n');
    const follower = new FileFollower(file);
    try {
      expect(await follower.poll()).toEqual({ lines: [], rotated: false });
      expect(follower.startOffset).toBe(18);
      await fs.appendFile(file, 'one\ntw');
      expect(await follower.poll()).toEqual({ lines: ['one'], rotated: false });
      // Rotated: the writer still appends to the renamed file before it reopens the path.
      const writer = await fs.open(file, 'a');
      await fs.rename(file, `${file}.1`);
      await writer.write('o\nlast of the old file\n');
      await writer.close();
      await fs.writeFile(file, 'first of the new file\n');
      expect(await follower.poll()).toEqual({ lines: ['two', 'last of the old file', 'first of the new file'], rotated: true });
      // Truncated in place: read again from the start. Multi-byte characters split across reads stay whole.
      await fs.writeFile(file, 'é\n');
      expect(await follower.poll()).toEqual({ lines: ['é'], rotated: true });
      expect(await follower.poll()).toEqual({ lines: [], rotated: false });
    } finally {
      await follower.close();
    }
  });

  it('a follower of a missing file waits for it and reads it from its start', async () => {
    const file = path.join(dir, 'later.log');
    const follower = new FileFollower(file);
    try {
      expect(await follower.poll()).toEqual({ lines: [], rotated: false });
      expect(follower.startOffset).toBeNull();
      await fs.writeFile(file, 'hello\n');
      expect(await follower.poll()).toEqual({ lines: ['hello'], rotated: false });
    } finally {
      await follower.close();
    }
  });

  it('rotates only files over the limit, keeps `keep` old ones, and asks for a reopen once', async () => {
    const big = path.join(dir, 'big.log');
    const small = path.join(dir, 'small.log');
    let reopened = 0;
    const reopen = async () => { reopened += 1; };
    await fs.writeFile(small, 'x'.repeat(100));
    for (let round = 1; round <= 4; round++) {
      await fs.writeFile(big, `round ${round} ${'x'.repeat(2000)}`);
      expect(await rotateLogs([big, small, big, path.join(dir, 'missing.log')], { maxBytes: 1024, keep: 2 }, reopen)).toEqual([big]);
    }
    expect(reopened).toBe(4);
    expect((await fs.readdir(dir)).sort()).toEqual(['big.log.1', 'big.log.2', 'small.log']);
    expect((await fs.readFile(`${big}.1`, 'utf8')).startsWith('round 4')).toBe(true);
    expect((await fs.readFile(`${big}.2`, 'utf8')).startsWith('round 3')).toBe(true);
    expect(await rotateLogs([small], { maxBytes: 1024, keep: 2 }, reopen)).toEqual([]);
    expect(reopened).toBe(4);
  });
});
