import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, APP, type Stack } from '../helpers/stack.js';
import { releaseOfCommit, readState } from '../helpers/state.js';
import { CONTROLLER_MAIN } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';
import { Pm2Adapter } from '../../agent/pm2.js';

// deploy logs: the app's output without SSH, from PM2's log files through the agent; values of the
// app's env file never leave the box, in logs or in a failed health gate's error.

const SECRET = 'db-password-5d41402abc4b2a76';
const ROTATE_AT = 4096;
const STAMP = '\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z';

/** `deploy logs -f` running in the background, its output read as it comes; stopped with Ctrl-C (SIGINT). */
function followLogs(stack: Stack, args: string[] = []) {
  const child: ChildProcess = spawn(process.execPath, [CONTROLLER_MAIN, 'logs', '-f', ...args], {
    cwd: stack.repo.dir, env: { ...process.env, SSH_AUTH_SOCK: '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    waitFor: (what: string, test: (out: string) => boolean, timeoutMs = 60_000) =>
      waitFor(() => test(stdout + stderr), { timeoutMs, description: `deploy logs -f to show ${what} (so far: ${JSON.stringify((stdout + stderr).slice(-600))})` }),
    async stop(): Promise<number | null> {
      child.kill('SIGINT');
      return exited;
    },
    kill() { if (child.exitCode === null) child.kill('SIGKILL'); },
  };
}

describe('deploy logs', () => {
  let stack: Stack;
  let live: string;

  beforeAll(async () => {
    // Small log files, checked often: the rotation test fills one past the limit.
    stack = await startStack({
      envFileContent: `SAMPLE_GREETING=hello\nSAMPLE_LOG_SECRET=${SECRET}\n`,
      agentConfig: { logs: { maxBytes: ROTATE_AT, keep: 2, checkIntervalMs: 200 } },
    });
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    live = releaseOfCommit(stack.home, APP, await stack.repo.head());
  });
  const follows: ReturnType<typeof followLogs>[] = [];
  afterAll(async () => {
    for (const follow of follows) follow.kill();
    await stack?.stop();
  });

  it('shows the live slot\'s output with env file values masked', async () => {
    const shown = await stack.deploy(['logs', '-n', '20']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^${APP}/(blue|green) \\(${live}\\) web \\(${APP}-(blue|green)\\):$`, 'm'));
    // Each line with the time it was written and its process.
    expect(shown.stdout).toMatch(new RegExp(`^  ${STAMP} web out\\| sample-app ${live} listening on`, 'm'));
    expect(shown.stdout).toContain('with secret ***');
    expect(shown.stdout).not.toContain(SECRET);
    const json = await stack.deploy(['--json', 'logs', '--process', 'web']);
    expect(JSON.parse(json.stdout.trim().split('\n').at(-1)!)).toMatchObject({ app: APP, releaseId: live, processes: [{ name: 'web' }] });
  });

  it('--since picks lines by the time they were written', async () => {
    const recent = await stack.deploy(['--json', 'logs', '--since', '1h']);
    expect(recent.code, recent.stderr).toBe(0);
    const entries = (JSON.parse(recent.stdout.trim().split('\n').at(-1)!) as { processes: { entries: { time: string; text: string }[] }[] }).processes[0]!.entries;
    expect(entries.some((e) => e.text.startsWith(`sample-app ${live} listening`))).toBe(true);
    expect(entries.every((e) => Date.now() - Date.parse(e.time) < 3_600_000)).toBe(true);
    // Lines from before the window are left out: make the live process's log start with an old line.
    const pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    try {
      const outLog = (await pm2.describe(`${APP}-${readState(stack.home, APP).app!.liveSlot!}`))!.outLog!;
      const old = `2020-01-01T00:00:00.000+00:00: line from long ago\n`;
      await fs.writeFile(outLog, old + await fs.readFile(outLog, 'utf8'));
      const all = await stack.deploy(['logs']);
      expect(all.stdout).toContain('2020-01-01T00:00:00.000Z web out| line from long ago');
      const since = await stack.deploy(['logs', '--since', '10m']);
      expect(since.stdout).not.toContain('line from long ago');
      expect(since.stdout).toContain(`sample-app ${live} listening`);
    } finally {
      await pm2.disconnect();
    }
    const bad = await stack.deploy(['logs', '--since', 'yesterday']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since.*10m/);
  });

  it('-f follows the live slot across a switch, saying so, and across log rotation; Ctrl-C ends it', async () => {
    const follow = followLogs(stack);
    follows.push(follow);
    await follow.waitFor('the live slot\'s last lines', (out) => out.includes(`sample-app ${live} listening`));
    const before = readState(stack.home, APP).app!.liveSlot!;
    const after = before === 'blue' ? 'green' : 'blue';
    await stack.repo.commit({ 'message.txt': 'followed\n' }, 'a release to follow into');
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    const next = releaseOfCommit(stack.home, APP, await stack.repo.head());
    await follow.waitFor('the switch', (out) => new RegExp(`traffic moved from ${before} to ${after} .*following ${after} now`).test(out));
    // The new slot's start line, written before the follow moved there, is not lost.
    await follow.waitFor('the new slot\'s start line', (out) => new RegExp(`${STAMP} ${after}/web out\\| sample-app ${next} listening`).test(out));
    live = next;

    // Rotation: fill the live process's log past the limit; the agent renames it and PM2 reopens it.
    const pm2 = await Pm2Adapter.connect({ pm2Home: stack.pm2.pm2Home });
    try {
      const outLog = (await pm2.describe(`${APP}-${after}`))!.outLog!;
      const filler = Array.from({ length: 60 }, (_, i) => `${new Date().toISOString()}: filler line ${i} ${'x'.repeat(60)}\n`).join('');
      await fs.appendFile(outLog, filler);
      await follow.waitFor('the last filler line', (out) => out.includes('filler line 59'));
      await waitFor(async () => (await fs.stat(`${outLog}.1`).catch(() => null)) !== null && (await fs.stat(outLog).catch(() => ({ size: Infinity }))).size < ROTATE_AT,
        { timeoutMs: 30_000, description: `${outLog} rotated to ${outLog}.1` });
      await follow.waitFor('the rotation', (out) => out.includes(`${after} web out log rotated`));
      // Lines written into the new file reach the follow too.
      await fs.appendFile(outLog, `${new Date().toISOString()}: after the rotation\n`);
      await follow.waitFor('a line of the new file', (out) => out.includes('out| after the rotation'));
      // PM2 writes into the new file (it reopened the path), and no more than `keep` old files stay.
      for (let round = 0; round < 3; round++) {
        await fs.appendFile(outLog, filler);
        await waitFor(async () => (await fs.stat(outLog)).size < ROTATE_AT, { timeoutMs: 30_000, description: `${outLog} rotated again (round ${round})` });
      }
      const files = (await fs.readdir(path.dirname(outLog))).filter((f) => f.startsWith(path.basename(outLog)));
      expect(files.sort()).toEqual([path.basename(outLog), `${path.basename(outLog)}.1`, `${path.basename(outLog)}.2`]);
    } finally {
      await pm2.disconnect();
    }
    expect(follow.stdout).not.toContain(SECRET);
    expect(await follow.stop()).toBe(0);
  });

  it('names the processes when asked for one the slot does not run', async () => {
    const shown = await stack.deploy(['logs', '--process', 'nope']);
    expect(shown.code).toBe(2);
    expect(shown.stderr).toMatch(/runs no process "nope"/);
    expect(shown.stderr).toMatch(/its processes: web/);
  });

  it('a failed health gate quotes the process output with env file values masked', async () => {
    await stack.repo.commit({ FAIL_HEALTH: '1\n' }, 'fails its health check');
    const pushed = await stack.deploy(['push']);
    expect(pushed.code).toBe(3);
    const text = pushed.stderr + pushed.stdout;
    expect(text).toMatch(/out\| sample-app .* with secret \*\*\*/);
    expect(text).not.toContain(SECRET);
  });
});
