/**
 * RELIABILITY case 19: keep-alive traffic at ≥200 requests per second through nginx, plus one
 * long request (held open by the app until the rollback has finished), while `deploy switch` and then `deploy rollback` move the app between its two
 * running slots. No request may fail and the long request must complete: nginx reloads gracefully
 * (old workers finish what they hold) and the previous slot stays up through the switch.
 *
 * A reload makes nginx close idle keep-alive client connections; a GET sent on such a socket at
 * that instant gets a reset and succeeds when sent again (as a browser would). Those are counted
 * and printed separately, never folded into the successes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { longRequest, startLoad } from '../helpers/load.js';
import { liveView, stateFingerprint } from '../helpers/box.js';
import { releaseOfCommit } from '../helpers/state.js';

const RPS = 250;

describe('zero failed requests across a switch and a rollback (RELIABILITY 19)', () => {
  let stack: Stack;
  let firstSha: string;
  let secondSha: string;

  beforeAll(async () => {
    stack = await startStack();
    const first = await stack.deploy(['push']);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    firstSha = await stack.repo.head();
    secondSha = await stack.repo.commit({ 'message.txt': 'second\n' }, 'second');
    const second = await stack.deploy(['push']);
    expect(second.code, second.stderr + second.stdout).toBe(0);
    // green serves the second release; blue is kept warm with the first (keepPreviousWarm).
    expect(await liveView(stack)).toMatchObject({ release: releaseOfCommit(stack.home, APP, secondSha), slot: 'green' });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it(`${RPS} rps keep-alive + one request held open across deploy switch and deploy rollback: 0 failures`, async () => {
    const load = startLoad({ url: `${stack.publicUrl}/`, rps: RPS, maxDurationMs: 60_000, maxSockets: 16, timeoutMs: 5_000, tallyHeader: 'x-slipway-slot', headers: await stack.probeHeaders() });
    const long = longRequest(`${stack.publicUrl}/hold?key=long&maxMs=55000`, 58_000);
    const longStarted = Date.now();

    const switched = await stack.deploy(['switch', 'blue']);
    const switchedAt = Date.now();
    const rolledBack = await stack.deploy(['rollback']);
    const rolledBackAt = Date.now();
    // The long request still runs on green (live again after the rollback): let it answer now.
    const unheld = await stack.get('/unhold?key=long');
    const longAnswer = await long;
    const report = await load.stop();

    console.log(`load across switch + rollback: ${JSON.stringify({
      ...report,
      switchAtMs: switchedAt - longStarted, rollbackAtMs: rolledBackAt - longStarted,
      long: { status: longAnswer.status, ms: longAnswer.ms, slot: JSON.parse(longAnswer.body || '{}').slot },
    })}`);

    expect(switched.code, switched.stderr + switched.stdout).toBe(0);
    expect(rolledBack.code, rolledBack.stderr + rolledBack.stdout).toBe(0);
    expect(JSON.parse(unheld.body), 'the long request was still open on green when the rollback finished').toMatchObject({ slot: 'green', released: 1 });
    expect(longAnswer.status).toBe(200);
    expect(JSON.parse(longAnswer.body)).toMatchObject({ release: releaseOfCommit(stack.home, APP, secondSha), slot: 'green', released: true });

    expect(report.non2xx, JSON.stringify(report.statusCounts)).toBe(0);
    expect(report.errors, report.errorSamples.join('; ')).toBe(0);
    expect(report.skipped).toBe(0);
    expect(report.ok + report.retriedAfterReset).toBe(report.total);
    expect(report.achievedRps).toBeGreaterThanOrEqual(200);
    expect(report.durationMs).toBeLessThan(60_000);
    // Traffic really moved: both slots answered during the run, and green is live again.
    expect(report.tally.blue ?? 0, JSON.stringify(report.tally)).toBeGreaterThan(0);
    expect(report.tally.green ?? 0).toBeGreaterThan(0);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: releaseOfCommit(stack.home, APP, secondSha), slot: 'green' });
    expect(stateFingerprint(stack).liveSlot).toBe('green');
    expect(firstSha).not.toBe(secondSha);
  });
});
