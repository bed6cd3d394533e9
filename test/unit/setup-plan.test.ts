import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { rootWarning } from '../../agent/run-as.js';
import { agentPackageCacheDir, isDebianLike } from '../../controller/commands/setup.js';
import { hostLayout } from '../../controller/setup/layout.js';
import {
  agentConfig, agentProcessConfig, configDrift, execStart, nginxConflicts, policyFromRoutes, pm2Environment, processGroups, sudoersRule, systemdUnit, withApp,
} from '../../controller/setup/plan.js';
import { probeSecretPath, probeSnippetPath } from '../../agent/nginx/probe-secret.js';

const layout = hostLayout('/');
const input = { layout, app: 'shop', policy: { listenPorts: [80], serverNames: ['shop.example'] }, agentPort: 7070, tokenFile: '/etc/slipway/token' };

describe('deploy setup: what it writes (controller/setup/plan.ts)', () => {
  it('writes an agent config the agent accepts: sudo nginx, its own apps PM2 home, the app allowed what its routes claim', () => {
    const config = parseAgentConfig(agentConfig(input), 'setup agent.json');
    expect(config.nginx.command).toEqual(['sudo', '-n', '/usr/sbin/nginx']);
    expect(config.nginx.switchDir).toBe('/etc/slipway/nginx-switch');
    expect(config.pm2.home).toBe('/var/lib/slipway/pm2');
    expect(config.pm2.home).not.toBe(layout.pm2Home);
    expect(config.apps.shop).toMatchObject({ listen: { host: '*', ports: [80] }, serverNames: ['shop.example'] });
    expect(configDrift(agentConfig(input), input)).toEqual([]);
  });

  it('adds the app to an existing config and leaves the owner\'s other settings alone; names drift in the fields it relies on', () => {
    const owned = { ...agentConfig(input), apps: { other: { serverNames: ['other.example'] } }, retention: { keepReleases: 9 } };
    const next = withApp(owned, 'shop', input.policy)!;
    expect(Object.keys(next.apps as object)).toEqual(['other', 'shop']);
    expect(next.retention).toEqual({ keepReleases: 9 });
    expect(withApp(next, 'shop', { listenPorts: [8080], serverNames: ['x'] })).toBeNull();
    const drifted = { ...agentConfig(input), api: { host: '127.0.0.1', port: 7171, tokenFile: '/etc/slipway/token' } };
    expect(configDrift(drifted, input)).toEqual(['api.port is 7171, setup writes 7070']);
    expect(configDrift({ ...agentConfig(input), apps: {} }, input)).toEqual(['apps.shop is missing']);
  });

  it('checks the probe secret files where the agent writes them', () => {
    const config = parseAgentConfig(agentConfig(input), 'setup agent.json');
    expect(layout.probeSecretFile).toBe(probeSecretPath(config.home));
    expect(layout.probeSnippetFile).toBe(probeSnippetPath(config.home));
  });

  it('reads a process\'s supplementary groups from /proc/<pid>/status (the agent must have adm to read nginx\'s error log)', () => {
    expect(layout.logGroup).toBe('adm');
    expect(processGroups('Name:\tnode\nGid:\t998\t998\t998\t998\nGroups:\t4 998 \nNStgid:\t1\n')).toEqual([4, 998]);
    expect(processGroups('Name:\tnode\nGroups:\t\n')).toEqual([]);
    expect(processGroups('no such line')).toEqual([]);
  });

  it('allows the agent\'s user exactly nginx -t and nginx -s reload', () => {
    expect(sudoersRule(layout)).toContain('slipway ALL=(root) NOPASSWD: /usr/sbin/nginx -t, /usr/sbin/nginx -s reload\n');
    expect(sudoersRule(layout).split('\n').filter((l) => l && !l.startsWith('#'))).toHaveLength(1);
  });

  it('runs PM2 as slipway from the unit, in its home, without a PM2_HOME the agent would refuse', () => {
    const unit = systemdUnit(layout);
    expect(unit).toContain('User=slipway\n');
    expect(unit).toContain('WorkingDirectory=/var/lib/slipway\n');
    expect(unit).toContain(`ExecStart=${execStart(layout).join(' ')}\n`);
    expect(unit).toContain('PIDFile=/var/lib/slipway/.pm2/pm2.pid\n');
    expect(unit).not.toContain('PM2_HOME');
    expect(pm2Environment(layout).HOME).toBe('/var/lib/slipway');
    expect(() => pm2Environment({ ...layout, pm2Home: '/elsewhere/.pm2' })).toThrow(/must be <home>\/.pm2/);
    const processFile = agentProcessConfig(layout);
    expect(processFile).toContain('"PM2_HOME"');
    expect(processFile).toContain('"/opt/slipway/agent/current/dist/agent/main.js"');
    // Stopping the agent must not kill the apps' PM2 daemon, its child.
    expect(processFile).toContain('"treekill": false');
  });

  it('finds a server name another site serves in nginx -T output, and ignores its own files, comments and other names', () => {
    const dump = [
      '# configuration file /etc/nginx/nginx.conf:',
      'http { include /etc/nginx/conf.d/*.conf; include /etc/nginx/sites-enabled/*; }',
      '# configuration file /etc/nginx/sites-enabled/default:',
      'server { listen 80 default_server; server_name _; }',
      '# configuration file /etc/nginx/sites-enabled/legacy:',
      'server {',
      '  listen 80;',
      '  server_name www.example  SHOP.example;',
      '  # server_name api.example;',
      '}',
      '# configuration file /etc/slipway/nginx/shop.conf:',
      'server { listen *:80; server_name shop.example api.example; }',
    ].join('\n');
    const own = (file: string) => file.startsWith('/etc/slipway/nginx/');
    expect(nginxConflicts(dump, ['shop.example', 'api.example'], own)).toEqual([{ file: '/etc/nginx/sites-enabled/legacy', serverName: 'shop.example' }]);
    expect(nginxConflicts(dump, ['_'], own)).toEqual([{ file: '/etc/nginx/sites-enabled/default', serverName: '_' }]);
    expect(nginxConflicts(dump, ['other.example'], own)).toEqual([]);
  });

  it('derives the app\'s host policy from its routes (no spec: port 80 and the catch-all)', () => {
    expect(policyFromRoutes([{ serverNames: ['a.example', 'B.example'] }, { serverNames: ['b.example', 'c.example'], listenPort: 8080 }]))
      .toEqual({ listenPorts: [80, 8080], serverNames: ['a.example', 'B.example', 'c.example'] });
    expect(policyFromRoutes(undefined)).toEqual({ listenPorts: [80], serverNames: ['_'] });
  });

  it('knows Debian and its derivatives, and where packed agents are cached', () => {
    expect(isDebianLike('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')).toBe(true);
    expect(isDebianLike('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n')).toBe(true);
    expect(isDebianLike('ID="rocky"\nID_LIKE="rhel centos fedora"\n')).toBe(false);
    expect(agentPackageCacheDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/slipway/agent-packages');
  });

  it('warns when the agent runs as root, and only then', () => {
    expect(rootWarning(0)).toMatch(/running as ROOT/);
    expect(rootWarning(999)).toBeNull();
    expect(rootWarning(undefined)).toBeNull();
  });
});
