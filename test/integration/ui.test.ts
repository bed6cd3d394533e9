/**
 * Issue 14: `deploy ui` against a real stack (sshd, agent, nginx, PM2, SQLite), driven in a real
 * headless Chromium (Debian's, through playwright-core): the page shows the live release after a
 * push, a rollback taken from the page with the keyboard moves nginx's traffic, and actions
 * without the page's CSRF token (or from another Host) are refused. Screenshots are kept under
 * test/artifacts/ui/ (gitignored).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { APP, startStack, type Stack } from '../helpers/stack.js';
import { CONTROLLER_MAIN, REPO_ROOT } from '../helpers/agent-process.js';
import { releaseOfCommit } from '../helpers/state.js';
import { liveView } from '../helpers/box.js';
import { waitFor } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const ARTIFACTS = path.join(REPO_ROOT, 'test', 'artifacts', 'ui');

interface UiProcess { child: ChildProcess; url: string; origin: string; output(): string; exited: Promise<number | null> }

/** Starts the built `deploy ui` in the app's repository and waits (with a deadline) for the URL it prints. */
async function startUi(stack: Stack): Promise<UiProcess> {
  const child = spawn(process.execPath, [CONTROLLER_MAIN, 'ui', '--port', '0'], {
    cwd: stack.repo.dir, env: { ...process.env, SSH_AUTH_SOCK: '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`deploy ui exited ${child.exitCode}: ${stderr}`);
    return /^http:\/\/127\.0\.0\.1:\d+\/\?key=[A-Za-z0-9_-]+$/m.exec(stdout)?.[0];
  }, { description: 'deploy ui to print its URL', timeoutMs: 20_000 });
  return { child, url, origin: new URL(url).origin, output: () => stdout + stderr, exited };
}

/** A raw request to the page's server with headers a browser would never let a page set (Host). */
function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('deploy ui in a real browser (real stack)', () => {
  let stack: Stack;
  let ui: UiProcess;
  let browser: Browser;
  let page: Page;
  let token: string;
  const releases: string[] = [];
  /** Every answer of the page's /api, to prove the agent token never reached the browser. */
  const apiBodies: string[] = [];

  beforeAll(async () => {
    // One backup job of the app, run once, so the page has a verified backup to show.
    stack = await startStack({ agentConfig: { backups: { jobs: { files: { app: APP, schedule: '0 3 * * *', kind: 'command', command: ['cat', '/etc/os-release'] } } } } });
    token = (await fs.readFile(path.join(stack.dir, 'agent.token'), 'utf8')).trim();
    const shaA = await stack.repo.head();
    const shaB = await stack.repo.commit({ 'message.txt': 'B\n' }, 'B');
    for (const sha of [shaA, shaB]) {
      const pushed = await stack.deploy(['push', '--sha', sha]);
      expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
      releases.push(releaseOfCommit(stack.home, APP, sha));
    }
    const backup = await stack.deploy(['backup', 'run', 'files']);
    expect(backup.code, backup.stderr + backup.stdout).toBe(0);
    ui = await startUi(stack);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('response', (response) => {
      if (new URL(response.url()).pathname.startsWith('/api/')) void response.text().then((text) => apiBodies.push(text), () => undefined);
    });
    await fs.mkdir(ARTIFACTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (ui && ui.child.exitCode === null) {
      ui.child.kill('SIGTERM');
      await ui.exited;
    }
    await stack?.stop();
  });

  it('shows the live release, slots, history with step timings, releases, backups and DORA figures after a push', async () => {
    const [a, b] = releases as [string, string];
    await page.goto(ui.url);
    // The key left the address bar for an HttpOnly cookie.
    expect(page.url()).toBe(`${ui.origin}/`);
    const cookies = await page.context().cookies();
    expect(cookies.map((c) => ({ httpOnly: c.httpOnly, sameSite: c.sameSite }))).toEqual([{ httpOnly: true, sameSite: 'Strict' }]);

    await waitFor(async () => (await page.locator('#live-release').textContent()) === b, { description: 'the page to show release B live', timeoutMs: 15_000 });
    expect(await liveView(stack)).toMatchObject({ status: 200, release: b });
    expect(await page.locator('#slots tbody tr').count()).toBe(2);
    expect(await page.locator('#slots tr[data-slot]', { hasText: '(live)' }).locator('code').textContent()).toBe(b);
    const history = page.locator('#history tbody tr');
    expect(await history.count()).toBe(2);
    expect(await history.first().textContent()).toMatch(/deploy.*succeeded.*\d+ steps/);
    // Per-step timings open with the keyboard too: a native <details>.
    await history.first().locator('summary').focus();
    await page.keyboard.press('Enter');
    expect(await history.first().locator('details ul li').allTextContents()).toEqual(expect.arrayContaining([expect.stringMatching(/^switching \d+ ms$/)]));
    await history.first().getByRole('button', { name: 'Show events' }).click();
    await waitFor(async () => (await history.first().locator('ol.events li').count()) > 3, { description: 'the deployment\'s events', timeoutMs: 10_000 });
    expect(await history.first().locator('ol.events').textContent()).toMatch(/✓ switching \d+ ms\s+nginx serves green/);
    expect(await page.locator(`#releases tr[data-release="${a}"]`).count()).toBe(1);
    expect(await page.locator('#dora').textContent()).toMatch(/Deployment frequency\s*2 in 30 d/);
    expect(await page.locator('#backup-jobs tr[data-job="files"]').textContent()).toMatch(/#1 verified.*#1 \d+ s ago, .*checked by \S+/);
    expect(await page.locator('#backup-runs').textContent()).toMatch(/#1files\s*verified✓ /);
    expect(await page.locator('#problem').isHidden()).toBe(true);
    // Every control has a label a screen reader reads out, every button a name.
    expect(await page.evaluate(() => [...document.querySelectorAll<HTMLInputElement>('input, select, textarea')].filter((el) => el.labels?.length === 0).map((el) => el.id))).toEqual([]);
    expect(await page.evaluate(() => [...document.querySelectorAll('button')].filter((b) => !b.textContent?.trim()).length)).toBe(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'status.png'), fullPage: true });
  });

  it('a rollback taken from the page with the keyboard, confirmed with a reason, moves nginx\'s traffic', async () => {
    const [a, b] = releases as [string, string];
    const button = page.getByRole('button', { name: 'Roll back…' });
    await button.focus();
    await page.keyboard.press('Enter');
    expect(await page.locator('#rollback-dialog').getAttribute('open')).not.toBeNull();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('rollback-reason');
    // Escape cancels: nothing is sent, focus goes back to the button.
    await page.keyboard.press('Escape');
    expect(await page.locator('#rollback-dialog').getAttribute('open')).toBeNull();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('rollback-open');
    // Keyboard focus is visible.
    expect(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).toBe('solid');
    expect(await liveView(stack)).toMatchObject({ release: b });

    await page.keyboard.press('Enter');
    await page.keyboard.type('checkout broken on B');
    await page.keyboard.press('Enter');
    await waitFor(async () => /succeeded/.test((await page.locator('#progress-result').textContent()) ?? ''), {
      description: 'the page to report the rollback succeeded', timeoutMs: 60_000,
    });
    expect(await liveView(stack)).toMatchObject({ status: 200, release: a });
    expect(await page.locator('#progress-lines').textContent()).toMatch(/switching/);
    await waitFor(async () => (await page.locator('#live-release').textContent()) === a, { description: 'the page to show release A live', timeoutMs: 15_000 });
    const latest = page.locator('#history tbody tr').first();
    expect(await latest.textContent()).toMatch(/rollback.*succeeded.*reason: checkout broken on B/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'after-rollback.png'), fullPage: true });
    const cli = await stack.deploy(['history', '-n', '1']);
    expect(cli.stdout).toContain('note: checkout broken on B');
  });

  it('a switch back to the warm slot, confirmed with a reason, moves traffic again and records the reason', async () => {
    const [, b] = releases as [string, string];
    await page.getByRole('button', { name: 'Switch to green…' }).click();
    expect(await page.locator('#switch-summary').textContent()).toContain(`to green (${b.slice(0, 25)})`);
    // No reason, no switch: the browser keeps the dialog open.
    await page.getByRole('button', { name: 'Switch to green', exact: true }).click();
    expect(await page.locator('#switch-dialog').getAttribute('open')).not.toBeNull();
    await page.getByLabel('Reason (recorded in the history)').fill('B fixed by config');
    await page.getByRole('button', { name: 'Switch to green', exact: true }).click();
    await waitFor(async () => /#\d+ switch succeeded/.test((await page.locator('#progress-result').textContent()) ?? ''), {
      description: 'the page to report the switch succeeded', timeoutMs: 60_000,
    });
    expect(await liveView(stack)).toMatchObject({ status: 200, release: b, slot: 'green' });
    await waitFor(async () => /switch.*succeeded.*reason: B fixed by config/.test((await page.locator('#history tbody tr').first().textContent()) ?? ''), {
      description: 'the history row of the switch with its reason', timeoutMs: 15_000,
    });
  });

  it('actions without the page\'s CSRF token, from another origin or to another Host are refused; traffic stays', async () => {
    const [, b] = releases as [string, string];
    const attempt = (headers: Record<string, string>) => page.evaluate(async (h) => {
      const response = await fetch('/api/apps/sample/switch', { method: 'POST', headers: { 'content-type': 'application/json', ...h }, body: JSON.stringify({ slot: 'blue', reason: 'forged' }) });
      return { status: response.status, body: await response.json() as { error: string } };
    }, headers);
    // From the page itself (its session cookie and Origin go along), but without or with a wrong token.
    expect(await attempt({})).toMatchObject({ status: 403, body: { error: 'csrf_token_invalid' } });
    expect(await attempt({ 'x-slipway-csrf': 'guessed' })).toMatchObject({ status: 403, body: { error: 'csrf_token_invalid' } });
    // Another local site (another port of 127.0.0.1 is the same site, so SameSite lets the cookie
    // go along) posting a form at the page: refused for its Origin.
    const attacker = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form method="post" action="${ui.origin}/api/apps/sample/switch" enctype="text/plain"><input name='{"slot":"blue","reason":"x","pad":"' value='"}'></form>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    try {
      await page.goto(`http://127.0.0.1:${(attacker.address() as { port: number }).port}/`);
      await Promise.all([page.waitForURL(`${ui.origin}/api/apps/sample/switch`), page.evaluate(() => document.forms[0]!.submit())]);
      expect(JSON.parse(await page.locator('body').textContent() ?? '{}')).toMatchObject({ error: 'origin_not_allowed' });
    } finally {
      await new Promise((resolve) => attacker.close(resolve));
    }
    // A page rebinding its own name to 127.0.0.1 names itself as Host: nothing is answered, not even the page.
    const port = new URL(ui.origin).port;
    expect((await rawRequest(`${ui.origin}/`, { headers: { host: `rebind.example:${port}` } })).status).toBe(421);
    expect((await rawRequest(`${ui.origin}/api/session`, { headers: { host: `rebind.example:${port}` } })).status).toBe(421);
    // Without the session cookie, no read either.
    expect((await rawRequest(`${ui.origin}/api/overview`, { headers: { host: `127.0.0.1:${port}` } })).status).toBe(401);
    expect(await liveView(stack)).toMatchObject({ status: 200, release: b });
    // The token the agent checks is the controller's: no answer the browser got carries it.
    expect(apiBodies.length).toBeGreaterThan(3);
    expect(apiBodies.filter((body) => body.includes(token))).toEqual([]);
  });

  it('a second deploy ui on the port in use says so (usage exit); the first one stops on SIGTERM with exit 0', async () => {
    const taken = await stack.deploy(['ui', '--port', new URL(ui.origin).port]);
    expect(taken.code, taken.stderr).toBe(2);
    expect(taken.stderr).toContain(`cannot serve the page on 127.0.0.1:${new URL(ui.origin).port}: EADDRINUSE`);
    ui.child.kill('SIGTERM');
    expect(await ui.exited).toBe(0);
    expect(ui.output()).toContain('page stopped');
  });

  it('deploy ui ends with the unreachable exit code when its SSH link drops', async () => {
    ui = await startUi(stack);
    expect(await stack.sshd.killConnections()).toBeGreaterThan(0);
    expect(await ui.exited).toBe(5);
    expect(ui.output()).toMatch(/SSH|ssh/);
  });
});
