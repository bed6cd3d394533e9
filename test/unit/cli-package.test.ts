/**
 * The controller stands on its own: nothing in controller/, contract/ or lib/ imports from agent/,
 * and the packages it imports are the CLI package's dependencies, none of them the agent's.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { classifyImports, cliLockfile, cliPackageJson, importSpecifiers, packageOf, resolveInLock, type Lockfile } from '../../scripts/cli-package.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CLI_SOURCE_DIRS = ['controller', 'contract', 'lib'];
/**
 * Packages only the agent may use: a CLI install must not compile or download them. fastify is
 * not among them since `deploy ui` serves its page with it (pure JS: nothing compiled).
 */
const AGENT_ONLY = ['better-sqlite3', 'pm2', 'pino', 'nunjucks', 'node-cron'];

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.join(entry.parentPath, entry.name));
}

const cliSources = CLI_SOURCE_DIRS.flatMap(tsFiles).map((file) => ({ file: path.relative(ROOT, file), specifiers: importSpecifiers(readFileSync(file, 'utf8')) }));

describe('the controller imports nothing from the agent', () => {
  it('no module of controller/, contract/ or lib/ imports (even a type) from agent/', () => {
    expect(cliSources.length).toBeGreaterThan(20);
    const intoAgent = cliSources.flatMap(({ file, specifiers }) => classifyImports(specifiers).relative
      .filter((specifier) => path.relative(ROOT, path.resolve(ROOT, path.dirname(file), specifier)).split(path.sep)[0] === 'agent')
      .map((specifier) => `${file} imports ${specifier}`));
    expect(intoAgent).toEqual([]);
  });

  it('the packages it imports are declared dependencies, and none is the agent\'s', () => {
    const packages = new Set(cliSources.flatMap(({ specifiers }) => classifyImports(specifiers).packages));
    const root = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    const manifest = cliPackageJson(root, [...packages]);
    expect(Object.keys(manifest.dependencies as object).sort()).toEqual([...packages].sort());
    expect([...packages].filter((name) => AGENT_ONLY.includes(name))).toEqual([]);
    expect(manifest).toMatchObject({ name: 'slipway-cli', version: root.version, bin: { deploy: 'dist/controller/main.js' } });
  });
});

describe('CLI package helpers', () => {
  it('finds static, re-exported, side-effect and dynamic imports, across lines', () => {
    const source = [
      "import { a } from './a.js';",
      'import {',
      '  b,',
      "} from 'ssh2';",
      "import type { C } from '../../agent/x.js';",
      "export * from './re.js';",
      "import 'side-effect';",
      "const lazy = await import('@scope/pkg/sub');",
      "const text = 'not an import from here';",
    ].join('\n');
    expect(importSpecifiers(source).sort()).toEqual(['../../agent/x.js', './a.js', './re.js', '@scope/pkg/sub', 'side-effect', 'ssh2'].sort());
    expect([packageOf('node:fs'), packageOf('fs/promises'), packageOf('@scope/pkg/sub'), packageOf('ajv/dist/x')]).toEqual([null, null, '@scope/pkg', 'ajv']);
  });

  const lock: Lockfile = {
    lockfileVersion: 3,
    packages: {
      '': {},
      'node_modules/a': { version: '1.0.0', dependencies: { b: '^2' }, optionalDependencies: { native: '^1' } },
      'node_modules/b': { version: '1.0.0' },
      'node_modules/a/node_modules/b': { version: '2.0.0', dependencies: { c: '^1' } },
      'node_modules/c': { version: '1.0.0', dev: true },
      'node_modules/native': { version: '1.0.0', optional: true },
      'node_modules/agent-only': { version: '9.0.0' },
    },
  };

  it('resolves a dependency in a lockfile as node would: nested first, then up the tree', () => {
    expect(resolveInLock(lock.packages, 'node_modules/a', 'b')).toBe('node_modules/a/node_modules/b');
    expect(resolveInLock(lock.packages, 'node_modules/a/node_modules/b', 'c')).toBe('node_modules/c');
    expect(resolveInLock(lock.packages, '', 'b')).toBe('node_modules/b');
    expect(resolveInLock(lock.packages, '', 'missing')).toBeNull();
  });

  it('cuts the CLI\'s lockfile out of the project\'s: its closure only, at the same paths, without dev flags', () => {
    const cut = cliLockfile(lock, { name: 'slipway-cli', version: '0.1.0', dependencies: { a: '^1' } });
    expect(Object.keys(cut.packages)).toEqual(['', 'node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c', 'node_modules/native']);
    expect(cut.packages['node_modules/c']).toEqual({ version: '1.0.0' });
    expect(cut.packages['']).toEqual({ name: 'slipway-cli', version: '0.1.0', dependencies: { a: '^1' } });
  });
});
