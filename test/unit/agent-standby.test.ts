import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AgentClient } from '../../controller/agent-client.js';
import { fakeChannel, jsonAnswer } from '../helpers/fake-channel.js';

/**
 * AgentClient.standby: a channel opened ahead of one JSON request (a fleet abort), so the request
 * goes out without a channel being opened first. Channels here are in-memory duplexes that answer
 * each request with one JSON body once its head and body have arrived.
 */
function channels(answer: unknown) {
  const opened: Duplex[] = [];
  const requests: { channel: number; head: string }[] = [];
  const open = async (): Promise<Duplex> => {
    const index = opened.length;
    const channel = fakeChannel({
      response: jsonAnswer(200, answer, 'OK'),
      complete: (received) => received.includes('\r\n\r\n') && received.endsWith('}'),
      onRequest: (received) => requests.push({ channel: index, head: received.split('\r\n')[0]! }),
      endAfterMs: 5,
    });
    opened.push(channel);
    return channel;
  };
  return { open, opened, requests };
}

const ABORTED = { deploymentId: 7, aborted: true };
const PATH = '/apps/shop/deployments/7/abort';

describe('agent client: a request on a channel opened ahead (fleet abort)', () => {
  it('sends the request on the channel opened by standby(), opening none when it is sent', async () => {
    const lab = channels(ABORTED);
    const client = new AgentClient(lab.open, 't'.repeat(43), 'tester');
    const standby = client.standby();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lab.opened).toHaveLength(1);
    expect(await standby.json('POST', PATH, { reason: 'h3 failed' })).toEqual(ABORTED);
    expect(lab.opened).toHaveLength(1);
    expect(lab.requests).toEqual([{ channel: 0, head: `POST ${PATH} HTTP/1.1` }]);
    // Used once: closing it now does not cut the request's channel short, and a second request gets a fresh channel.
    standby.close();
    expect(await standby.json('POST', PATH, { reason: 'again' })).toEqual(ABORTED);
    expect(lab.requests.map((r) => r.channel)).toEqual([0, 1]);
  });

  it('a channel that closed while it waited is replaced by a fresh one', async () => {
    const lab = channels(ABORTED);
    const client = new AgentClient(lab.open, 't'.repeat(43), 'tester');
    const standby = client.standby();
    await new Promise((resolve) => setImmediate(resolve));
    lab.opened[0]!.destroy();
    expect(await standby.json('POST', PATH, { reason: 'h3 failed' })).toEqual(ABORTED);
    expect(lab.requests).toEqual([{ channel: 1, head: `POST ${PATH} HTTP/1.1` }]);
  });

  it('close() drops an unused channel, also one still opening', async () => {
    const lab = channels(ABORTED);
    const client = new AgentClient(lab.open, 't'.repeat(43), 'tester');
    client.standby().close();
    const opened = client.standby();
    await new Promise((resolve) => setImmediate(resolve));
    opened.close();
    expect(lab.opened).toHaveLength(2);
    expect(lab.opened.every((c) => c.destroyed)).toBe(true);
    expect(lab.requests).toEqual([]);
  });
});
