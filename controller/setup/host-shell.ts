/**
 * Commands on the host with root's rights, for `deploy setup`: as root directly, or through
 * `sudo -n` for a sudoer (never a password prompt: a sudoer without NOPASSWD is refused up front).
 * Every command is an argv; the few shell snippets are constant and take paths as positional
 * arguments, file contents on stdin (a token never appears in an argv or an error).
 */
import { SlipwayError } from '../../contract/errors.js';
import { outputTail } from '../../lib/exec.js';
import type { ExecResult, SshSession } from '../ssh.js';

export interface HostShell {
  /** How root's rights are had: 'root' (logged in as root) or 'sudo'. */
  readonly via: 'root' | 'sudo';
  run(argv: readonly string[], options?: { stdin?: string | Buffer; timeoutMs?: number }): Promise<ExecResult>;
  /** run() that throws setup_step_failed naming `step` on a non-zero exit. */
  checked(argv: readonly string[], step: string, options?: { stdin?: string | Buffer; timeoutMs?: number }): Promise<ExecResult>;
}

export interface FileState { mode: string; owner: string; group: string; sha256: string }

/** Finds how this SSH user gets root's rights; refuses when it has none without a password. */
export async function privilegedShell(ssh: SshSession): Promise<HostShell> {
  const uid = (await ssh.exec(['id', '-u'], { timeoutMs: 30_000 })).stdout.trim();
  let via: 'root' | 'sudo';
  if (uid === '0') via = 'root';
  else if ((await ssh.exec(['sudo', '-n', 'true'], { timeoutMs: 30_000 })).exitCode === 0) via = 'sudo';
  else {
    throw new SlipwayError('setup_not_privileged', `${ssh.remoteAddressLabel} is neither root nor a sudoer without a password prompt: deploy setup needs root's rights once`, {
      hint: 'run deploy setup with a host user of root, or give the SSH user passwordless sudo for the setup (e.g. a sudoers line "USER ALL=(ALL) NOPASSWD: ALL"), then take it away again',
    });
  }
  const wrap = (argv: readonly string[]) => (via === 'root' ? [...argv] : ['sudo', '-n', ...argv]);
  const run: HostShell['run'] = (argv, options = {}) => ssh.exec(wrap(argv), {
    timeoutMs: options.timeoutMs ?? 120_000, ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
  });
  return {
    via,
    run,
    async checked(argv, step, options) {
      const result = await run(argv, options);
      if (result.exitCode !== 0) {
        throw new SlipwayError('setup_step_failed', `deploy setup: ${step} failed on ${ssh.remoteAddressLabel} (${argv[0]} exited ${result.exitCode ?? result.signal})`, {
          details: outputTail(result.stderr, 10).split('\n').filter(Boolean),
          hint: 'fix what the lines above say and run deploy setup again: it picks up where this run stopped',
        });
      }
      return result;
    },
  };
}

/** Mode (octal), owner, group and sha256 of a regular file; null when there is none. */
export async function fileState(shell: HostShell, file: string): Promise<FileState | null> {
  const result = await shell.run(['sh', '-c', 'test -f "$1" && stat -c "%a %U %G" -- "$1" && sha256sum < "$1"', 'sh', file]);
  if (result.exitCode !== 0) return null;
  const [meta, sum] = result.stdout.trim().split('\n');
  const [mode, owner, group] = (meta ?? '').split(' ');
  return { mode: mode ?? '', owner: owner ?? '', group: group ?? '', sha256: (sum ?? '').split(/\s+/)[0] ?? '' };
}

/** Mode, owner and group of a directory; null when there is none. */
export async function dirState(shell: HostShell, dir: string): Promise<Omit<FileState, 'sha256'> | null> {
  const result = await shell.run(['sh', '-c', 'test -d "$1" && stat -c "%a %U %G" -- "$1"', 'sh', dir]);
  if (result.exitCode !== 0) return null;
  const [mode, owner, group] = result.stdout.trim().split(' ');
  return { mode: mode ?? '', owner: owner ?? '', group: group ?? '' };
}

/**
 * Writes `content` to `file` atomically (a temp file next to it, then rename), with its mode and
 * owner set before it appears. `validate`: an argv run on the temp file first ("{}" is replaced by
 * its path), e.g. visudo -cf.
 */
export async function writeHostFile(shell: HostShell, file: string, content: string | Buffer, meta: { mode: string; owner: string; group: string }, step: string, validate?: readonly string[]): Promise<void> {
  const temp = `${file}.slipway-tmp`;
  await shell.checked(['sh', '-c', 'set -e; umask 077; rm -f "$1"; cat > "$1"; chown "$3:$4" "$1"; chmod "$2" "$1"', 'sh', temp, meta.mode, meta.owner, meta.group], step, {
    stdin: content, timeoutMs: 600_000,
  });
  if (validate) {
    const result = await shell.run(validate.map((a) => (a === '{}' ? temp : a)));
    if (result.exitCode !== 0) {
      await shell.run(['rm', '-f', temp]);
      throw new SlipwayError('setup_step_failed', `deploy setup: ${step}: ${validate[0]} refused the new ${file}; nothing was changed`, {
        details: outputTail(`${result.stdout}${result.stderr}`, 10).split('\n').filter(Boolean),
        hint: 'this is a bug in deploy setup: report it with the lines above',
      });
    }
  }
  await shell.checked(['mv', '-f', temp, file], step);
}
