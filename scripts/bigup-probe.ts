// `node dist/scripts/bigup-probe.js [--mb N] [--reps R] [--hosts H]`: where the time of a big
// release's push goes on the controller and in the agent's ingest, phase by phase, without a stack
// or SSH (issue 15's `fleet.upload` row): a small app committed and stored as the base, then a
// commit adding N MB of random bytes (as the bench's row does); for it, the controller's prepare
// (content hash cache cold), the delta bundle (once, and H at once as a fleet of H hosts asks for
// it), the agent's delta ingest, and the full tarball (seal) with its ingest. Wall ms and CPU ms
// (this process and its waited-for children: git) per phase; R repetitions, each row's samples printed.
import { createReadStream, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { contentHashes } from '../contract/file-manifest.js';
import { ReleaseStore } from '../agent/release/store.js';
import { buildManifest } from '../controller/manifest.js';
import { prepareRelease, type PreparedRelease } from '../controller/pack.js';
import { runCommand } from '../lib/exec.js';
import { writeRandomFile } from './bench-lib/release-data.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const MB = arg('--mb', 100);
const REPS = arg('--reps', 2);
const HOSTS = arg('--hosts', 3);
const APP = 'probe';
const TICK_MS = 1000 / 100; // USER_HZ

async function git(repo: string, ...argv: string[]): Promise<string> {
  const result = await runCommand(['git', ...argv], { cwd: repo, timeoutMs: 300_000 });
  if (result.exitCode !== 0) throw new Error(`git ${argv.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
}

/** CPU ms of this process plus its waited-for children (/proc/self/stat utime, stime, cutime, cstime). */
function cpuMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) * TICK_MS;
}

async function main(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bigup-probe-'));
  const repo = path.join(root, 'repo');
  const cache = path.join(root, 'content-hashes.json');
  const limits = { maxReleaseBytes: 2 ** 31, maxUnpackedBytes: 2 ** 32, maxEntries: 100_000 };
  const rows = new Map<string, string[]>();
  const phase = async <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const [wall, cpu] = [performance.now(), cpuMs()];
    const value = await fn();
    const line = `${(performance.now() - wall).toFixed(0)} ms (cpu ${(cpuMs() - cpu).toFixed(0)})`;
    rows.set(key, [...(rows.get(key) ?? []), line]);
    return value;
  };
  try {
    await fs.mkdir(path.join(repo, 'src'), { recursive: true });
    await git(repo, 'init', '-q', '-b', 'main');
    await git(repo, 'config', 'user.email', 'p@example.com');
    await git(repo, 'config', 'user.name', 'probe');
    for (let i = 0; i < 20; i++) await fs.writeFile(path.join(repo, 'src', `m${i}.js`), `export const v${i} = ${i};\n`.repeat(2000));
    const manifestOf = (sha: string, prep: PreparedRelease) => buildManifest({
      app: APP, sha, dirtySnapshot: null, branch: 'main', authorName: 'p', authorEmail: 'p@example.com', commitTime: new Date(0).toISOString(),
    }, prep.contentDigest, '0.0.0-probe');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'base');
    const baseSha = await git(repo, 'rev-parse', 'HEAD');
    const stores = [...Array(HOSTS).keys()].map((i) => new ReleaseStore({ home: path.join(root, `home${i}`), limits }));
    const base = await prepareRelease({ repo, treeish: baseSha, include: [], mtime: new Date(0), hashCache: cache });
    const basePacked = await base.seal(manifestOf(baseSha, base));
    for (const store of stores) {
      await store.ingest({ app: APP, releaseId: manifestOf(baseSha, base).releaseId, sha256: basePacked.sha256, source: createReadStream(basePacked.file), expectedBytes: basePacked.bytes });
    }
    await base.cleanup();

    for (let rep = 0; rep < REPS; rep++) {
      await writeRandomFile(path.join(repo, 'big.bin'), MB * 1024 * 1024, `probe-${rep}`);
      await phase('git add + commit (before the push, not in it)', async () => {
        await git(repo, 'add', '-A');
        await git(repo, 'commit', '-q', '-m', `big ${rep}`);
      });
      const sha = await git(repo, 'rev-parse', 'HEAD');
      await phase('git status (the push\'s dirty check)', () => git(repo, 'status', '--porcelain', '--untracked-files=no'));
      const prep = await phase('controller prepare, cache cold (ls-tree + cat-file + sha256)', () => prepareRelease({ repo, treeish: sha, include: [], mtime: new Date(0), hashCache: cache }));
      try {
        const manifest = manifestOf(sha, prep);
        const missing = new Set(await stores[0]!.missingContents(APP, contentHashes(prep.files)));
        const one = await phase('controller bundle, one host', () => prep.bundle(manifest, missing));
        rows.set('bundle bytes', [...(rows.get('bundle bytes') ?? []), `${one.bytes}`]);
        await phase(`controller: the same bundle asked for by ${HOSTS} hosts at once (cut once: 0 if shared)`, () => Promise.all(stores.map(() => prep.bundle(manifest, missing))));
        await phase('agent delta ingest (receive from file + unpack + hash + assemble + verify + sync)', () => stores[0]!.ingestDelta({
          app: APP, releaseId: manifest.releaseId, sha256: one.sha256, source: createReadStream(one.file), expectedBytes: one.bytes,
        }));
        const packed = await phase('controller seal (full tarball: tar from git + check + gzip)', () => prep.seal(manifest));
        rows.set('tarball bytes', [...(rows.get('tarball bytes') ?? []), `${packed.bytes}`]);
        await phase('agent full ingest (receive from file + unpack + hash + verify + sync)', () => stores[1]!.ingest({
          app: APP, releaseId: manifest.releaseId, sha256: packed.sha256, source: createReadStream(packed.file), expectedBytes: packed.bytes,
        }));
      } finally {
        await prep.cleanup();
      }
    }
    const load = (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    process.stdout.write(`bigup probe: ${MB} MB of random bytes added to a small app, ${REPS} reps, load ${load} (at the end)\n`);
    for (const [key, samples] of rows) process.stdout.write(`| ${key} | ${samples.join(' / ')} |\n`);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

await main();
