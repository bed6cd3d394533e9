import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Minutes long: run by its own config (vitest.fresh-host.config.ts, npm run test:fresh-host).
    exclude: [...configDefaults.exclude, 'test/integration/setup-fresh-host.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests start real sshd, nginx and PM2 daemons; two workers match the 2-core CI machine.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
