import { describe, expect, it } from 'vitest';
import type { BackupRunView, BackupsOverview } from '../../contract/backups.js';
import { formatAge, formatBackupList, formatRun, formatRunLine } from '../../controller/commands/backup.js';

const NOW = Date.parse('2025-03-10T12:00:00Z');

function run(over: Partial<BackupRunView> = {}): BackupRunView {
  return {
    id: 7, job: 'nightly', app: 'shop', kind: 'pg_dump', trigger: 'schedule', requestedBy: 'schedule', deploymentId: null,
    status: 'verified', reason: null, file: '/srv/slipway/backups/shop/nightly/20250310T030000Z-7.pgdump', bytes: 2_500_000,
    sha256: 'ab'.repeat(32), startedAt: '2025-03-10T03:00:00.000Z', endedAt: '2025-03-10T03:00:04.000Z', durationMs: 4000,
    exitCode: 0, signal: null, timedOut: false, stderrTail: '', verifiedAt: '2025-03-10T03:00:04.000Z', verifyLevel: 'restore',
    verification: { level: 'restore', counts: { 'public.items': 3 }, checks: [
      { name: 'checksum', ok: true, detail: 'sha256 ab…' }, { name: 'restore drill', ok: true, detail: 'restored into scratch database' },
    ] },
    prunedAt: null, pruneReason: null, offsite: null, ...over,
  };
}

describe('deploy backup output (pure)', () => {
  it('formats ages', () => {
    expect([5_000, 600_000, 7_200_000, 5 * 86_400_000].map(formatAge)).toEqual(['5 s', '10 min', '2 h', '5 d']);
  });

  it('shows each check of a run, and stderr only when it failed', () => {
    expect(formatRun(run())).toBe([
      'backup #7 of nightly (pg_dump): verified',
      '  file:   /srv/slipway/backups/shop/nightly/20250310T030000Z-7.pgdump',
      `  size:   2.5 MB in 4.00 s, sha256 ${'ab'.repeat(32)}`,
      '  ✓ checksum: sha256 ab…',
      '  ✓ restore drill: restored into scratch database',
    ].join('\n'));
    const failed = formatRun(run({ status: 'failed', reason: 'the dump exited with code 1', file: null, bytes: 100, verification: null, stderrTail: 'pg_dump: error: connection failed\n' }));
    expect(failed).toBe([
      'backup #7 of nightly (pg_dump): failed: the dump exited with code 1',
      '  output: 100 B written in 4.00 s, then removed',
      '  stderr (last lines):',
      '    pg_dump: error: connection failed',
    ].join('\n'));
  });

  it('lists jobs with last success, last verified age, sizes and what offsite does', () => {
    const overview: BackupsOverview = {
      notifications: false,
      runs: [run({ id: 8, status: 'failed', reason: 'timed out after 1000 ms; its process group was killed', file: null, bytes: null, startedAt: '2025-03-10T11:00:00.000Z' }), run()],
      jobs: [{
        job: 'nightly', app: 'shop', kind: 'pg_dump', schedule: '0 3 * * *', nextRunAt: '2025-03-11T03:00:00.000Z', running: null,
        retention: { daily: 7, weekly: 4, monthly: 12 },
        offsite: { mode: 'copy-only', note: 'copy-only: remote copies are never pruned', lastStatus: 'copied', lastAt: '2025-03-10T03:00:05.000Z', lastError: null },
        lastRun: run({ id: 8, status: 'failed', reason: 'timed out after 1000 ms; its process group was killed', file: null, bytes: null, startedAt: '2025-03-10T11:00:00.000Z', durationMs: 1000 }),
        lastSuccessAt: '2025-03-10T03:00:04.000Z',
        lastVerified: { id: 7, at: '2025-03-10T03:00:04.000Z', ageMs: 9 * 3_600_000, bytes: 2_500_000, level: 'restore' },
        kept: { count: 9, bytes: 21_000_000, verified: 9 },
      }],
    };
    expect(formatBackupList(overview, NOW)).toBe([
      'nightly  (app shop, pg_dump, schedule "0 3 * * *", next 2025-03-11T03:00:00.000Z)',
      '  last run:      #8 failed 60 min ago (1.00 s): timed out after 1000 ms; its process group was killed',
      '  last success:  9 h ago',
      '  last verified: #7, 9 h old (2.5 MB), checked by restore',
      '  kept:          9 backup(s), 21.0 MB (9 verified); retention 7 daily, 4 weekly, 12 monthly',
      '  offsite:       copy-only: remote copies are never pruned; last copied 2025-03-10T03:00:05.000Z',
      'notifications: off (set backups.notifyWebhook to hear about failures)',
      'recent runs:',
      formatRunLine(overview.runs[0]!),
      formatRunLine(overview.runs[1]!),
    ].join('\n'));
    expect(formatRunLine(overview.runs[0]!)).toMatch(/^ {2}#8 +nightly +failed +2025-03-10T11:00:00.000Z +- +4.00 s +schedule {2}timed out after 1000 ms/);
    expect(formatBackupList({ jobs: [], runs: [], notifications: false }, NOW)).toMatch(/^no backup jobs are configured/);
  });
});
