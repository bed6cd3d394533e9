/**
 * Where `deploy setup` puts Slipway on a host, and where `deploy upgrade` and `deploy setup --check`
 * look for it. Pure: every path derives from `root` ("/" on a real host; a temp dir in tests that
 * lay the files out without a chroot).
 */
import path from 'node:path';

export interface HostLayout {
  /** The system user (and group) the agent and every app run as. */
  user: string;
  /** Group whose members may read the API token: the deploy SSH user joins it, nothing more. */
  tokenGroup: string;
  /**
   * Debian's read-only log group: nginx's error log is root:adm or www-data:adm 0640 (logrotate
   * recreates it so). The agent's user joins it to quote nginx's reason when a reload fails.
   */
  logGroup: string;
  /** /etc/slipway: agent.json (root:slipway 0640) and the token (slipway:slipway-api 0640). */
  etcDir: string;
  configFile: string;
  tokenFile: string;
  /** /opt/slipway: versioned agent installs, `agent/current` → the live one, and the Node.js the agent runs on. */
  optDir: string;
  agentVersionsDir: string;
  agentCurrentLink: string;
  nodeDir: string;
  nodeBin: string;
  /** /var/lib/slipway: the agent's home (state db, releases, artifacts) and its PM2_HOME. */
  home: string;
  pm2Home: string;
  /**
   * The agent's nginx probe secret and the snippet that sets it for nginx (both 0600, the agent's
   * user's): the agent writes them (agent/nginx/probe-secret.ts names them); setup checks their modes.
   */
  probeSecretFile: string;
  probeSnippetFile: string;
  /** nginx: the include dir the agent renders into, hooked into the distribution's conf.d. */
  nginxIncludeDir: string;
  nginxConfD: string;
  nginxHookFile: string;
  /** sudoers drop-in allowing exactly `nginx -t` and `nginx -s reload` to the agent's user. */
  sudoersFile: string;
  /** The systemd unit that brings PM2 (and through it the agent and the apps) back after a reboot. */
  systemdUnit: string;
}

export const SLIPWAY_USER = 'slipway';
export const TOKEN_GROUP = 'slipway-api';
export const LOG_GROUP = 'adm';

export function hostLayout(root = '/'): HostLayout {
  const at = (...parts: string[]) => path.join(root, ...parts);
  const optDir = at('opt', 'slipway');
  const home = at('var', 'lib', 'slipway');
  const etcDir = at('etc', 'slipway');
  return {
    user: SLIPWAY_USER,
    tokenGroup: TOKEN_GROUP,
    logGroup: LOG_GROUP,
    etcDir,
    configFile: path.join(etcDir, 'agent.json'),
    tokenFile: path.join(etcDir, 'token'),
    optDir,
    agentVersionsDir: path.join(optDir, 'agent'),
    agentCurrentLink: path.join(optDir, 'agent', 'current'),
    nodeDir: path.join(optDir, 'node'),
    nodeBin: path.join(optDir, 'node', 'bin', 'node'),
    home,
    pm2Home: path.join(home, '.pm2'),
    probeSecretFile: path.join(home, 'nginx-probe.secret'),
    probeSnippetFile: path.join(home, 'nginx-probe.conf'),
    nginxIncludeDir: path.join(etcDir, 'nginx'),
    nginxConfD: at('etc', 'nginx', 'conf.d'),
    nginxHookFile: at('etc', 'nginx', 'conf.d', 'slipway.conf'),
    sudoersFile: at('etc', 'sudoers.d', 'slipway'),
    systemdUnit: at('etc', 'systemd', 'system', 'slipway.service'),
  };
}
