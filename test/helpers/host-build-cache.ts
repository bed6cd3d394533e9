/**
 * An npm cache warmed with the deps-app fixture's packages, so host builds in tests install
 * offline (npm_config_offline=true): only the first warm-up reaches the registry. Shared by the
 * test files of a run through a fixed directory under the OS temp dir.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';
import { REPO_ROOT } from './agent-process.js';

export const DEPS_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'deps-app');
export const HOST_BUILD_NPM_CACHE = path.join(os.tmpdir(), 'slipway-test-npm-cache');

/** Fills the cache unless an offline install of the fixture already works from it. */
export async function warmNpmCache(): Promise<string> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'slipway-npm-warm-'));
  try {
    await cp(DEPS_APP_DIR, work, { recursive: true });
    const env = { ...process.env, npm_config_cache: HOST_BUILD_NPM_CACHE, npm_config_update_notifier: 'false' };
    if (existsSync(HOST_BUILD_NPM_CACHE)) {
      const offline = await runCommand(['npm', 'ci', '--no-audit', '--no-fund'], { cwd: work, env: { ...env, npm_config_offline: 'true' }, timeoutMs: 120_000 });
      if (offline.exitCode === 0) return HOST_BUILD_NPM_CACHE;
    }
    const online = await runCommand(['npm', 'ci', '--no-audit', '--no-fund'], { cwd: work, env, timeoutMs: 300_000 });
    if (online.exitCode !== 0) throw new Error(`warming the npm cache failed:\n${online.stdout}\n${online.stderr}`);
    return HOST_BUILD_NPM_CACHE;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The build env that keeps host builds offline against the warmed cache. */
export const OFFLINE_BUILD_ENV = { npm_config_cache: HOST_BUILD_NPM_CACHE, npm_config_offline: 'true' };
