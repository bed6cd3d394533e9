import { configDefaults, defineConfig } from 'vitest/config';
import { SlowFirstSequencer } from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Minutes long: run by its own config (vitest.fresh-host.config.ts, npm run test:fresh-host).
    exclude: [...configDefaults.exclude, 'test/integration/setup-fresh-host.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests start real sshd, nginx and PM2 daemons and mostly wait on them (pushes,
    // health checks, watch windows): on the 2-core CI machine a third worker fills that waiting.
    // Ten integration files in alternating runs on a shared (busy) 2-core machine: 3 workers 97 s
    // and 118 s, 2 workers 214 s and 227 s; no file took longer with the third worker.
    pool: 'forks',
    maxWorkers: 3,
    // Slow files first so no minute-long file is left for the end of the run (test/sequencer.ts).
    sequence: { sequencer: SlowFirstSequencer },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
