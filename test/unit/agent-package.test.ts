import { describe, expect, it } from 'vitest';
import {
  agentModuleLocations, agentPackageMarker, agentPackageVersion, digestLine, parseAgentPackageMarker,
} from '../../controller/setup/agent-package.js';
import type { Lockfile } from '../../lib/npm-lock.js';

describe('agent package (controller/setup/agent-package.ts): pure parts', () => {
  const lock: Lockfile = {
    lockfileVersion: 3,
    packages: {
      '': {},
      'node_modules/a': { version: '1.0.0', dependencies: { b: '^2' }, optionalDependencies: { native: '^1', absent: '^1' } },
      'node_modules/b': { version: '1.0.0' },
      'node_modules/a/node_modules/b': { version: '2.0.0', dependencies: { c: '^1' } },
      'node_modules/c': { version: '1.0.0' },
      'node_modules/native': { version: '1.0.0', optional: true },
      'node_modules/dev-tool': { version: '1.0.0', dev: true },
    },
  };

  it('carries the production closure at the lockfile\'s locations; optional ones only when installed, dev ones never', () => {
    expect(agentModuleLocations(lock, ['a'], () => true)).toEqual(['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c', 'node_modules/native']);
    expect(agentModuleLocations(lock, ['a'], (location) => location !== 'node_modules/native')).toEqual(['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c']);
  });

  it('refuses a dependency the lockfile does not have', () => {
    expect(() => agentModuleLocations(lock, ['a', 'missing'], () => true)).toThrow(/package-lock.json has no missing for the agent/);
  });

  it('names an install by package version and digest; the marker reads back and a forged one does not', () => {
    const digest = 'ab'.repeat(32);
    const info = { version: agentPackageVersion('0.1.0', digest), digest, packageVersion: '0.1.0' };
    expect(info.version).toBe('0.1.0-abababababab');
    expect(parseAgentPackageMarker(agentPackageMarker(info))).toEqual(info);
    expect(parseAgentPackageMarker(JSON.stringify({ ...info, version: '0.1.0-cdcdcdcdcdcd' }))).toBeNull();
    expect(parseAgentPackageMarker('not json')).toBeNull();
  });

  it('digests kind, mode, content and path of every entry', () => {
    const line = digestLine({ path: 'dist/agent/main.js', mode: 0o100755, kind: 'file', content: 'ff' });
    expect(line).toBe('file 755 ff dist/agent/main.js\n');
    expect(digestLine({ path: 'x', mode: 0o120777, kind: 'symlink', content: '../y' })).toBe('symlink 777 ../y x\n');
  });
});
