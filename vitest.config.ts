import { configDefaults, defineConfig } from 'vitest/config';
import { SlowFirstSequencer } from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Minutes long: run by its own config (vitest.fresh-host.config.ts, npm run test:fresh-host).
    exclude: [...configDefaults.exclude, 'test/integration/setup-fresh-host.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests start real sshd, nginx and PM2 daemons; two workers match the 2-core CI machine.
    pool: 'forks',
    maxWorkers: 2,
    // Slow files first so no minute-long file is left for the end of the run (test/sequencer.ts).
    sequence: { sequencer: SlowFirstSequencer },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
