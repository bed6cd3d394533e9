import { describe, expect, it } from 'vitest';
import { DeploymentFeed } from '../../agent/rollout/feed.js';
import type { DeploymentEvent, DeploymentResult } from '../../contract/api.js';

const event = (step: string): DeploymentEvent => ({ type: 'event', deploymentId: 7, step, status: 'ok', message: null, at: '2026-12-01T00:00:00Z', elapsedMs: 1 });
const result = { type: 'result', deploymentId: 7, outcome: 'succeeded' } as DeploymentResult;

describe('DeploymentFeed', () => {
  it('abandon() ends every subscriber without a result line; a late subscriber gets the backlog and is ended at once', async () => {
    const feed = new DeploymentFeed(7);
    const seen: string[] = [];
    let ended = 0;
    feed.subscribe((line) => seen.push(line.type === 'event' ? line.step : 'result'), () => { ended += 1; });
    feed.push(event('starting'));
    feed.abandon();
    feed.abandon();
    feed.push(result);
    expect(seen).toEqual(['starting']);
    expect(ended).toBe(1);
    expect(await feed.done).toBeNull();

    const late: string[] = [];
    let lateEnded = false;
    feed.subscribe((line) => late.push(line.type), () => { lateEnded = true; });
    expect(late).toEqual(['event']);
    expect(lateEnded).toBe(true);
  });

  it('a result line ends the feed: abandon() after it does nothing, an unsubscribed stream is not ended', async () => {
    const feed = new DeploymentFeed(7);
    let ended = 0;
    const unsubscribe = feed.subscribe(() => undefined, () => { ended += 1; });
    unsubscribe();
    feed.subscribe(() => undefined, () => { ended += 10; });
    feed.push(result);
    feed.abandon();
    expect(ended).toBe(0);
    expect(await feed.done).toBe(result);
  });
});
