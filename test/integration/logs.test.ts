import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, APP, type Stack } from '../helpers/stack.js';
import { releaseOfCommit } from '../helpers/state.js';

// deploy logs: the app's output without SSH, from PM2's log files through the agent; values of the
// app's env file never leave the box, in logs or in a failed health gate's error.

const SECRET = 'db-password-5d41402abc4b2a76';

describe('deploy logs', () => {
  let stack: Stack;
  let live: string;

  beforeAll(async () => {
    stack = await startStack({ envFileContent: `SAMPLE_GREETING=hello\nSAMPLE_LOG_SECRET=${SECRET}\n` });
    const pushed = await stack.deploy(['push']);
    expect(pushed.code, pushed.stderr + pushed.stdout).toBe(0);
    live = releaseOfCommit(stack.home, APP, await stack.repo.head());
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('shows the live slot\'s output with env file values masked', async () => {
    const shown = await stack.deploy(['logs', '-n', '20']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^${APP}/(blue|green) \\(${live}\\) web \\(${APP}-(blue|green)\\):$`, 'm'));
    expect(shown.stdout).toContain(`out| sample-app ${live} listening on`);
    expect(shown.stdout).toContain('with secret ***');
    expect(shown.stdout).not.toContain(SECRET);
    const json = await stack.deploy(['--json', 'logs', '--process', 'web']);
    expect(JSON.parse(json.stdout.trim().split('\n').at(-1)!)).toMatchObject({ app: APP, releaseId: live, processes: [{ name: 'web' }] });
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
