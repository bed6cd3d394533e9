import { spawn, execFileSync } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCommand, outputTail } from '../../lib/exec.js';
import { REPO_ROOT } from './agent-process.js';
import { isAlive } from './nginx.js';
import type { NetnsHost } from './netns.js';
import { bannerReceived, descendantPids, generateKeyPair } from './sshd.js';
import { waitFor } from './wait.js';
import { knownHostsName } from '../../controller/known-hosts.js';
import { serveAptMirror, type AptMirrorServer } from './apt-mirror.js';

/**
 * A freshly installed Debian box, as a provider hands out a VPS: the cached debootstrap tree of
 * scripts/fresh-os-fixture (minbase bookworm + openssh-server), seen through a per-host overlay
 * (the cache stays untouched), with new host keys and the test's key in root's authorized_keys.
 * Its OWN sshd (the tree's binary, config and PAM) runs chrooted inside a network namespace the
 * test made (netns.ts), in a private mount namespace with the tree's /proc: reachable from the
 * test at <netns.address>:22. The base for `deploy setup` tests.
 */

export const FRESH_OS_FIXTURE_SCRIPT = path.join(REPO_ROOT, 'scripts', 'fresh-os-fixture');

export interface FreshHost {
  /** The overlay's merged root: the box's filesystem, as seen from the test. */
  root: string;
  address: string;
  port: 22;
  user: 'root';
  clientKeyPath: string;
  /** known_hosts with the box's new ed25519 key, as `<address> ssh-ed25519 ...` (port 22: no brackets). */
  knownHostsPath: string;
  /** The chrooted sshd's pid (spawned through `ip netns exec` and `unshare`, which both exec). */
  pid: number;
  logPath: string;
  /** The local apt repository the box's sources.list points at (served on the test's side of the veth). */
  aptMirror: AptMirrorServer | null;
  log(): Promise<string>;
  /** SIGKILLs sshd and its sessions by pid, unmounts the overlay, removes the per-host dir. Idempotent. */
  stop(): Promise<void>;
}

/** The cached tree's path if it is built, else null (building takes minutes: see fresh-os-fixture). */
export async function cachedFreshOsTree(): Promise<string | null> {
  const cache = process.env.SLIPWAY_ROOTFS_CACHE ?? '/var/cache/slipway-test-rootfs';
  const script = await readFile(FRESH_OS_FIXTURE_SCRIPT, 'utf8');
  const version = /^FIXTURE_VERSION=(\S+)$/m.exec(script)?.[1];
  const suite = /^SUITE=(\S+)$/m.exec(script)?.[1];
  const include = /^INCLUDE=(\S+)$/m.exec(script)?.[1];
  const tree = path.join(cache, `${suite}-minbase-${include}-v${version}`);
  return existsSync(path.join(tree, '.slipway-fixture')) ? tree : null;
}

/** The fixture's local apt repository next to `tree` (same cache dir), or null if it is not built. */
export async function cachedAptMirror(tree: string): Promise<string | null> {
  const script = await readFile(FRESH_OS_FIXTURE_SCRIPT, 'utf8');
  const version = /^MIRROR_VERSION=(\S+)$/m.exec(script)?.[1];
  const suite = /^SUITE=(\S+)$/m.exec(script)?.[1];
  const dir = path.join(path.dirname(tree), `${suite}-apt-mirror-v${version}`);
  return existsSync(path.join(dir, '.slipway-mirror')) ? dir : null;
}

/** Runs scripts/fresh-os-fixture (builds the tree once, minutes; then instant) and returns the tree. */
export async function freshOsTree(): Promise<string> {
  const result = await runCommand([FRESH_OS_FIXTURE_SCRIPT], { timeoutMs: 20 * 60_000 });
  if (result.exitCode !== 0) throw new Error(`fresh-os-fixture failed (${result.exitCode}): ${outputTail(result.stderr)}`);
  return result.stdout.trim().split('\n').pop()!;
}

// Overlays still mounted when the process exits are unmounted (lazily) on the way out.
const mounted = new Set<string>();
let exitHookInstalled = false;
function unmountOnExit(mountPoint: string): void {
  mounted.add(mountPoint);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const point of mounted) {
      try { execFileSync('umount', ['-l', point], { stdio: 'ignore', timeout: 10_000 }); } catch { /* not mounted */ }
    }
  });
}

async function run(argv: string[], what: string): Promise<void> {
  const result = await runCommand(argv, { timeoutMs: 60_000 });
  if (result.exitCode !== 0) throw new Error(`${what} (${argv.join(' ')}) failed (${result.exitCode}): ${outputTail(result.stderr)}`);
}

/**
 * `aptMirror`: the fixture's local repository dir; served on the veth's test side and made the
 * box's only apt source (the provider image's sources.list, pointing at "its" mirror).
 */
export async function startFreshHost(options: { netns: NetnsHost; tree: string; aptMirror?: string }): Promise<FreshHost> {
  const { netns, tree } = options;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-fresh-'));
  const [upper, work, root] = ['upper', 'work', 'root'].map((name) => path.join(dir, name)) as [string, string, string];
  for (const d of [upper, work, root]) await mkdir(d);
  let pid: number | null = null;
  let mountedRoot = false;
  let stopped = false;
  let aptMirror: AptMirrorServer | null = null;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await aptMirror?.close();
    if (pid !== null) {
      const pids = [...await descendantPids(pid), pid];
      for (const p of pids) {
        try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
      }
      await waitFor(() => pids.every((p) => !isAlive(p)), { timeoutMs: 5_000, description: `fresh host sshd ${pids.join(', ')} to exit` });
    }
    if (mountedRoot) {
      // Nothing of ours runs in it now; a lazy unmount still ends it if the kernel is slow to let go.
      const result = await runCommand(['umount', root], { timeoutMs: 15_000 });
      if (result.exitCode !== 0) await runCommand(['umount', '-l', root], { timeoutMs: 15_000 });
      mounted.delete(root);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${tree},upperdir=${upper},workdir=${work}`, root], 'mount the overlay');
    mountedRoot = true;
    unmountOnExit(root);

    // A box of its own: new host keys (the cached tree's are shared by every test), as a provider's first boot makes.
    for (const type of ['rsa', 'ecdsa', 'ed25519']) {
      await rm(path.join(root, 'etc', 'ssh', `ssh_host_${type}_key`), { force: true });
      await rm(path.join(root, 'etc', 'ssh', `ssh_host_${type}_key.pub`), { force: true });
    }
    await run(['ssh-keygen', '-A', '-f', root], 'generate host keys');
    // The provider's "add your SSH key" step: root, key only (Debian's default PermitRootLogin prohibit-password).
    const clientKey = await generateKeyPair(dir, 'client_key');
    const sshDir = path.join(root, 'root', '.ssh');
    await mkdir(sshDir, { recursive: true, mode: 0o700 });
    await chmod(sshDir, 0o700);
    await writeFile(path.join(sshDir, 'authorized_keys'), `${clientKey.publicKey}\n`, { mode: 0o600 });
    if (options.aptMirror) {
      aptMirror = await serveAptMirror({ dir: options.aptMirror, address: netns.peerAddress });
      await writeFile(path.join(root, 'etc', 'apt', 'sources.list'), `${aptMirror.sourcesLine}\n`);
      // The tree's lists name deb.debian.org, which the box cannot reach: a provider's image ships none.
      await runCommand(['find', path.join(root, 'var', 'lib', 'apt', 'lists'), '-maxdepth', '1', '-type', 'f', '-name', '*_dists_*', '-delete'], { timeoutMs: 15_000 });
    }
    // systemd's RuntimeDirectory would make sshd's privilege-separation dir at boot.
    await mkdir(path.join(root, 'run', 'sshd'), { recursive: true, mode: 0o755 });

    const logPath = path.join(dir, 'sshd.log');
    const fd = openSync(logPath, 'a');
    const argv = [...netns.exec, 'unshare', '--mount', '--propagation', 'private', '--root', root, '--mount-proc', '/usr/sbin/sshd', '-D', '-e'];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    if (child.pid === undefined) throw new Error('could not start the fresh host\'s sshd');
    pid = child.pid;
    let exited = false;
    child.once('exit', () => { exited = true; });
    await waitFor(async () => {
      if (exited) throw new Error(`sshd exited at start: ${outputTail(await readFile(logPath, 'utf8'))}`);
      return bannerReceived(netns.address, 22);
    }, { timeoutMs: 20_000, intervalMs: 50, description: `the fresh host's sshd (pid ${pid}) to answer on ${netns.address}:22` });

    const hostKey = (await readFile(path.join(root, 'etc', 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    const knownHostsPath = path.join(dir, 'known_hosts');
    await writeFile(knownHostsPath, `${knownHostsName(netns.address, 22)} ${hostKey}\n`, { mode: 0o644 });
    return {
      root, address: netns.address, port: 22, user: 'root', clientKeyPath: clientKey.privateKeyPath, knownHostsPath,
      pid, logPath, aptMirror, log: () => readFile(logPath, 'utf8'), stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
