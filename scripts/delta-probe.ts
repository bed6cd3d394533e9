// `node dist/scripts/delta-probe.js [--files N] [--reps R]`: where the time of a delta push goes,
// phase by phase, without a stack: the controller's prepare (git archive + tar + hash of every
// file, as before the content hash cache; the cache cold; the cache warm after one file changed),
// the bundle, and the agent's ingest of the delta (the base files hashed, then trusted by inode).
// N files of 1 MB (hex text) plus one 10 KB file that changes; R repetitions, medians printed.
import { randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { contentHashes } from '../contract/file-manifest.js';
import { ReleaseStore } from '../agent/release/store.js';
import { buildManifest } from '../controller/manifest.js';
import { prepareRelease, type PreparedRelease } from '../controller/pack.js';
import { runCommand } from '../lib/exec.js';
import { summarize } from './bench-lib/stats.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const FILES = arg('--files', 100);
const REPS = arg('--reps', 5);
const APP = 'probe';

async function git(repo: string, ...argv: string[]): Promise<string> {
  const result = await runCommand(['git', ...argv], { cwd: repo, timeoutMs: 120_000 });
  if (result.exitCode !== 0) throw new Error(`git ${argv.join(' ')}: ${result.stderr}`);
  return result.stdout.trim();
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
}

async function main(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-delta-probe-'));
  const repo = path.join(root, 'repo');
  const cache = path.join(root, 'content-hashes.json');
  const store = new ReleaseStore({ home: path.join(root, 'home'), limits: { maxReleaseBytes: 2 ** 31, maxUnpackedBytes: 2 ** 32, maxEntries: 100_000 } });
  const rows: Record<string, number[]> = {};
  const note = (key: string, ms: number) => { (rows[key] ??= []).push(ms); };
  try {
    await fs.mkdir(path.join(repo, 'data'), { recursive: true });
    await git(repo, 'init', '-q', '-b', 'main');
    await git(repo, 'config', 'user.email', 'p@example.com');
    await git(repo, 'config', 'user.name', 'probe');
    for (let i = 0; i < FILES; i++) await fs.writeFile(path.join(repo, 'data', `blob${i}.txt`), randomBytes(512 * 1024).toString('hex'));
    const commit = async (message: string) => {
      await fs.writeFile(path.join(repo, 'data', 'changing.txt'), randomBytes(5 * 1024).toString('hex'));
      await git(repo, 'add', '-A');
      await git(repo, 'commit', '-q', '-m', message);
      return git(repo, 'rev-parse', 'HEAD');
    };
    const manifestOf = (sha: string, prep: PreparedRelease) => buildManifest({
      app: APP, sha, dirtySnapshot: null, branch: 'main', authorName: 'p', authorEmail: 'p@example.com', commitTime: new Date(0).toISOString(),
    }, prep.contentDigest, '0.0.0-probe');

    // The base: packed the old way, sent whole.
    const baseSha = await commit('base');
    const [base, coldMs] = await timed(() => prepareRelease({ repo, treeish: baseSha, include: [], mtime: new Date(0), hashCache: cache }));
    note('controller prepare, cache cold (ls-tree + cat-file + sha256 of every file)', coldMs);
    const baseManifest = manifestOf(baseSha, base);
    const [packed, sealMs] = await timed(() => base.seal(baseManifest));
    note('controller seal for a full upload (tar from git + check + gzip)', sealMs);
    await store.ingest({ app: APP, releaseId: baseManifest.releaseId, sha256: packed.sha256, source: createReadStream(packed.file), expectedBytes: packed.bytes });
    await base.cleanup();

    for (let rep = 0; rep < REPS; rep++) {
      const sha = await commit(`change ${rep}`);
      const [old, oldMs] = await timed(() => prepareRelease({ repo, treeish: sha, include: [], mtime: new Date(0), packAtOnce: true }));
      note('controller prepare, as before (git archive + tar writer + sha256 of every file)', oldMs);
      await old.cleanup();
      const [prep, warmMs] = await timed(() => prepareRelease({ repo, treeish: sha, include: [], mtime: new Date(0), hashCache: cache }));
      note('controller prepare, cache warm (ls-tree, one file hashed)', warmMs);
      const manifest = manifestOf(sha, prep);
      const [missing, askMs] = await timed(() => store.missingContents(APP, contentHashes(prep.files)));
      note('agent: which contents it lacks', askMs);
      const [bundle, bundleMs] = await timed(() => prep.bundle(manifest, new Set(missing)));
      note('controller: cut the bundle', bundleMs);
      const [, ingestMs] = await timed(() => store.ingestDelta({ app: APP, releaseId: manifest.releaseId, sha256: bundle.sha256, source: createReadStream(bundle.file), expectedBytes: bundle.bytes }));
      note(rep === 0 ? 'agent: receive + assemble + verify + sync (base files hashed: first delta)' : 'agent: receive + assemble + verify + sync (base files trusted)', ingestMs);
      await prep.cleanup();
    }
    const load = (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    process.stdout.write(`delta probe: ${FILES} files of 1 MB + one 10 KB file changed, ${REPS} reps, load ${load}\n`);
    for (const [key, samples] of Object.entries(rows)) {
      const s = summarize(samples)!;
      process.stdout.write(`| ${key} | ${s.median.toFixed(0)} ms (${Math.min(...samples).toFixed(0)}–${Math.max(...samples).toFixed(0)}, n=${samples.length}) |\n`);
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

await main();
