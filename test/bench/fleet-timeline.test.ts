import { describe, expect, it } from 'vitest';
import { abortRequestAt, abortSentAt, marksNote, pushTimings, revertMarks } from '../../scripts/bench-lib/fleet.js';

/** The fleet bench's pure readers of a revert's and a push's records (scripts/bench-lib/fleet.ts). */
describe('fleet bench timeline', () => {
  const t0 = Date.parse('2026-12-03T08:00:00.000Z');
  const at = (ms: number) => new Date(t0 + ms).toISOString();

  it('reads an aborted host\'s steps after the verdict from its events', () => {
    const events = [
      { step: 'watching', status: 'started', message: null, at: at(-900) },
      { step: 'abort', status: 'info', message: 'abort asked by root: h3 failed', at: at(12) },
      { step: 'watching', status: 'ok', message: 'failed: aborted: h3 failed', at: at(14) },
      { step: 'swap_back', status: 'started', message: null, at: at(20) },
      { step: 'swap_back', status: 'ok', message: 'nginx serves blue again', at: at(31) },
      { step: 'compensate', status: 'ok', message: 'stop green and mark abc bad', at: at(200) },
    ];
    expect(revertMarks(events, t0)).toEqual({ abort: 12, 'window end': 14, 'swap begun': 20, 'swap proven': 31, 'new slot stopped': 200 });
    expect(revertMarks([], t0)).toEqual({});
  });

  it('finds the controller\'s abort line and an agent\'s first abort request after a time', () => {
    const stdout = [
      'not json',
      JSON.stringify({ type: 'info', message: '  batch 1/1: h1, h2, h3' }),
      JSON.stringify({ type: 'info', message: '  stopping h1, h2: h3 failed', stopping: ['h1', 'h2'], abortSentAt: at(5) }),
    ].join('\n');
    expect(abortSentAt(stdout)).toBe(t0 + 5);
    expect(abortSentAt('')).toBeNull();
    const log = [
      JSON.stringify({ time: t0 - 10_000, msg: 'incoming request', req: { url: '/apps/sample/deployments/3/abort' } }),
      JSON.stringify({ time: t0 + 9, msg: 'incoming request', req: { url: '/apps/sample/deployments/4/abort' } }),
      JSON.stringify({ time: t0 + 11, msg: 'request completed', req: { url: '/apps/sample/deployments/4/abort' } }),
    ].join('\n');
    expect(abortRequestAt(log, t0)).toBe(t0 + 9);
    expect(abortRequestAt(log, t0 + 10)).toBeNull();
  });

  it('notes each mark\'s median and range over the runs, in the order of the medians', () => {
    expect(marksNote([{ b: 30, a: 10 }, { b: 20, a: 12 }, { b: 40 }])).toBe('a 10 (10–12), b 30 (20–40)');
  });

  it('takes the CLI\'s own total from a push\'s lines (single host: its result; fleet: its last line)', () => {
    expect(pushTimings(JSON.stringify({ type: 'result', outcome: 'succeeded', uploadMs: 80, totalMs: 900 }), t0).cliMs).toBe(900);
    expect(pushTimings(JSON.stringify({ type: 'info', outcome: 'succeeded', totalMs: 1500, phasesMs: { pack: 600 } }), t0)).toMatchObject({ cliMs: 1500, phasesMs: { pack: 600 } });
    expect(pushTimings('', t0).cliMs).toBeNull();
  });
});
