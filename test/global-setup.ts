import { spawnSync } from 'node:child_process';
import path from 'node:path';

// Integration tests run the built programs (dist/) as separate processes, as on a real host:
// build once per test run so they never exercise stale output. Type errors are printed but do not
// stop the run here (tsc still emits); `npm run build` in scripts/setup is the gate that fails on them.
export default function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  const result = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.json')], {
    cwd: root, encoding: 'utf8',
  });
  if (result.status !== 0) process.stderr.write(`global-setup: tsc reported errors (dist/ was still emitted):\n${result.stdout}${result.stderr}\n`);
}
