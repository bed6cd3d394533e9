/**
 * `bash scripts/pack-cli [--out DIR]`: writes slipway-cli-<version>.tgz, the `deploy` CLI as a
 * package of its own (see cli-package.ts). Install it on a laptop or CI runner with
 * `npm install -g ./slipway-cli-<version>.tgz`.
 */
import path from 'node:path';
import { packageRoot } from '../contract/version.js';
import { packCli } from './cli-package.js';

const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const outDir = outIndex >= 0 && args[outIndex + 1] ? path.resolve(args[outIndex + 1]!) : process.cwd();

packCli(packageRoot(), outDir).then(({ tarball, dependencies }) => {
  process.stdout.write(`${tarball}\n`);
  process.stderr.write(`dependencies: ${Object.entries(dependencies).map(([name, range]) => `${name}@${range}`).join(', ')}\n`);
}, (error: unknown) => {
  process.stderr.write(`pack-cli: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
