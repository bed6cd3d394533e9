// npm for the real-dependency tests and bench rows (issue 12): one npm cache warmed from the
// registry once, then every install (Capistrano's, pm2 deploy's, Slipway's controller and host
// builds) runs with npm_config_offline=true from it or a copy of it, so results and figures do not
// depend on the network. The "changed lockfile" commits add a small dependency at a
// different exact version each time (a lockfile no earlier release had), resolved here once.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';
import { REPO_ROOT } from './agent-process.js';

export const DEPS_APP_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'deps-app');
/** Tiny, no dependencies of its own, many published versions. */
const EXTRA_PACKAGE = 'kleur';
const EXTRA_VERSIONS = ['4.1.5', '4.1.4', '4.1.3', '4.1.2', '4.1.1', '4.1.0', '4.0.3', '4.0.2', '4.0.1', '4.0.0', '3.0.3', '3.0.2'];

export interface LockVariant {
  label: string;
  /** package.json and package-lock.json of the app with this variant, to commit as they are. */
  files: Record<string, string>;
}

export interface NpmCache {
  /** Cache owned by root, for the Slipway controller and the agent (host builds). */
  rootCache: string;
  /** A copy of the cache owned by an unprivileged account (Capistrano's, pm2 deploy's), made once per account. */
  cacheFor(owner: { uid: number; gid: number }): Promise<string>;
  /** Offline npm settings for a cache: npm_config_cache + npm_config_offline. */
  offlineEnv(cache: string): Record<string, string>;
  variants: LockVariant[];
  /** Seconds the one online warm-up took (reported as a note). */
  warmSeconds: number;
  stop(): Promise<void>;
}

async function npm(args: string[], cwd: string, env: Record<string, string>): Promise<void> {
  const run = await runCommand(['npm', ...args, '--no-audit', '--no-fund'], { cwd, env: { ...process.env, ...env }, timeoutMs: 300_000 });
  if (run.exitCode !== 0) throw new Error(`npm ${args.join(' ')} in ${cwd} failed (exit ${run.exitCode}):\n${(run.stdout + run.stderr).slice(-2000)}`);
}

/**
 * Warms a cache with the fixture's lockfile (dev dependencies included: the controller build runs
 * `npm run build` with mustache) and resolves `count` lockfile variants, then proves an offline
 * `npm ci` works from it. The only registry traffic of the bench happens here.
 */
export async function warmNpmCache(count: number): Promise<NpmCache> {
  if (count > EXTRA_VERSIONS.length) throw new Error(`at most ${EXTRA_VERSIONS.length} lockfile variants`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-npm-'));
  const stop = () => fs.rm(dir, { recursive: true, force: true });
  try {
    await fs.chmod(dir, 0o755);
    const rootCache = path.join(dir, 'cache-root');
    const started = Date.now();
    const online = { npm_config_cache: rootCache };
    const work = path.join(dir, 'work');
    await fs.cp(DEPS_APP_DIR, work, { recursive: true });
    await npm(['ci'], work, online);
    const variants: LockVariant[] = [];
    for (const version of EXTRA_VERSIONS.slice(0, count)) {
      const variantDir = path.join(dir, `variant-${version}`);
      await fs.mkdir(variantDir);
      await fs.copyFile(path.join(DEPS_APP_DIR, 'package.json'), path.join(variantDir, 'package.json'));
      await fs.copyFile(path.join(DEPS_APP_DIR, 'package-lock.json'), path.join(variantDir, 'package-lock.json'));
      await npm(['install', '--package-lock-only', '--save-exact', `${EXTRA_PACKAGE}@${version}`], variantDir, online);
      await npm(['cache', 'add', `${EXTRA_PACKAGE}@${version}`], variantDir, online);
      variants.push({
        label: `${EXTRA_PACKAGE}@${version}`,
        files: {
          'package.json': await fs.readFile(path.join(variantDir, 'package.json'), 'utf8'),
          'package-lock.json': await fs.readFile(path.join(variantDir, 'package-lock.json'), 'utf8'),
        },
      });
    }
    const offlineEnv = (cache: string) => ({ npm_config_cache: cache, npm_config_offline: 'true' });
    // Proof that the offline installs will not need the network: the last variant, from scratch.
    const proof = path.join(dir, 'proof');
    await fs.mkdir(proof);
    const last = variants[variants.length - 1];
    if (last) for (const [name, text] of Object.entries(last.files)) await fs.writeFile(path.join(proof, name), text);
    else await fs.cp(DEPS_APP_DIR, proof, { recursive: true });
    await npm(['ci', '--omit=dev'], proof, offlineEnv(rootCache));
    const warmSeconds = (Date.now() - started) / 1000;
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(proof, { recursive: true, force: true });
    const copies = new Map<number, Promise<string>>();
    const cacheFor = (owner: { uid: number; gid: number }) => {
      let copy = copies.get(owner.uid);
      if (!copy) {
        copy = (async () => {
          const cache = path.join(dir, `cache-${owner.uid}`);
          await fs.cp(rootCache, cache, { recursive: true });
          const chown = await runCommand(['chown', '-R', `${owner.uid}:${owner.gid}`, cache], { timeoutMs: 60_000 });
          if (chown.exitCode !== 0) throw new Error(`chown of the npm cache for uid ${owner.uid} failed: ${chown.stderr}`);
          return cache;
        })();
        copies.set(owner.uid, copy);
      }
      return copy;
    };
    return { rootCache, cacheFor, offlineEnv, variants, warmSeconds, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
