import { describe, expect, it } from 'vitest';
import { runCommand } from '../../lib/exec.js';
import { displayArgv, quoteArgv } from '../../controller/shell-quote.js';

const NASTY = [
  '',
  ' ',
  'plain',
  "it's",
  "''",
  "'",
  '"double"',
  '$HOME',
  '${PATH}',
  '$(touch /tmp/slipway-pwned)',
  '`id`',
  'a;b',
  'a && b || c',
  'a|b',
  '> /dev/null',
  '< /etc/passwd',
  '*',
  '?',
  '[a-z]',
  '~',
  '~root',
  '#not a comment',
  'back\\slash\\',
  'new\nline',
  'tab\there',
  '\r\n',
  '!history',
  'if',
  'A=b',
  '-n',
  '--',
  '{a,b}',
  'ümlaut ✓ 日本',
  '\x01\x7f',
];

describe('quoteArgv', () => {
  it('single-quotes every word, even safe ones', () => {
    expect(quoteArgv(['ls', '-l'])).toBe("'ls' '-l'");
    expect(quoteArgv(['echo', ''])).toBe("'echo' ''");
  });

  it("escapes an embedded single quote as '\\''", () => {
    expect(quoteArgv(["it's"])).toBe("'it'\\''s'");
  });

  it('refuses NUL bytes and empty commands', () => {
    expect(() => quoteArgv(['echo', 'a\0b'])).toThrow(/argument 1 contains a NUL byte/);
    expect(() => quoteArgv([])).toThrow(expect.objectContaining({ code: 'empty_command' }));
  });

  it('round-trips nasty arguments through a real /bin/sh', async () => {
    // printf '%s\0' prints each word it receives NUL-terminated: exactly the argv sh parsed.
    const command = quoteArgv(['printf', '%s\\0', ...NASTY]);
    const result = await runCommand(['/bin/sh', '-c', command], { timeoutMs: 10_000, env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    const words = result.stdout.split('\0');
    expect(words.pop()).toBe('');
    expect(words).toEqual(NASTY);
  });

  it('keeps keywords and assignments in first position as plain commands', async () => {
    const result = await runCommand(['/bin/sh', '-c', quoteArgv(['A=b'])], { timeoutMs: 10_000 });
    // Had it been an assignment, sh would have exited 0 silently.
    expect(result.exitCode).toBe(127);
    expect(result.stderr).toMatch(/A=b/);
  });
});

describe('displayArgv', () => {
  it('leaves safe words bare and quotes the rest', () => {
    expect(displayArgv(['ssh-keyscan', '-p', '2222', '-t', 'ed25519', '127.0.0.1'])).toBe('ssh-keyscan -p 2222 -t ed25519 127.0.0.1');
    expect(displayArgv(['ssh-keygen', '-R', '[127.0.0.1]:2222', '-f', '/home/me/my keys'])).toBe(
      "ssh-keygen -R '[127.0.0.1]:2222' -f '/home/me/my keys'",
    );
    expect(displayArgv(['echo', "it's", ''])).toBe("echo 'it'\\''s' ''");
  });
});
