import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { NGINX_DEFAULTS } from '../../agent/nginx/settings.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const withNginx = (nginx: Record<string, unknown>) => ({
  home: '/srv/slipway',
  api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
  nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway', ...nginx },
  apps: {
    shop: {
      slots: { blue: { port: 3001 }, green: { port: 3002 } },
      start: { script: 'server.js' },
      public: { listenPort: 80 },
    },
  },
});

describe('the nginx section of the agent config', () => {
  it('names nginx\'s error log, a distribution nginx\'s by default', () => {
    expect(parseAgentConfig(withNginx({})).nginx.errorLogPath).toBe('/var/log/nginx/error.log');
    expect(parseAgentConfig(withNginx({ errorLogPath: '/srv/nginx/logs/error.log' })).nginx.errorLogPath).toBe('/srv/nginx/logs/error.log');
    expect(agentConfigProblems(withNginx({ errorLogPath: 'logs/error.log' }))).toEqual([expect.stringMatching(/^nginx\/errorLogPath: /)]);
  });

  it('fills every default from one place, as copies', () => {
    const a = parseAgentConfig(withNginx({}));
    expect(a.nginx).toMatchObject(NGINX_DEFAULTS);
    (a.nginx.command as string[]).push('-q');
    expect(parseAgentConfig(withNginx({})).nginx.command).toEqual(['nginx']);
    expect(NGINX_DEFAULTS.command).toEqual(['nginx']);
  });
});
