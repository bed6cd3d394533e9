import { existsSync, readFileSync, accessSync, constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Tests that install npm dependencies (controller-side and host builds of test/fixtures/deps-app)
// never reach the registry while they run: scripts/setup (scripts/warm-test-npm-cache) fills a
// cache outside the repository once, and tests install from it with npm_config_offline=true.
// The directory: $SLIPWAY_TEST_NPM_CACHE, else /var/cache/slipway-test-npm where /var/cache is
// writable (root, CI), else ~/.cache/slipway-test-npm; the warm-up script picks it the same way.

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const NPM_TEST_CACHE = process.env.SLIPWAY_TEST_NPM_CACHE
  ?? (writable('/var/cache') ? '/var/cache/slipway-test-npm' : path.join(os.homedir(), '.cache', 'slipway-test-npm'));

/** Written by the warm-up with the hash of the fixtures' lockfiles it installed. */
const WARMED_MARK = '.slipway-warmed';

/** npm settings (as env) for a test's installs: the warm cache only, no audit, fund or update checks. */
export function npmOfflineEnv(): Record<string, string> {
  return {
    npm_config_cache: NPM_TEST_CACHE,
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
}

/** Fails a test early, with the fix, when the cache was never warmed (an offline install would fail obscurely). */
export function requireWarmNpmCache(): void {
  const mark = path.join(NPM_TEST_CACHE, WARMED_MARK);
  if (!existsSync(mark) || !readFileSync(mark, 'utf8').trim()) {
    throw new Error(`the test npm cache ${NPM_TEST_CACHE} is not warm: run bash scripts/setup (or bash scripts/warm-test-npm-cache) once, with network`);
  }
}
