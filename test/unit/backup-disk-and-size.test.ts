import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { freeSpaceMargin, lowSpaceReason, type DiskSpace } from '../../agent/backups/disk-space.js';
import { rejectDump } from '../../agent/backups/outcome.js';
import { judgeSizeRange, median } from '../../agent/backups/size-check.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const MiB = 1024 * 1024;
const GB = 1e9;

describe('free space margin of the backup filesystem', () => {
  it('defaults to 1% of the filesystem, at most 64 MiB; a configured margin (0 too) wins', () => {
    expect(freeSpaceMargin(524_288, undefined)).toBe(5243);
    expect(freeSpaceMargin(1 * GB, undefined)).toBe(10_000_000);
    expect(freeSpaceMargin(500 * GB, undefined)).toBe(64 * MiB);
    expect(freeSpaceMargin(500 * GB, 1 * GB)).toBe(1 * GB);
    expect(freeSpaceMargin(500 * GB, 0)).toBe(0);
  });

  const space = (freeBytes: number): DiskSpace => ({ path: '/srv/slipway/backups/shop/db', mountPoint: '/srv', freeBytes, totalBytes: 20 * GB });

  it('says nothing at or above the margin; below it, names the free space, the filesystem and the margin', () => {
    expect(lowSpaceReason(space(64 * MiB), 64 * MiB, 'after the dump')).toBeNull();
    expect(lowSpaceReason(space(0), 0, 'after the dump'), 'a margin of 0 turns the check off').toBeNull();
    expect(lowSpaceReason(space(12_345_678), 64 * MiB, 'before the dump')).toBe(
      'the disk holding the backups is full: 12.3 MB free of 20.0 GB on the filesystem holding /srv/slipway/backups/shop/db (mounted at /srv) before the dump, below the margin of 67.1 MB (minFreeBytes)',
    );
  });

  const job = { timeoutMs: 1000, minBytes: 1 };
  const dump = (over: Partial<Parameters<typeof rejectDump>[0]> = {}) => ({ error: null, timedOut: false, signal: null, exitCode: 0, bytes: 100, ...over });

  it('a dump is rejected for a full disk first, whatever its program said; otherwise for its own failure', () => {
    expect(rejectDump(dump(), job, null)).toBeNull();
    expect(rejectDump(dump({ exitCode: 1 }), job, null)).toEqual({ reason: 'the dump exited with code 1', diskFull: false });
    expect(rejectDump(dump({ exitCode: 1 }), job, 'the disk holding the backups is full: …')).toEqual({
      reason: 'the disk holding the backups is full: …; the dump exited with code 1', diskFull: true,
    });
    expect(rejectDump(dump(), job, 'the disk holding the backups is full: …')).toEqual({
      reason: 'the disk holding the backups is full: …; the dump exited 0, but its output may be cut short, so it is not kept', diskFull: true,
    });
  });
});

describe('size range of a raw dump', () => {
  const bounds = { minSizeRatio: 0.5, maxSizeRatio: 4 };

  it('is skipped, with the reason, without a verified dump to compare with', () => {
    expect(judgeSizeRange(10, [], bounds)).toEqual({ ok: true, skipped: true, detail: 'no earlier verified dump of this job to compare with: the size range is checked from the next run on' });
  });

  it('compares with the median of the last five verified dumps', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    // The sixth (a huge old dump) is out of the window; one odd recent dump does not move the median.
    const history = [1000, 1000, 10, 1000, 1000, 1_000_000];
    expect(judgeSizeRange(1000, history, bounds)).toEqual({ ok: true, detail: '1.0 KB is 1× the median 1.0 KB of the last 5 verified dump(s) (allowed 0.5× to 4×)' });
  });

  it('fails below the lower bound and above the upper one, inclusive bounds pass', () => {
    expect(judgeSizeRange(499, [1000], bounds)).toEqual({ ok: false, detail: '499 B is 0.499× the median 1.0 KB of the last 1 verified dump(s), below verify.minSizeRatio 0.5 (cut short?)' });
    expect(judgeSizeRange(500, [1000], bounds).ok).toBe(true);
    expect(judgeSizeRange(4000, [1000], bounds).ok).toBe(true);
    expect(judgeSizeRange(4001, [1000], bounds)).toEqual({ ok: false, detail: '4.0 KB is 4.001× the median 1.0 KB of the last 1 verified dump(s), above verify.maxSizeRatio 4' });
    expect(judgeSizeRange(1, [1000], { minSizeRatio: 0, maxSizeRatio: 4 }).ok, 'minSizeRatio 0 turns the lower bound off').toBe(true);
  });
});

describe('backups config: free space margin and size range', () => {
  const raw = (jobs: Record<string, Record<string, unknown>>, defaults?: Record<string, unknown>) => ({
    home: '/srv/slipway',
    api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
    nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
    apps: { shop: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 'server.js' }, public: { listenPort: 80 } } },
    backups: { ...(defaults ? { defaults } : {}), jobs },
  });
  const command = (extra: Record<string, unknown> = {}) => ({ app: 'shop', schedule: '0 3 * * *', kind: 'command', command: ['cat', '/var/x'], ...extra });
  const pg = (extra: Record<string, unknown> = {}) => ({ app: 'shop', schedule: '0 3 * * *', kind: 'pg_dump', source: { uriEnv: 'DATABASE_URL' }, ...extra });

  it('minFreeBytes: unset means the filesystem default; backups.defaults.minFreeBytes is inherited; a job overrides it', () => {
    expect(parseAgentConfig(raw({ a: command() })).backups!.jobs.a!.minFreeBytes).toBeUndefined();
    const jobs = parseAgentConfig(raw({ a: command(), b: command({ minFreeBytes: 0 }) }, { minFreeBytes: 1_000_000 })).backups!.jobs;
    expect(jobs.a!.minFreeBytes).toBe(1_000_000);
    expect(jobs.b!.minFreeBytes).toBe(0);
  });

  it('size ratios are filled for raw command jobs only, and a job sets its own', () => {
    const jobs = parseAgentConfig(raw({
      plain: command(), own: command({ verify: { maxSizeRatio: 10 } }), gz: command({ format: 'gzip' }), db: pg(),
    })).backups!.jobs;
    expect(jobs.plain!.verify).toEqual({ restore: true, minSizeRatio: 0.5, maxSizeRatio: 4 });
    expect(jobs.own!.verify).toEqual({ restore: true, minSizeRatio: 0.5, maxSizeRatio: 10 });
    expect(jobs.gz!.verify).toEqual({ restore: true });
    expect(jobs.db!.verify).toEqual({ restore: true });
  });

  it('every problem is reported with its path', () => {
    expect(agentConfigProblems(raw({
      neg: command({ minFreeBytes: -1 }),
      frac: command({ minFreeBytes: 1.5 }),
      low: command({ verify: { minSizeRatio: 1.5, maxSizeRatio: 0.5 } }),
      gz: command({ format: 'gzip', verify: { minSizeRatio: 0.5 } }),
      db: pg({ verify: { maxSizeRatio: 2 } }),
    }, { minFreeBytes: 'lots' })).sort()).toEqual([
      'backups/defaults/minFreeBytes: must be integer',
      'backups/jobs/frac/minFreeBytes: must be integer',
      'backups/jobs/low/verify/maxSizeRatio: must be >= 1',
      'backups/jobs/low/verify/minSizeRatio: must be <= 1',
      'backups/jobs/neg/minFreeBytes: must be >= 0',
    ]);
    expect(agentConfigProblems(raw({
      gz: command({ format: 'gzip', verify: { minSizeRatio: 0.5 } }),
      db: pg({ verify: { maxSizeRatio: 2 } }),
    })).sort()).toEqual([
      'backups/jobs/db/verify/maxSizeRatio: only checked for kind "command" with format "raw" (other formats are checked by their structure)',
      'backups/jobs/gz/verify/minSizeRatio: only checked for kind "command" with format "raw" (other formats are checked by their structure)',
    ]);
  });
});
