import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The whole project, and the `deploy` CLI packed on its own (scripts/pack-cli): both carry the version. */
const PACKAGE_NAMES = new Set(['slipway', 'slipway-cli']);

/** The package root, found by walking up from this file (works from source, from dist/ and from the CLI package). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate) && PACKAGE_NAMES.has((JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name ?? '')) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the slipway package root');
}

export const VERSION: string = (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
