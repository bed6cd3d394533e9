import { configDefaults, defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The `deploy setup` suite on a fresh Debian box (test/integration/setup-fresh-host.test.ts):
// minutes long, so out of the default run; `npm run test:fresh-host`, and scripts/test runs it
// after the rest. It skips itself when the fixture (scripts/fresh-os-fixture) is not built.
// The base's settings with this one file (mergeConfig would append to the base's include list).
export default defineConfig({
  test: { ...base.test, include: ['test/integration/setup-fresh-host.test.ts'], exclude: [...configDefaults.exclude] },
});
