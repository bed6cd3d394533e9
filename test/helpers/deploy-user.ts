import { runCommand } from '../../lib/exec.js';

export const DEPLOY_USER = 'slipway-deploy';

/**
 * The unprivileged account the controller logs into, as on a real VPS. Its shell is /bin/sh
 * with no rc files, so nothing from root's interactive setup (this machine's ~/.bashrc runs
 * `pyenv init`, whose rehash lock can hang every command) leaks into the tests. The password
 * field is `*`, not the locked `!`, because sshd with UsePAM no refuses locked accounts even for
 * key logins.
 */
export async function ensureDeployUser(name = DEPLOY_USER, shell = '/bin/sh'): Promise<{ uid: number; gid: number }> {
  let id = await runCommand(['id', '-u', name], { timeoutMs: 10_000 });
  if (id.exitCode !== 0) {
    const add = await runCommand(['useradd', '--system', '--create-home', '--home-dir', `/var/lib/${name}`, '--shell', shell, name], { timeoutMs: 30_000 });
    // 9: created meanwhile by a parallel test worker.
    if (add.exitCode !== 0 && add.exitCode !== 9) throw new Error(`useradd ${name} failed: ${add.stderr}`);
    id = await runCommand(['id', '-u', name], { timeoutMs: 10_000 });
  }
  const unlock = await runCommand(['usermod', '-p', '*', name], { timeoutMs: 30_000 });
  if (unlock.exitCode !== 0 && !/locked|busy/.test(unlock.stderr)) throw new Error(`usermod ${name} failed: ${unlock.stderr}`);
  const gid = await runCommand(['id', '-g', name], { timeoutMs: 10_000 });
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
