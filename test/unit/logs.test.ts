import { getEventListeners } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogFollowLine } from '../../contract/api.js';
import { AppLogReader } from '../../agent/logs/app-logs.js';
import { entriesSince, mergeStreams, parseLogLines } from '../../agent/logs/log-line.js';
import { rotationSteps } from '../../agent/logs/rotation.js';
import { formatEntry, formatFollowLine, formatLogs, parseSince } from '../../controller/commands/logs.js';
import { waitFor } from '../helpers/wait.js';

describe('log lines (agent/logs/log-line.ts)', () => {
  it('reads PM2\'s date prefix; a line without one takes the time of the line before', () => {
    expect(parseLogLines([
      'before any date',
      '2026-12-02T15:30:00.123+00:00: first',
      'continued',
      '2026-12-02T16:30:00.000+01:00: second: with a colon',
    ], 'out')).toEqual([
      { time: null, stream: 'out', text: 'before any date' },
      { time: '2026-12-02T15:30:00.123Z', stream: 'out', text: 'first' },
      { time: '2026-12-02T15:30:00.123Z', stream: 'out', text: 'continued' },
      { time: '2026-12-02T15:30:00.000Z', stream: 'out', text: 'second: with a colon' },
    ]);
    expect(parseLogLines(['next'], 'err', '2026-01-01T00:00:00.000Z')).toEqual([{ time: '2026-01-01T00:00:00.000Z', stream: 'err', text: 'next' }]);
    expect(parseLogLines(['x'.repeat(5000)], 'out')[0]!.text).toHaveLength(2001);
  });

  it('--since keeps lines at or after the cutoff, and none without a time', () => {
    const entries = parseLogLines(['undated', '2026-12-02T10:00:00.000Z: old', '2026-12-02T11:00:00.000Z: new'], 'out');
    expect(entriesSince(entries, Date.parse('2026-12-02T11:00:00.000Z')).map((e) => e.text)).toEqual(['new']);
    expect(entriesSince(entries, null)).toHaveLength(3);
  });

  it('merges stdout and stderr in time order, each stream keeping its own order', () => {
    const out = parseLogLines(['2026-12-02T10:00:00.000Z: o1', '2026-12-02T10:00:02.000Z: o2', '2026-12-02T10:00:02.000Z: o3'], 'out');
    const err = parseLogLines(['2026-12-02T10:00:01.000Z: e1', '2026-12-02T10:00:02.000Z: e2'], 'err');
    expect(mergeStreams(out, err).map((e) => e.text)).toEqual(['o1', 'e1', 'o2', 'o3', 'e2']);
  });
});

describe('log rotation plan (agent/logs/rotation.ts)', () => {
  it('drops the oldest, shifts the others, and the file becomes .1', () => {
    expect(rotationSteps('/p/web-out.log', 3)).toEqual([
      { op: 'remove', path: '/p/web-out.log.3' },
      { op: 'rename', from: '/p/web-out.log.2', to: '/p/web-out.log.3' },
      { op: 'rename', from: '/p/web-out.log.1', to: '/p/web-out.log.2' },
      { op: 'rename', from: '/p/web-out.log', to: '/p/web-out.log.1' },
    ]);
    expect(rotationSteps('/p/a.log', 1)).toEqual([{ op: 'remove', path: '/p/a.log.1' }, { op: 'rename', from: '/p/a.log', to: '/p/a.log.1' }]);
  });
});

describe('deploy logs output (controller/commands/logs.ts)', () => {
  it('parses --since durations up to a year', () => {
    expect(['30s', '10m', '2h', '7d'].map(parseSince)).toEqual([30, 600, 7200, 604_800]);
    for (const bad of ['', '10', 'm', '0m', '-1h', '1w', '10 m', '367d', 'yesterday']) expect(parseSince(bad)).toBeNull();
  });

  it('shows each line with its time, process and stream', () => {
    expect(formatEntry('web', { time: '2026-12-02T10:00:00.000Z', stream: 'err', text: 'boom' })).toBe('2026-12-02T10:00:00.000Z web err| boom');
    expect(formatEntry('web', { time: null, stream: 'out', text: 'old' })).toBe(`${' '.repeat(24)} web out| old`);
    expect(formatLogs({
      app: 'shop', slot: 'blue', releaseId: '0123456789abcdef0123456789abcdef01234567',
      processes: [
        { name: 'web', pm2Name: 'shop-blue', out: [], err: [], entries: [{ time: '2026-12-02T10:00:00.000Z', stream: 'out', text: 'up' }] },
        { name: 'worker', pm2Name: 'shop-blue-worker', out: [], err: [], entries: [] },
      ],
    })).toBe([
      'shop/blue (0123456789ab) web (shop-blue):',
      '  2026-12-02T10:00:00.000Z web out| up',
      'shop/blue (0123456789ab) worker (shop-blue-worker):',
      '  (no output)',
    ].join('\n'));
  });

  it('says when a follow moves to the new live slot, and names the slot of each line after', () => {
    expect(formatFollowLine({ type: 'switch', from: 'blue', to: 'green', releaseId: 'fedcba9876543210fedcba9876543210fedcba98', at: '2026-12-02T10:00:00.000Z' }, true))
      .toBe('-- 2026-12-02T10:00:00.000Z: traffic moved from blue to green (fedcba987654); following green now');
    expect(formatFollowLine({ type: 'line', slot: 'green', process: 'web', time: null, stream: 'out', text: 'hi' }, true)).toBe(`${' '.repeat(24)} green/web out| hi`);
    expect(formatFollowLine({ type: 'rotated', slot: 'green', process: 'web', stream: 'out' }, false)).toBe('-- green web out log rotated; reading on in the new file');
  });

  it('says when the agent ended a follow this side left unread', () => {
    expect(formatFollowLine({ type: 'fell_behind', unreadBytes: 9_000_000, at: '2026-12-02T10:00:00.000Z' }, false))
      .toBe('-- 2026-12-02T10:00:00.000Z: the agent ended the follow: 9.0 MB of log lines were left unread');
  });
});

describe('following logs (agent/logs/app-logs.ts)', () => {
  it('a long follow does not gather an abort listener per poll, and still sends new lines', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-follow-'));
    try {
      const outLog = path.join(dir, 'web-out.log');
      await fs.writeFile(outLog, '2026-12-02T10:00:00.000Z: before\n');
      const stop = new AbortController();
      let polls = 0;
      let mostListeners = 0;
      const reader = new AppLogReader({
        // Asked once per poll (no slot named: the follow watches for a switch).
        liveSlot: () => {
          polls += 1;
          mostListeners = Math.max(mostListeners, getEventListeners(stop.signal, 'abort').length);
          return 'blue';
        },
        releaseOf: () => null,
        sources: async () => [{ name: 'web', pm2Name: 'shop-blue', outLog, errLog: null }],
        mask: async () => (line: string) => line,
        pollMs: 1,
      });
      const lines: LogFollowLine[] = [];
      const following = reader.follow('shop', { lines: 10 }, (line) => lines.push(line), stop.signal);
      await waitFor(() => polls >= 300, { timeoutMs: 20_000, description: '300 polls of the follow' });
      await fs.appendFile(outLog, '2026-12-02T10:00:01.000Z: after\n');
      await waitFor(() => lines.some((l) => l.type === 'line' && l.text === 'after'), { description: 'the new line' });
      stop.abort();
      await following;
      expect(mostListeners).toBeLessThanOrEqual(1);
      expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0);
      expect(lines.filter((l) => l.type === 'line').map((l) => l.type === 'line' && l.text)).toEqual(['before', 'after']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
