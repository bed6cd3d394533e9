import { SlipwayError } from '../contract/errors.js';

/**
 * Quoting for the one place Slipway has to hand a string to a shell: SSH `exec` carries a single
 * command string that the remote login shell (POSIX sh, bash, dash, zsh) parses. Callers build argv
 * arrays; this turns them into a string the remote shell splits back into exactly those words.
 */

function refuseNul(arg: string, index: number): void {
  if (arg.includes('\0')) {
    throw new SlipwayError('unquotable_argument', `argument ${index} contains a NUL byte, which no shell command can carry`, {
      hint: 'pass binary data on stdin instead of in the command line',
    });
  }
}

/**
 * Every word is single-quoted, even "safe" ones: an unquoted first word could be read as a
 * keyword (`if`, `!`) or an assignment (`A=b`), and single quotes switch off every expansion.
 * An embedded `'` ends the quote, adds an escaped quote, and reopens: `it's` → `'it'\''s'`.
 */
export function quoteArg(arg: string, index = 0): string {
  refuseNul(arg, index);
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) {
    throw new SlipwayError('empty_command', 'cannot run an empty command', {
      hint: 'this is a bug in Slipway: a remote command was built without a program name',
    });
  }
  return argv.map((arg, index) => quoteArg(arg, index)).join(' ');
}

const DISPLAY_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * For commands shown to a person (hints, logs): quotes only words that need it, so
 * `ssh-keyscan -p 2222 127.0.0.1` reads naturally. Never used to build what actually runs.
 */
export function displayArgv(argv: readonly string[]): string {
  return argv.map((arg, index) => (DISPLAY_SAFE.test(arg) ? arg : quoteArg(arg, index))).join(' ');
}
