import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** The source trees tsconfig.json compiles into dist/ (its "include"). */
const SOURCE_DIRS = ['contract', 'lib', 'agent', 'controller', 'scripts', path.join('test', 'helpers')];

/**
 * Pure: the first source whose compiled file is missing or older than it (or than tsconfig.json),
 * or null when every one is at least as new: tsc would write the same dist/ again.
 */
export function firstStaleSource(sources: readonly string[], configMtimeMs: number, mtimeOf: (file: string) => number | null): string | null {
  for (const source of sources) {
    const sourceMtime = mtimeOf(source);
    const compiled = mtimeOf(path.join('dist', source.replace(/\.ts$/, '.js')));
    if (sourceMtime === null || compiled === null || compiled < sourceMtime || compiled < configMtimeMs) return source;
  }
  return null;
}

function sourcesUnder(root: string): string[] {
  return SOURCE_DIRS.flatMap((dir) => readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.d.ts'))
    .map((name) => path.join(dir, name)));
}

// Integration tests run the built programs (dist/) as separate processes, as on a real host:
// build before the run so they never exercise stale output. A dist/ newer than every source (the
// test command's scripts/setup has just built it) is not built a second time: tsc takes a core
// for tens of seconds on the 2-core CI machine before any test can start. Type errors are printed
// but do not stop the run here (tsc still emits); `npm run build` in scripts/setup is the gate that fails on them.
export default function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  const mtimeOf = (file: string) => {
    try {
      return statSync(path.join(root, file)).mtimeMs;
    } catch {
      return null;
    }
  };
  const stale = firstStaleSource(sourcesUnder(root), mtimeOf('tsconfig.json') ?? Infinity, mtimeOf);
  if (stale === null) return;
  const result = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.json')], {
    cwd: root, encoding: 'utf8',
  });
  if (result.status !== 0) process.stderr.write(`global-setup: tsc reported errors (dist/ was still emitted):\n${result.stdout}${result.stderr}\n`);
}
