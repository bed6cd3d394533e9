/**
 * lib/exec.ts runCommand and agent/backups/process.ts runGroup: the program's exit decides the
 * result, not the end of its output pipes. A process the program left behind (`tool &`, or one that
 * left the process group with setsid) holds copies of those pipes for as long as it lives; the
 * result comes at the latest a short grace after the exit (or the deadline's kill) all the same.
 * runCommand leaves such a process running (its callers may start daemons); runGroup kills what is
 * left of the group at the exit.
 */
import { closeSync, openSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LEFT_RUNNING, runCommand } from '../../lib/exec.js';
import { runStreaming } from '../../agent/build/stream-run.js';
import { runGroup } from '../../agent/backups/process.js';
import { isAlive } from '../helpers/nginx.js';
import { waitFor } from '../helpers/wait.js';

// A run that waits for a leftover's 30 s sleep fails at this, not at the suite's 120 s.
const TEST_TIMEOUT_MS = 15_000;

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-exec-')); });
afterEach(async () => {
  // Every leftover wrote its pid into dir/*.pid: killed by pid, whatever the test saw.
  for (const name of (await fs.readdir(dir)).filter((n) => n.endsWith('.pid'))) {
    const pid = Number((await fs.readFile(path.join(dir, name), 'utf8')).trim());
    if (pid > 0) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  await fs.rm(dir, { recursive: true, force: true });
});

/** A shell script, with the file its leftover's pid goes into as $1. */
function script(body: string): { argv: string[]; pidFile: string } {
  const pidFile = path.join(dir, 'leftover.pid');
  return { argv: ['sh', '-c', body, 'sh', pidFile], pidFile };
}

/** Starts `sleep 30` in a session of its own (setsid) and goes on once it has left the group. */
const ESCAPE = `setsid sh -c 'echo $$ > "$0"; exec sleep 30' "$1" & until [ -s "$1" ]; do sleep 0.01; done`;

function leftoverPid(pidFile: string): number {
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  expect(pid).toBeGreaterThan(0);
  return pid;
}

describe('runCommand: a leftover holding the output pipes', () => {
  it('an exit-0 script that backgrounded a process: its result, not a timeout; the process is left running', async () => {
    const { argv, pidFile } = script('sleep 30 & echo $! > "$1"; echo done');
    const result = await runCommand(argv, { timeoutMs: 60_000 });
    const pid = leftoverPid(pidFile);
    // Resolved before the leftover's own 30 s sleep ended, and without killing it.
    expect(isAlive(pid)).toBe(true);
    expect(result).toMatchObject({ exitCode: 0, signal: null, timedOut: false, stdout: 'done\n', outputHeld: true });
  }, TEST_TIMEOUT_MS);

  it('output already in the pipe at the exit is still read', async () => {
    const { argv, pidFile } = script('sleep 30 & echo $! > "$1"; head -c 300000 /dev/zero');
    const result = await runCommand(argv, { timeoutMs: 60_000, maxOutputBytes: 1024 * 1024 });
    expect(isAlive(leftoverPid(pidFile))).toBe(true);
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });
    expect(result.stdout).toHaveLength(300_000);
  }, TEST_TIMEOUT_MS);

  it('a process that left the group (setsid) does not hold the result past the deadline', async () => {
    const { argv, pidFile } = script(`${ESCAPE}; echo escaped; sleep 20`);
    const result = await runCommand(argv, { timeoutMs: 300 });
    const pid = leftoverPid(pidFile);
    // The deadline's group kill cannot reach it: still running, yet the result came.
    expect(isAlive(pid)).toBe(true);
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: true, stdout: 'escaped\n', outputHeld: true });
  }, TEST_TIMEOUT_MS);

  it('a program that closes its output normally: nothing held', async () => {
    const result = await runCommand(['sh', '-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
    expect(result).toMatchObject({ exitCode: 3, timedOut: false, stdout: 'out\n', stderr: 'err\n', outputHeld: false });
  }, TEST_TIMEOUT_MS);
});

/**
 * The leftover sleeps 30 s, so only the run can have killed it. Its death closed the pipes; it may
 * still be finishing its exit when the result comes, hence a wait.
 */
async function killedByRun(pid: number): Promise<void> {
  await waitFor(() => !isAlive(pid), { timeoutMs: 5_000, description: `the leftover ${pid} to be gone` });
}

describe('a build step (agent/build/stream-run.ts) whose leftover held its output', () => {
  it('succeeds, and its log says what was left running', async () => {
    const { argv, pidFile } = script('sleep 30 & echo $! > "$1"; echo built');
    const lines: string[] = [];
    const run = await runStreaming(argv, { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, timeoutMs: 60_000, onLine: (line) => lines.push(line) });
    expect(isAlive(leftoverPid(pidFile))).toBe(true);
    expect(run).toMatchObject({ ok: true, exitCode: 0, timedOut: false });
    expect(lines).toEqual(['built', `(${LEFT_RUNNING})`]);
  }, TEST_TIMEOUT_MS);
});

describe('runGroup: what the program left of its group dies at its exit', () => {
  it('a dump into stdoutFd whose leftover holds stderr: the result comes at the exit, the leftover killed', async () => {
    const { argv, pidFile } = script('sleep 30 & echo $! > "$1"; echo dumped');
    const outFile = path.join(dir, 'dump');
    const fd = openSync(outFile, 'wx', 0o600);
    let result;
    try {
      result = await runGroup(argv, { env: process.env, timeoutMs: 60_000, stdoutFd: fd });
    } finally {
      closeSync(fd);
    }
    await killedByRun(leftoverPid(pidFile));
    expect(result).toMatchObject({ exitCode: 0, signal: null, timedOut: false, error: null });
    expect(readFileSync(outFile, 'utf8')).toBe('dumped\n');
  }, TEST_TIMEOUT_MS);

  it('a command whose leftover holds stdout and stderr: its tail, the leftover killed', async () => {
    const { argv, pidFile } = script('sleep 30 & echo $! > "$1"; echo checked');
    const result = await runGroup(argv, { env: process.env, timeoutMs: 60_000 });
    await killedByRun(leftoverPid(pidFile));
    expect(result).toMatchObject({ exitCode: 0, timedOut: false, error: null, stdoutTail: 'checked\n' });
  }, TEST_TIMEOUT_MS);

  it('a process that left the group (setsid) does not hold the result after the exit', async () => {
    const { argv, pidFile } = script(`${ESCAPE}; echo checked`);
    const result = await runGroup(argv, { env: process.env, timeoutMs: 60_000 });
    // Outside the group: not killed, and not waited for.
    expect(isAlive(leftoverPid(pidFile))).toBe(true);
    expect(result).toMatchObject({ exitCode: 0, timedOut: false, error: null, stdoutTail: 'checked\n' });
  }, TEST_TIMEOUT_MS);

  it('a consumer of stdout held open by a process outside the group: the run fails, saying why', async () => {
    const { argv, pidFile } = script(`${ESCAPE}; echo row`);
    let read = '';
    const result = await runGroup(argv, {
      env: process.env, timeoutMs: 60_000,
      consumeStdout: async (stdout) => { for await (const chunk of stdout) read += String(chunk); },
    });
    expect(isAlive(leftoverPid(pidFile))).toBe(true);
    expect(read).toBe('row\n');
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });
    expect(result.error).toMatch(/^a process it started outside its process group still held its output 2000 ms after it exited/);
  }, TEST_TIMEOUT_MS);
});
