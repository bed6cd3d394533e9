import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { Outbox, backoffMs } from '../../agent/notify/outbox.js';
import { NO_NOTIFICATIONS, notificationProblems, type NotificationsConfig } from '../../agent/notify/config.js';
import { endedEventName, jsonBody, slackBody, type NotifyEvent } from '../../agent/notify/events.js';
import { failureClass } from '../../agent/notify/delivery.js';

const event = (name: NotifyEvent['event'], app = 'shop'): NotifyEvent => ({
  event: name, app, env: null, host: 'box', at: '2026-12-02T00:00:00.000Z', deploymentId: 7, kind: 'deploy', releaseId: 'abcdefabcdef-123456123456',
  sha: 'a'.repeat(40), tag: 'v1.4.0', branch: 'main', actor: 'alice@laptop', outcome: 'succeeded', reason: null,
  stepDurationsMs: { starting: 1200, switch: 300 }, url: 'http://127.0.0.1:8080',
});

describe('notification outbox', () => {
  const dirs: string[] = [];
  const dbs: Db[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  function outbox(config: Partial<NotificationsConfig>, clock: { now: number }): Outbox {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-'));
    dirs.push(dir);
    const db = openDatabase(path.join(dir, 'agent.db'));
    dbs.push(db);
    return new Outbox(db, { ...NO_NOTIFICATIONS, ...config }, () => new Date(clock.now));
  }

  it('delivers in order per webhook: a later event waits while an earlier one is retried', () => {
    const clock = { now: Date.parse('2026-12-02T00:00:00Z') };
    const box = outbox({ webhooks: { a: { url: 'http://x', format: 'json' }, b: { url: 'http://y', format: 'slack', events: ['rollout_succeeded'] } }, baseDelayMs: 1000, maxAttempts: 3 }, clock);
    expect(box.enqueue(event('rollout_started'))).toBe(1);
    expect(box.enqueue(event('rollout_succeeded'))).toBe(2);
    let due = box.due();
    expect(due.map((r) => [r.webhook, r.event])).toEqual([['a', 'rollout_started'], ['b', 'rollout_succeeded']]);
    expect(box.attemptFailed(due[0]!, 'HTTP 500')).toBe('retry');
    box.delivered(due[1]!.id);
    // a's head is backing off: its second event is not sent ahead of it.
    expect(box.due()).toEqual([]);
    clock.now += 1000;
    due = box.due();
    expect(due.map((r) => r.event)).toEqual(['rollout_started']);
    expect(box.attemptFailed(due[0]!, 'timeout')).toBe('retry');
    clock.now += 2000;
    expect(box.attemptFailed(box.due()[0]!, 'timeout')).toBe('failed');
    // Given up: the next event goes, and the status says what happened.
    expect(box.due().map((r) => r.event)).toEqual(['rollout_succeeded']);
    const [a, b] = box.status();
    expect(a).toMatchObject({ webhook: 'a', pending: 1, failed: 1, lastFailure: { event: 'rollout_started', error: 'timeout' }, retrying: null });
    expect(b).toMatchObject({ webhook: 'b', pending: 0, delivered: 1 });
  });

  it('filters by app and event; stores the rendered body, never the URL', () => {
    const box = outbox({ webhooks: { a: { url: 'http://secret.example/T0/XYZ', format: 'slack', apps: ['blog'] } } }, { now: Date.now() });
    expect(box.enqueue(event('rollout_started', 'shop'))).toBe(0);
    expect(box.enqueue(event('rollout_started', 'blog'))).toBe(1);
    expect(JSON.stringify(box.rows())).not.toContain('secret.example');
  });

  it('filters by environment: a production channel hears production only', () => {
    const box = outbox({ webhooks: { prod: { url: 'http://hooks.example/prod', format: 'json', envs: ['production'] } } }, { now: Date.now() });
    expect(box.enqueue({ ...event('rollout_started'), env: 'staging' })).toBe(0);
    expect(box.enqueue(event('rollout_started'))).toBe(0);
    expect(box.enqueue({ ...event('rollout_failed'), env: 'production' })).toBe(1);
    expect(JSON.parse(box.rows()[0]!.body)).toMatchObject({ event: 'rollout_failed', env: 'production' });
  });

  it('backoff doubles up to its cap', () => {
    expect([1, 2, 3, 4, 10].map((n) => backoffMs(n, 100, 500))).toEqual([100, 200, 400, 500, 500]);
  });

  it('webhook config needs exactly one URL source', () => {
    expect(notificationProblems({ ...NO_NOTIFICATIONS, webhooks: { a: { format: 'json' }, b: { url: 'http://x', urlFile: '/f', format: 'json' } } }))
      .toEqual(['notifications/webhooks/a: give exactly one of "url" or "urlFile"', 'notifications/webhooks/b: give exactly one of "url" or "urlFile"']);
  });
});

describe('notification bodies', () => {
  it('Slack text names app, kind, release, tag, host, outcome, actor and time taken', () => {
    expect(slackBody(event('rollout_succeeded')).text).toBe(
      ':white_check_mark: shop deploy abcdefabcdef-123456123456 (v1.4.0) on box succeeded (by alice@laptop, 1.5 s) http://127.0.0.1:8080');
  });
  it('the JSON body carries every field', () => {
    expect(jsonBody(event('swapped_back'))).toMatchObject({ event: 'swapped_back', sha: 'a'.repeat(40), tag: 'v1.4.0', stepDurationsMs: { starting: 1200 } });
  });
  it('a finished deployment maps to its event', () => {
    expect(endedEventName('deploy', 'succeeded', null)).toBe('rollout_succeeded');
    expect(endedEventName('deploy', 'failed', 'before_switch')).toBe('rollout_failed');
    expect(endedEventName('deploy', 'failed', 'after_switch')).toBe('failed_after_switch');
    expect(endedEventName('deploy', 'rolled_back', 'after_switch')).toBe('swapped_back');
    expect(endedEventName('rollback', 'succeeded', null)).toBe('rolled_back');
  });
  it('delivery errors are recorded by class, never with the URL', () => {
    expect(failureClass(Object.assign(new TypeError('fetch failed http://secret'), { cause: { code: 'ECONNREFUSED' } }))).toBe('network error ECONNREFUSED');
    expect(failureClass(Object.assign(new Error('x'), { name: 'TimeoutError' }))).toBe('timeout');
  });
});
