/**
 * The built `deploy` CLI's entry point: an error that is not a SlipwayError (a bug, a library's
 * unhandled rejection or exception) ends the run with exit 1 and one line, the stack only with
 * SLIPWAY_DEBUG=1; never a runtime dump.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { CONTROLLER_MAIN } from '../helpers/agent-process.js';

const STACK_LINE = /^\s+at /m;

/** `deploy status` started in a directory that is removed before it runs: process.cwd() throws ENOENT inside the command. */
function statusInRemovedDir(env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-gone-'));
  // The paths go in as positional parameters: nothing is spliced into the script.
  return runCommand(['sh', '-c', 'cd "$1" && rmdir "$1" && exec "$2" "$3" status', 'sh', dir, process.execPath, CONTROLLER_MAIN], {
    env: { ...process.env, ...env }, timeoutMs: 30_000,
  });
}

/**
 * `deploy --version` with a preloaded module that runs `failure` behind the CLI's back once the
 * CLI has printed (so its entry point is loaded), and keeps the process alive until then.
 */
function versionThenFailure(failure: string) {
  const code = `const keepAlive = setInterval(() => {}, 1000);
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (...args) => { setTimeout(() => { ${failure} }, 0); return write(...args); };`;
  return runCommand([process.execPath, '--import', `data:text/javascript,${encodeURIComponent(code)}`, CONTROLLER_MAIN, '--version'], {
    env: { ...process.env, SLIPWAY_DEBUG: '' }, timeoutMs: 30_000,
  });
}

describe('the deploy entry point', () => {
  it('an internal error in a command: exit 1, one line, no stack', async () => {
    const result = await statusInRemovedDir({ SLIPWAY_DEBUG: '' });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('deploy: internal error: ENOENT: no such file or directory, uv_cwd (a bug in Slipway: SLIPWAY_DEBUG=1 shows where)\n');
  });

  it('SLIPWAY_DEBUG=1 adds the stack', async () => {
    const result = await statusInRemovedDir({ SLIPWAY_DEBUG: '1' });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.split('\n')[0]).toContain('deploy: internal error: ENOENT');
    expect(result.stderr).toMatch(STACK_LINE);
  });

  it('an unhandled rejection anywhere in the process: exit 1, one line', async () => {
    const result = await versionThenFailure('Promise.reject(new Error("boom from a library"));');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('deploy: internal error: boom from a library (a bug in Slipway: SLIPWAY_DEBUG=1 shows where)\n');
  });

  it('an exception thrown from a callback: exit 1, one line', async () => {
    const result = await versionThenFailure('throw new TypeError("cannot read x of undefined");');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('deploy: internal error: cannot read x of undefined (a bug in Slipway: SLIPWAY_DEBUG=1 shows where)\n');
    expect(result.stderr).not.toMatch(STACK_LINE);
  });
});
