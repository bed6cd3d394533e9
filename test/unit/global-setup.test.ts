import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstStaleSource } from '../global-setup.js';

describe('whether the test run builds dist/ again (test/global-setup.ts)', () => {
  const sources = ['agent/a.ts', 'lib/b.ts'];
  const dist = (source: string) => path.join('dist', source.replace(/\.ts$/, '.js'));
  const times = (entries: Record<string, number>) => (file: string) => entries[file] ?? null;

  it('not when every compiled file is at least as new as its source and tsconfig.json', () => {
    expect(firstStaleSource(sources, 5, times({ 'agent/a.ts': 10, [dist('agent/a.ts')]: 10, 'lib/b.ts': 20, [dist('lib/b.ts')]: 30 }))).toBeNull();
  });

  it('when a source is newer than its compiled file, or that file is missing', () => {
    expect(firstStaleSource(sources, 5, times({ 'agent/a.ts': 10, [dist('agent/a.ts')]: 11, 'lib/b.ts': 31, [dist('lib/b.ts')]: 30 }))).toBe('lib/b.ts');
    expect(firstStaleSource(sources, 5, times({ 'agent/a.ts': 10, 'lib/b.ts': 20, [dist('lib/b.ts')]: 30 }))).toBe('agent/a.ts');
  });

  it('when tsconfig.json changed after the build', () => {
    expect(firstStaleSource(sources, 25, times({ 'agent/a.ts': 10, [dist('agent/a.ts')]: 30, 'lib/b.ts': 20, [dist('lib/b.ts')]: 21 }))).toBe('lib/b.ts');
  });
});
