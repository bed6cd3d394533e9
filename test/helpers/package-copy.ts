import { cp, mkdir, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from './agent-process.js';

/**
 * A copy of this checkout's built package under another version (its package.json's only
 * difference): the controller run from it packs, and `deploy upgrade` installs, a genuinely
 * different agent (another version and digest), with no switch in the product for it. dist/ is
 * copied (packageRoot() finds the copy from its own files); node_modules is a link to this
 * checkout's, which the agent package copies from.
 */
export interface PackageCopy { root: string; version: string; controllerMain: string }

/** Pure: "0.1.0" → "0.1.1" (a pre-release or build suffix is dropped). */
export function nextPatch(version: string): string {
  const [major, minor, patch] = version.split(/[-+]/)[0]!.split('.').map(Number);
  return `${major}.${minor}.${(patch ?? 0) + 1}`;
}

export async function packageWithVersion(parent: string, version: string): Promise<PackageCopy> {
  const root = path.join(parent, `slipway-${version}`);
  await mkdir(root, { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(path.join(root, 'package.json'), `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
  await cp(path.join(REPO_ROOT, 'package-lock.json'), path.join(root, 'package-lock.json'));
  await cp(path.join(REPO_ROOT, 'nginx'), path.join(root, 'nginx'), { recursive: true });
  for (const dir of ['agent', 'contract', 'lib', 'controller']) {
    await cp(path.join(REPO_ROOT, 'dist', dir), path.join(root, 'dist', dir), { recursive: true });
  }
  await symlink(await realpath(path.join(REPO_ROOT, 'node_modules')), path.join(root, 'node_modules'));
  return { root, version, controllerMain: path.join(root, 'dist', 'controller', 'main.js') };
}
