import { describe, expect, it } from 'vitest';
import { RelayArrivals } from '../../agent/release/relay-arrivals.js';

const SHA = 'a'.repeat(64);

describe('relay arrivals: uploads a session may serve while they arrive', () => {
  it('registers at the first written byte, wakes an open waiting for it, follows the upload to its end', async () => {
    const arrivals = new RelayArrivals();
    const hooks = arrivals.track(SHA, 100);
    expect(arrivals.get(SHA)).toBeUndefined();
    const waiting = arrivals.waitFor(SHA, 30_000);
    hooks.written('/x/incoming/a.part', 10);
    const arrival = (await waiting)!;
    expect(arrival).toMatchObject({ sha256: SHA, bytes: 100, partFile: '/x/incoming/a.part', written: 10, received: false, ended: false, failed: false });
    const more = arrival.changed();
    hooks.written('/x/incoming/a.part', 100);
    await more;
    expect(arrival.written).toBe(100);
    const verified = arrival.changed();
    hooks.received();
    await verified;
    const settled: string[] = [];
    arrivals.whenSettled(SHA, () => settled.push('after'));
    expect(settled).toEqual([]);
    hooks.ended();
    expect(settled).toEqual(['after']);
    expect(arrival).toMatchObject({ received: true, ended: true, failed: false });
    expect(arrivals.get(SHA)).toBeUndefined();
    // Once ended, changed() no longer waits, and whenSettled runs at once.
    await arrival.changed();
    arrivals.whenSettled(SHA, () => settled.push('now'));
    expect(settled).toEqual(['after', 'now']);
  });

  it('an upload that ends before it was received has failed; a second upload of the same bytes does not displace the first', async () => {
    const arrivals = new RelayArrivals();
    const first = arrivals.track(SHA, 100);
    const second = arrivals.track(SHA, 100);
    first.written('/x/one.part', 5);
    second.written('/x/two.part', 7);
    const arrival = arrivals.get(SHA)!;
    expect(arrival.partFile).toBe('/x/one.part');
    second.ended();
    expect(arrivals.get(SHA)).toBe(arrival);
    const cut = arrival.changed();
    first.ended();
    await cut;
    expect(arrival.failed).toBe(true);
    expect(arrivals.get(SHA)).toBeUndefined();
  });

  it('waitFor gives up after waitMs when nothing arrives, and does not wait at all with 0', async () => {
    const arrivals = new RelayArrivals();
    expect(await arrivals.waitFor(SHA, 0)).toBeUndefined();
    expect(await arrivals.waitFor(SHA, 20)).toBeUndefined();
  });
});
