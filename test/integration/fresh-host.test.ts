import { readFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { connectSsh, type SshSession } from '../../controller/ssh.js';
import { cachedAptMirror, cachedFreshOsTree, freshOsTree, startFreshHost, type FreshHost } from '../helpers/fresh-host.js';
import { createNetnsHost, leftovers, type NetnsHost } from '../helpers/netns.js';
import { isAlive } from '../helpers/nginx.js';
import { descendantPids } from '../helpers/sshd.js';

/**
 * A fresh Debian box (scripts/fresh-os-fixture) in a network namespace, with its own sshd:
 * the controller's SSH reaches it at the namespace's address as root, and finds nothing of
 * Slipway's there. The tree takes minutes to build the first time, so this runs only when it is
 * cached (or SLIPWAY_FRESH_OS=1 asks to build it).
 */
const tree = process.env.SLIPWAY_FRESH_OS === '1' ? await freshOsTree() : await cachedFreshOsTree();
const mirror = tree === null ? null : await cachedAptMirror(tree);

describe.skipIf(tree === null)('fresh OS host: a debootstrap tree\'s own sshd in a network namespace', () => {
  let netns: NetnsHost | undefined;
  let host: FreshHost | undefined;
  let ssh: SshSession | undefined;

  afterAll(async () => {
    await ssh?.close();
    await host?.stop();
    await netns?.destroy();
  });

  it('answers SSH as a fresh bookworm box, and leaves nothing behind', async () => {
    const started = Date.now();
    netns = await createNetnsHost({ label: 'fresh' });
    host = await startFreshHost({ netns, tree: tree!, ...(mirror ? { aptMirror: mirror } : {}) });
    const upMs = Date.now() - started;
    expect(await netns.pids()).toContain(host.pid);
    expect(await readFile(host.knownHostsPath, 'utf8')).toMatch(new RegExp(`^${netns.address.replace(/\./g, '\\.')} ssh-ed25519 `));

    ssh = await connectSsh({
      host: host.address, port: host.port, username: host.user, privateKeyPath: host.clientKeyPath,
      knownHostsPath: host.knownHostsPath, agentSocket: '',
    });
    const osRelease = await ssh.execChecked(['cat', '/etc/os-release'], { step: 'read os-release' });
    expect(osRelease.stdout).toContain('VERSION_CODENAME=bookworm');
    expect((await ssh.execChecked(['id', '-u'], { step: 'id' })).stdout.trim()).toBe('0');
    // Fresh: no Node, nginx or PM2 yet (deploy setup's job); apt is there to install them.
    const missing = await ssh.exec(['sh', '-c', 'command -v node nginx pm2; command -v apt-get']);
    expect(missing.stdout.trim()).toBe('/usr/bin/apt-get');
    // The box's sshd is the tree's (chrooted): its / is the overlay, not this machine's.
    expect((await ssh.execChecked(['cat', '/.slipway-fixture'], { step: 'fixture marker' })).stdout).toContain('key=bookworm-minbase');
    if (mirror) {
      // No route out, yet apt works: its one source is the fixture's repository on the test's side of the veth.
      await ssh.execChecked(['apt-get', '-q', 'update'], { step: 'apt-get update', timeoutMs: 60_000 });
      const policy = await ssh.execChecked(['apt-cache', 'policy', 'nginx'], { step: 'apt-cache policy' });
      expect(policy.stdout).toMatch(/Candidate: 1\.22/);
      expect(policy.stdout).toContain(host.aptMirror!.url.replace(/\/$/, ''));
    }
    await ssh.close();
    ssh = undefined;

    const pids = [host.pid, ...await descendantPids(host.pid)];
    const root = host.root;
    await host.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(await netns.pids()).toEqual([]);
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${root} `)).toBe(false);
    await netns.destroy();
    expect(await leftovers(netns)).toEqual({ netns: false, link: false, route: false });
    console.log(`fresh host: namespace + overlay + host keys + sshd up in ${upMs} ms, total ${Date.now() - started} ms`);
  });
});
