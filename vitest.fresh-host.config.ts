import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

// The `deploy setup` suite on a fresh Debian box (test/integration/setup-fresh-host.test.ts):
// minutes long, so out of the default run; `npm run test:fresh-host`, and scripts/test runs it
// after the rest. It skips itself when the fixture (scripts/fresh-os-fixture) is not built.
export default mergeConfig(base, defineConfig({
  test: { include: ['test/integration/setup-fresh-host.test.ts'], exclude: [] },
}));
