/**
 * The release writer's waits are bounded by progress, not by time alone: a disk that keeps
 * finishing work is waited for, one that hangs fails the ingest. A disk that hangs is not
 * available here, so entries whose bodies never end stand in for writes that never complete (the
 * writer's progress stands still either way), with the stall limit passed in small.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { awaitProgress, TreeWriter, type EntryBody } from '../../agent/release/tree-writer.js';

/** A file entry's body the test ends (or never does). */
function pendingBody(): { body: EntryBody; end(): void } {
  const stream = new Readable({ read() {} });
  return { body: Object.assign(stream, { size: 1 }), end: () => { stream.push(Buffer.from('x')); stream.push(null); } };
}

describe('TreeWriter.room()', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

  async function crowdedWriter(entries: number) {
    const dest = mkdtempSync(path.join(os.tmpdir(), 'slipway-tree-stall-'));
    const errors: unknown[] = [];
    const writer = await TreeWriter.create(dest, { flushFromBytes: Infinity, onError: (error) => errors.push(error) });
    const bodies = Array.from({ length: entries }, (_, i) => {
      const b = pendingBody();
      writer.add(b.body, { path: `f${i}`, kind: 'file', mode: 0o644 });
      return b;
    });
    cleanups.push(async () => {
      writer.fail(new Error('test over'));
      await writer.settle();
      rmSync(dest, { recursive: true, force: true });
    });
    return { writer, bodies, errors };
  }

  it('fails when no entry finishes for the stall limit (before: it waited forever)', async () => {
    const { writer } = await crowdedWriter(70);
    expect(writer.crowded).toBe(true);
    await expect(writer.room(200)).rejects.toThrow('writing the release made no progress for 0.2 s');
  }, 5_000);

  it('resolves once entries finish and fewer wait', async () => {
    const { writer, bodies } = await crowdedWriter(65);
    const room = writer.room(60_000);
    // The first entries are the ones being written; two of them finishing leaves 63 waiting.
    bodies[0]!.end();
    bodies[1]!.end();
    await room;
    expect(writer.crowded).toBe(false);
  }, 5_000);
});

describe('awaitProgress', () => {
  it('keeps waiting while progress moves between stall windows, and resolves when the work is done', async () => {
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => { resolveDone = resolve; });
    let reads = 0;
    // Each read is one more finished entry; after a few windows the work completes.
    const progress = () => {
      reads += 1;
      if (reads === 6) resolveDone();
      return reads;
    };
    await awaitProgress(done, progress, 20, 'writing the release');
    expect(reads).toBeGreaterThanOrEqual(6);
  }, 5_000);

  it('fails with what stalled when progress stands still for a window', async () => {
    await expect(awaitProgress(new Promise<void>(() => undefined), () => 3, 20, 'writing the release'))
      .rejects.toThrow('writing the release made no progress for 0.02 s');
  }, 5_000);

  it('without a limit, only waits', async () => {
    await awaitProgress(Promise.resolve(), () => 0, Infinity, 'writing the release');
  });
});
