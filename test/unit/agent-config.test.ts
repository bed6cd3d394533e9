import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { agentConfigProblems } from '../helpers/expect-error.js';

const valid = () => ({
  home: '/srv/slipway',
  api: { port: 7070, tokenFile: '/etc/slipway/agent.token' },
  nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
  apps: {
    shop: {
      slots: { blue: { port: 3001 }, green: { port: 3002 } },
      start: { script: 'server.js' },
      public: { listenPort: 80, serverNames: ['shop.example.com'] },
    },
  },
});

const problems = agentConfigProblems;

describe('agent config', () => {
  it('fills defaults for everything optional', () => {
    const config = parseAgentConfig(valid());
    expect(config.api.host).toBe('127.0.0.1');
    expect(config.pm2.home).toBe('/srv/slipway/pm2');
    expect(config.nginx.command).toEqual(['nginx']);
    expect(config.nginx.testArgs).toEqual(['-t']);
    expect(config.limits.maxEntries).toBe(100_000);
    expect(config.apps.shop!.health).toEqual({ path: '/health', expectStatus: 200, timeoutMs: 2000, intervalMs: 250, retries: 120 });
    expect(config.apps.shop!.start!.args).toEqual([]);
    expect(config.apps.shop!.requiredEnv).toEqual([]);
  });

  it('does not modify the object it was given', () => {
    const raw = valid();
    parseAgentConfig(raw);
    expect(raw).toEqual(valid());
  });

  it('lists every problem with its path', () => {
    const raw = valid() as Record<string, any>;
    raw.api.host = '0.0.0.0';
    raw.api.port = '7070';
    raw.apps.shop.slots.green.port = 70000;
    raw.apps.shop.helth = {};
    expect(problems(raw)).toEqual(expect.arrayContaining([
      expect.stringMatching(/^api\/host: must be one of "127.0.0.1", "::1"/),
      'api/port: must be integer',
      'apps/shop/slots/green/port: must be <= 65535',
      expect.stringMatching(/^apps\/shop\/helth: is not a known field/),
    ]));
  });

  it('rejects app and server names that could break out of nginx config or paths', () => {
    const raw = valid() as Record<string, any>;
    raw.apps['shop;evil'] = raw.apps.shop;
    raw.apps.shop.public.serverNames = ['shop.example.com;\n}'];
    const found = problems(raw);
    expect(found.some((p) => p.includes('shop;evil'))).toBe(true);
    expect(found.some((p) => p.startsWith('apps/shop/public/serverNames/0'))).toBe(true);
  });

  it('rejects a start script outside the release and colliding ports', () => {
    const raw = valid() as Record<string, any>;
    raw.apps.shop.start.script = '../../bin/sh';
    expect(problems(raw)[0]).toMatch(/^apps\/shop\/start\/script/);
    const clash = valid() as Record<string, any>;
    clash.apps.shop.slots.green.port = 3001;
    expect(problems(clash)).toContain('apps/shop/slots: blue and green must use different ports');
  });
});
