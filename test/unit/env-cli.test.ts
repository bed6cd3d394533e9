/**
 * `deploy env` on the controller's side, without a host: where values come from (this process's
 * environment, stdin; never argv), the checks made before any host is asked, the fleet plan
 * (every host reached, or --skip-unreachable), and the report of a change some hosts lack.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { main } from '../../controller/cli.js';
import {
  envApplyReport, envPatch, formatEnvChange, formatEnvView, notAllReached, planEnvApply, valuesFromDotenv, valuesFromEnvironment,
} from '../../controller/commands/env.js';

function refusal(fn: () => unknown): SlipwayError {
  try { fn(); } catch (error) { return error as SlipwayError; }
  throw new Error('not refused');
}

const change = { keys: ['A', 'B'], added: ['A'], changed: [], removed: [], unchanged: ['B'] };

describe('values for deploy env set', () => {
  it('reads each key\'s value from the variable of that name', () => {
    expect(valuesFromEnvironment(['DATABASE_URL', 'API_KEY'], { DATABASE_URL: 'postgres://x y', API_KEY: "k'1", OTHER: 'no' }, { allowEmpty: false }))
      .toEqual({ DATABASE_URL: 'postgres://x y', API_KEY: "k'1" });
  });

  it('refuses KEY=VALUE on the command line, naming the key only', () => {
    const error = refusal(() => valuesFromEnvironment(['OK', 'DATABASE_URL=postgres://user:pa55word@db/x'], { OK: '1' }, { allowEmpty: false }));
    expect(error).toMatchObject({ code: 'env_value_on_argv', kind: 'usage' });
    expect(error.message).toContain('DATABASE_URL=…');
    expect(`${error.message} ${error.hint}`).not.toContain('pa55word');
    expect(error.hint).toContain('--stdin');
  });

  it('refuses a key missing from the environment, or empty there unless --allow-empty', () => {
    expect(refusal(() => valuesFromEnvironment(['A', 'B'], { A: 'x' }, { allowEmpty: false }))).toMatchObject({ code: 'env_value_missing', message: expect.stringContaining('no value for B') });
    expect(refusal(() => valuesFromEnvironment(['A'], { A: '' }, { allowEmpty: false }))).toMatchObject({ code: 'env_value_missing' });
    expect(valuesFromEnvironment(['A'], { A: '' }, { allowEmpty: true })).toEqual({ A: '' });
    expect(refusal(() => valuesFromEnvironment(['not-a-key'], {}, { allowEmpty: false }))).toMatchObject({ code: 'usage' });
  });

  it('reads dotenv lines from stdin with the agent\'s parser; errors name line numbers, never the line', () => {
    expect(valuesFromDotenv('# secrets\nA=1\nexport B="two\\nlines"\nC=\'x y\'\n')).toEqual({ A: '1', B: 'two\nlines', C: 'x y' });
    const error = refusal(() => valuesFromDotenv('A=1\nthe-secret-line\n'));
    expect(error).toMatchObject({ code: 'env_value_invalid', details: ['line 2: expected KEY=VALUE'] });
    expect(JSON.stringify(error.toBody())).not.toContain('the-secret-line');
    expect(refusal(() => valuesFromDotenv('# nothing\n\n'))).toMatchObject({ code: 'usage' });
  });

  it('checks the whole change before any host is asked: keys, an empty change, a value no quoting carries', () => {
    expect(envPatch({ A: '1' }, [])).toEqual({ set: { A: '1' }, unset: [] });
    expect(refusal(() => envPatch({}, []))).toMatchObject({ code: 'usage' });
    expect(refusal(() => envPatch({}, ['X=secret-1']))).toMatchObject({ code: 'usage', message: expect.not.stringContaining('secret-1') });
    expect(refusal(() => envPatch({ T: 'it\'s \\n x' }, []))).toMatchObject({ code: 'env_value_invalid', message: expect.stringContaining('T') });
    expect(refusal(() => envPatch({ BIG: 'x'.repeat(64 * 1024 + 1) }, []))).toMatchObject({ code: 'env_value_invalid' });
  });
});

describe('the CLI refuses before connecting to anything', () => {
  async function run(argv: string[], env: NodeJS.ProcessEnv, stdinText = '') {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => { out += c.toString(); });
    stderr.on('data', (c: Buffer) => { err += c.toString(); });
    const stdin = new PassThrough();
    stdin.end(stdinText);
    // A config file that does not exist: a refusal made before it is read never notices.
    const code = await main(['--config', '/nonexistent/deploy.config.json', ...argv], { stdout, stderr, stdin }, env);
    return { code, out, err };
  }

  it('KEY=VALUE exits 2 with env_value_on_argv and no value in the output (also with --json)', async () => {
    for (const json of [[], ['--json']]) {
      const result = await run([...json, 'env', 'set', 'API_KEY=sk_live_abcdef'], {});
      expect(result.code).toBe(2);
      expect(result.out + result.err).toContain(json.length ? '"error":"env_value_on_argv"' : 'a value on the command line is refused');
      expect(result.out + result.err).not.toContain('sk_live_abcdef');
    }
  });

  it('a key missing from the environment exits 2 (env_value_missing)', async () => {
    const result = await run(['--json', 'env', 'set', 'DATABASE_URL'], {});
    expect(result.code).toBe(2);
    expect(result.out).toContain('"error":"env_value_missing"');
  });

  it('--stdin lines that do not parse exit 2, naming the line number only', async () => {
    const result = await run(['env', 'set', '--stdin'], {}, 'A=1\nnot a line with hunter2\n');
    expect(result.code).toBe(2);
    expect(result.err).toContain('line 2: expected KEY=VALUE');
    expect(result.err).not.toContain('hunter2');
  });
});

describe('a change across the hosts of an environment', () => {
  it('starts only when every host is reached, unless --skip-unreachable leaves the others out by name', () => {
    expect(planEnvApply(['a', 'b', 'c'], [], false)).toEqual({ apply: ['a', 'b', 'c'], skipped: [] });
    expect(planEnvApply(['a', 'b', 'c'], ['b'], false)).toEqual({ apply: [], skipped: ['b'] });
    expect(planEnvApply(['a', 'b', 'c'], ['b'], true)).toEqual({ apply: ['a', 'c'], skipped: ['b'] });
    expect(planEnvApply(['a'], ['a'], true)).toEqual({ apply: [], skipped: ['a'] });
    const refused = notAllReached([{ name: 'b', target: {} as never, error: new Error('connect timed out') }]);
    expect(refused).toMatchObject({ code: 'fleet_unreachable', kind: 'unreachable', details: ['b: connect timed out'] });
    expect(refused.hint).toContain('nothing was written on any host');
  });

  it('reports exactly which hosts have a change that failed on another, with a hint to run it again', () => {
    const failed = envApplyReport([
      { host: 'a', change, error: null },
      { host: 'b', change: null, error: new SlipwayError('disk_full', 'the disk is full') },
      { host: 'c', change, error: null },
    ], ['d']);
    expect(failed.report).toEqual({ written: ['a', 'c'], failed: [{ host: 'b', error: 'the disk is full' }], skipped: ['d'] });
    expect(failed.error).toMatchObject({ code: 'env_write_partial', kind: 'refused', message: 'the change was written on a, c and failed on b' });
    expect(failed.error?.hint).toContain('run the same command again');
    // One host alone: its own error, as it came.
    const alone = new SlipwayError('env_file_insecure', 'insecure');
    expect(envApplyReport([{ host: 'a', change: null, error: alone }], []).error).toBe(alone);
    expect(envApplyReport([{ host: 'a', change, error: null }], []).error).toBeNull();
  });

  it('prints key names per host', () => {
    expect(formatEnvChange('web-1', change)).toBe('web-1: added A; unchanged B');
    expect(formatEnvChange(null, { ...change, added: [], unchanged: [] })).toBe('nothing to do');
    expect(formatEnvView(null, { file: '/x/.env', keys: ['A', 'B'], mode: '600', updatedAt: null, missing: ['C'] }))
      .toBe('/x/.env (mode 600, no file yet)\n  A\n  B\n  MISSING (the live release requires them): C');
  });
});
