import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { agentRequest, dumpDatabase, secretHits } from '../helpers/box.js';
import { waitFor } from '../helpers/wait.js';
import type { NotificationsStatus } from '../../contract/api.js';

// Deploy notifications through the outbox, with real receivers on loopback: in order, with the
// release's fields, retried while a receiver is down or failing, kept across an agent restart,
// and never carrying a secret.

interface JsonEvent { event: string; app: string; releaseId: string; sha: string; actor: string; kind: string; outcome: string | null; stepDurationsMs: Record<string, number>; summary: string }

async function notificationStatus(stack: Stack): Promise<NotificationsStatus> {
  const answer = await agentRequest(stack, 'GET', '/notifications');
  expect(answer.status, answer.text).toBe(200);
  return answer.json as unknown as NotificationsStatus;
}

describe('deploy notifications (outbox)', () => {
  let stack: Stack;
  let team: Receiver;
  let chat: Receiver;
  let flaky: Receiver;
  let secretPath: string;

  beforeAll(async () => {
    // "team" is down when the agent starts and while the first rollout runs.
    team = await startReceiver({ listening: false });
    chat = await startReceiver();
    flaky = await startReceiver();
    flaky.answer(500);
    secretPath = `/hooks/${randomBytes(12).toString('hex')}`;
    const dir = await fs.mkdtemp('/tmp/slipway-hook-');
    const urlFile = path.join(dir, 'team.url');
    await fs.writeFile(urlFile, `${team.url(secretPath)}\n`, { mode: 0o600 });
    stack = await startStack({
      agentConfig: {
        notifications: {
          webhooks: {
            team: { urlFile, format: 'json' },
            chat: { url: chat.url(`${secretPath}-chat`), format: 'slack', events: ['rollout_succeeded', 'swapped_back', 'rollout_failed'] },
            flaky: { url: flaky.url(), format: 'json', events: ['rollout_started'], maxAttempts: 3 },
          },
          baseDelayMs: 50, maxDelayMs: 200, pollMs: 50, maxAttempts: 1000, timeoutMs: 1000,
        },
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await Promise.all([team, chat, flaky].map((r) => r?.close()));
  });

  it('a push is announced in order; a receiver down during the rollout gets every event after an agent restart', async () => {
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    // The Slack-format receiver is up: its one subscribed event arrives as text.
    const slack = await waitFor(() => chat.received[0], { description: 'the chat webhook message', timeoutMs: 15_000 });
    expect((slack.body as { text: string }).text).toMatch(/sample deploy [0-9a-f]{12}-[0-9a-f]{12} on .* succeeded \(by /);
    // "team" is down: both events wait in the outbox, retried.
    const waiting = await waitFor(async () => {
      const s = (await notificationStatus(stack)).webhooks.find((w) => w.webhook === 'team')!;
      return s.pending === 2 && s.retrying ? s : null;
    }, { description: 'team events pending and retrying', timeoutMs: 15_000 });
    expect(waiting.retrying!.lastError).toMatch(/network error ECONNREFUSED/);

    await stack.restartAgent();
    await team.up();
    await waitFor(() => team.received.length >= 2, { description: 'both team events delivered after the restart', timeoutMs: 20_000 });
    const events = team.received.map((r) => r.body as JsonEvent);
    expect(events.map((e) => e.event)).toEqual(['rollout_started', 'rollout_succeeded']);
    const head = await stack.repo.head();
    expect(events[1]).toMatchObject({ app: 'sample', kind: 'deploy', sha: head, outcome: 'succeeded', summary: 'succeeded' });
    expect(events[1]!.actor).toMatch(/@/);
    expect(Object.keys(events[1]!.stepDurationsMs)).toEqual(expect.arrayContaining(['preflight', 'starting']));
    expect(team.received.every((r) => r.path === secretPath)).toBe(true);
    const status = (await notificationStatus(stack)).webhooks.find((w) => w.webhook === 'team')!;
    expect(status).toMatchObject({ pending: 0, delivered: 2, failed: 0, retrying: null });
  });

  it('a receiver that keeps answering 500 is retried, then given up and reported', async () => {
    const s = await waitFor(async () => (await notificationStatus(stack)).webhooks.find((w) => w.webhook === 'flaky' && w.failed === 1),
      { description: 'the flaky webhook given up', timeoutMs: 15_000 });
    expect(s.lastFailure).toMatchObject({ event: 'rollout_started', error: 'HTTP 500' });
    expect(flaky.received.length).toBe(3);
    const shown = await stack.deploy(['status']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/notifications: flaky gave up on 1 event\(s\), last rollout_started at .*: HTTP 500/);
  });

  it('no secret reaches the agent log, the outbox table or the API', async () => {
    const api = JSON.stringify(await notificationStatus(stack));
    const log = readFileSync(path.join(stack.dir, 'agent.log'), 'utf8');
    expect(secretHits({ api, log, db: dumpDatabase(stack.home) }, [secretPath.slice(7)])).toEqual([]);
    const env = readFileSync(stack.envFile, 'utf8').trim().split('=')[1]!;
    const bodies = JSON.stringify([...team.received, ...chat.received, ...flaky.received].map((r) => r.body));
    expect(secretHits({ bodies }, [env])).toEqual([]);
  });
});
