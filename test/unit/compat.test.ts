import { describe, expect, it } from 'vitest';
import { incompatibility } from '../../controller/compat.js';

describe('the version check on connect', () => {
  it('lets the same API version through, whatever the release numbers', () => {
    expect(incompatibility({ version: '0.2.0', apiVersion: 2 }, { version: '0.2.5', apiVersion: 2 }, 'deploy@box:22')).toBeNull();
  });

  it('refuses an older agent, naming both versions and how to upgrade it', () => {
    const error = incompatibility({ version: '0.2.0', apiVersion: 2 }, { version: '0.1.0', apiVersion: 1 }, 'deploy@box:22')!;
    expect(error.code).toBe('agent_incompatible');
    expect(error.kind).toBe('refused');
    expect(error.message).toContain('slipway 0.2.0, API 2');
    expect(error.message).toContain('agent on deploy@box:22 (slipway 0.1.0, API 1)');
    expect(error.hint).toMatch(/^upgrade the agent on deploy@box:22 to slipway 0\.2\.0/);
  });

  it('refuses a newer agent, telling to upgrade the controller', () => {
    const error = incompatibility({ version: '0.2.0', apiVersion: 2 }, { version: '0.3.0', apiVersion: 3 }, 'deploy@box:22')!;
    expect(error.hint).toMatch(/^upgrade this controller to slipway 0\.3\.0/);
  });
});
