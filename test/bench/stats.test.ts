import { describe, expect, it } from 'vitest';
import { analyzeTransition, parseWrk, percentile, ratioOf, sameCommit, summarize, totalSocketErrors, type Sample } from '../../scripts/bench-lib/stats.js';
import { goalMet, makeFigure, renderTable } from '../../scripts/bench-lib/report.js';

// The bench's arithmetic: what a figure, a gap and a ratio mean. Timings themselves are never
// asserted anywhere (issue #5): they only appear in the bench's output.

const OLD = 'a'.repeat(40);
const NEW = 'b'.repeat(40);
function sample(sentAt: number, release: string | null, status = 200): Sample {
  return { sentAt, doneAt: sentAt + 1, status, release, error: status === 0 ? 'ECONNREFUSED' : null };
}

describe('summaries', () => {
  it('gives median (mean of the middle two for an even count), min, max and a nearest-rank p95', () => {
    expect(summarize([5, 1, 3])).toEqual({ n: 3, median: 3, min: 1, max: 5, p95: 5 });
    expect(summarize([4, 1, 3, 2])?.median).toBe(2.5);
    expect(summarize([])).toBeNull();
    expect(summarize([Number.NaN, 2])?.n).toBe(1);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 50)).toBe(50);
  });

  it('takes the ratio of the medians and refuses a zero baseline', () => {
    expect(ratioOf(summarize([2, 4, 6]), summarize([8]))).toBe(0.5);
    expect(ratioOf(summarize([2]), summarize([0]))).toBeNull();
    expect(ratioOf(null, summarize([1]))).toBeNull();
  });
});

describe('analyzeTransition', () => {
  it('times the first answer of the new release and the moment the old one stopped answering', () => {
    const samples = [sample(100, OLD), sample(105, OLD), sample(110, NEW), sample(115, OLD), sample(120, NEW), sample(125, NEW)];
    const t = analyzeTransition(samples, { from: 100, to: 130, oldRelease: OLD, newRelease: NEW });
    expect(t.firstMs).toBe(11);
    expect(t.settledMs).toBe(21);
    expect(t.misses).toBe(0);
    expect(t.maxGapMs).toBe(0);
    expect(t.probes).toBe(6);
  });

  it('measures a gap from the first failed probe to the next answer by either release', () => {
    const samples = [sample(0, OLD), sample(5, null, 0), sample(10, null, 502), sample(15, OLD, 200), sample(20, null, 0), sample(40, NEW)];
    const t = analyzeTransition(samples, { from: 0, to: 50, oldRelease: OLD, newRelease: NEW });
    expect(t.misses).toBe(3);
    expect(t.maxGapMs).toBe(20);
  });

  it('counts a 200 from a third release as a miss, and a gap still open at the end runs to the end', () => {
    const samples = [sample(0, OLD), sample(5, 'c'.repeat(40)), sample(10, null, 0)];
    const t = analyzeTransition(samples, { from: 0, to: 30, oldRelease: OLD, newRelease: NEW });
    expect(t.misses).toBe(2);
    expect(t.maxGapMs).toBe(25);
    expect(t.firstMs).toBeNull();
  });

  it('ignores probes sent outside the window', () => {
    const samples = [sample(-10, null, 0), sample(0, OLD), sample(10, NEW), sample(99, null, 0)];
    const t = analyzeTransition(samples, { from: 0, to: 50, oldRelease: OLD, newRelease: NEW });
    expect(t.misses).toBe(0);
    expect(t.probes).toBe(2);
  });
});

describe('parseWrk', () => {
  it('reads totals, socket errors and non-2xx responses', () => {
    const output = `Running 30s test @ http://127.0.0.1:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    2.10ms  40.00ms   90.00%
  24631 requests in 2.03s, 6.13MB read
  Socket errors: connect 0, read 28, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  12133.00
`;
    const parsed = parseWrk(output)!;
    expect(parsed).toEqual({ requests: 24631, durationS: 2.03, non2xx: 7, socketErrors: { connect: 0, read: 28, write: 1, timeout: 2 } });
    expect(totalSocketErrors(parsed)).toBe(31);
  });

  it('treats absent error lines as zero and rejects output without a summary', () => {
    expect(parseWrk('  1948 requests in 2.10s, 6.13MB read\n')).toEqual({ requests: 1948, durationS: 2.1, non2xx: 0, socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 } });
    expect(parseWrk('unable to connect to 127.0.0.1:1 Connection refused')).toBeNull();
  });
});

describe('figures and goals', () => {
  it('judges ratio goals against the baseline median and absolute goals against the figure', () => {
    expect(goalMet({ kind: 'ratioAtMost', value: 0.5 }, summarize([40]), summarize([100]))).toBe(true);
    expect(goalMet({ kind: 'ratioAtLeast', value: 0.9 }, summarize([80]), summarize([100]))).toBe(false);
    expect(goalMet({ kind: 'atMost', value: 80 }, summarize([81]), null)).toBe(false);
    expect(goalMet({ kind: 'zero' }, summarize([0, 0, 1]), null)).toBe(false);
    expect(goalMet({ kind: 'notAboveBaseline' }, summarize([3]), summarize([3]))).toBe(true);
    expect(goalMet({ kind: 'ratioAtMost', value: 2 }, summarize([]), summarize([1]))).toBeNull();
  });

  it('renders every figure with its baseline, ratio and verdict', () => {
    const figure = makeFigure({
      id: 'x', section: '4. Switch latency', title: 'switch (ms)', unit: 'ms',
      slipway: { samples: [30, 40, 50] }, baseline: { label: 'bare reload', samples: [20] }, goal: { kind: 'ratioAtMost', value: 1.5 },
    });
    expect(figure.ratio).toBe(2);
    expect(figure.goal).toEqual({ text: '≤ 1.5× bare reload', met: false });
    const table = renderTable([figure]);
    expect(table).toContain('[4. Switch latency]');
    expect(table).toMatch(/switch \(ms\)\s+40 ms \(30–50\)\s+bare reload\s+20 ms\s+2\.00×\s+≤ 1\.5× bare reload\s+MISSED/);
  });
});

describe('release labels', () => {
  it('match a Slipway release id (<commit12>-<digest12>) to its commit, and a full SHA to itself', () => {
    const sha = `${'c'.repeat(12)}${'d'.repeat(28)}`;
    expect(sameCommit(`${'c'.repeat(12)}-${'e'.repeat(12)}`, sha)).toBe(true);
    expect(sameCommit(sha, sha)).toBe(true);
    expect(sameCommit(`${'f'.repeat(12)}-${'e'.repeat(12)}`, sha)).toBe(false);
    expect(sameCommit(null, sha)).toBe(false);
    expect(sameCommit('unknown', 'unknown')).toBe(true);
    expect(sameCommit('unknown-release', 'unknown-other')).toBe(false);
  });

  it('count a probe answered by the new commit\'s release id as new in a transition', () => {
    const id = `${NEW.slice(0, 12)}-${'e'.repeat(12)}`;
    const t = analyzeTransition([sample(0, OLD), sample(5, id)], { from: 0, to: 10, oldRelease: OLD, newRelease: NEW });
    expect(t).toMatchObject({ misses: 0, maxGapMs: 0, firstMs: 6 });
  });
});
