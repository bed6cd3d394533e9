import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CI_FILE_MS, slowFirst } from '../sequencer.js';
import { REPO_ROOT } from '../helpers/agent-process.js';

describe('the order test files are handed to the workers (test/sequencer.ts)', () => {
  const sizes: Record<string, number> = {
    'test/unit/big.test.ts': 90_000,
    'test/unit/small.test.ts': 1_000,
    'test/integration/crash-recovery.test.ts': 4_000,
    'test/integration/nginx-reload-reason.test.ts': 1_500,
    'test/integration/release-store.test.ts': 40_000,
    'test/reliability/transport.test.ts': 12_000,
    'test/bench/stats.test.ts': 3_000,
  };
  const order = (files: string[]) => slowFirst(files, (f) => f, (f) => sizes[f] ?? 0);

  it('known-slow files first, longest first; then integration and reliability largest first; then the rest', () => {
    expect(order(Object.keys(sizes))).toEqual([
      'test/integration/crash-recovery.test.ts',
      'test/integration/nginx-reload-reason.test.ts',
      'test/integration/release-store.test.ts',
      'test/reliability/transport.test.ts',
      'test/unit/big.test.ts',
      'test/bench/stats.test.ts',
      'test/unit/small.test.ts',
    ]);
  });

  it('names only test files that exist', () => {
    for (const file of Object.keys(CI_FILE_MS)) expect(existsSync(path.join(REPO_ROOT, file)), file).toBe(true);
  });
});
