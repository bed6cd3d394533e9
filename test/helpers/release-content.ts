/**
 * Releases a test builds by hand must carry the content digest the agent recomputes from what it
 * unpacks (contract/release-content.ts), or they are refused. These compute it for crafted
 * entries and for a directory about to be archived, using the contract's own definition.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { MANIFEST_FILE, type ReleaseManifest } from '../../contract/manifest.js';
import { ContentTree, releaseIdFor, treePath } from '../../contract/release-content.js';
import type { CraftEntry } from './crafted-tar.js';

export const randomCommit = (): string => randomBytes(20).toString('hex');

const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** The content digest of crafted entries (files, directories, symlinks; `prefix` joined), as the agent computes it. */
export function contentDigestOfEntries(entries: CraftEntry[]): string {
  const tree = new ContentTree();
  for (const entry of entries) {
    const entryPath = entry.prefix === undefined ? entry.path : `${entry.prefix}/${entry.path}`;
    const type = entry.type ?? 'file';
    if (type === 'dir') tree.add({ path: entryPath, type: 'directory', mode: entry.mode ?? 0o755 });
    else if (type === 'symlink') tree.add({ path: entryPath, type: 'symlink', target: entry.linkpath ?? '' });
    else if (type === 'file' || type === 'contiguous') {
      const body = entry.body === undefined ? Buffer.alloc(0) : Buffer.from(entry.body);
      tree.add({ path: entryPath, type: 'file', mode: entry.mode ?? 0o644, size: body.length, sha256: sha256Hex(body) });
    }
  }
  return tree.digest();
}

/**
 * The content digest of a release the agent stored: it strips every write bit after ingest (a
 * release is read-only), and the packer gives every entry its owner's write bit (0644/0755).
 */
export function contentDigestOfStoredRelease(dir: string): Promise<string> {
  return contentDigestOfTree(dir, (mode) => mode | 0o200);
}

/** The content digest a release gets when `dir` is archived as its root (modes as on disk, or as `modeOf` maps them). */
export async function contentDigestOfTree(dir: string, modeOf: (mode: number) => number = (mode) => mode): Promise<string> {
  const tree = new ContentTree();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(path.join(dir, rel))) {
      const child = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, child);
      const st = await lstat(full);
      if (st.isSymbolicLink()) tree.add({ path: child, type: 'symlink', target: await readlink(full) });
      else if (st.isDirectory()) {
        tree.add({ path: child, type: 'directory', mode: modeOf(st.mode & 0o7777) });
        await walk(child);
      } else tree.add({ path: child, type: 'file', mode: modeOf(st.mode & 0o7777), size: st.size, sha256: sha256Hex(await readFile(full)) });
    }
  };
  await walk('');
  return tree.digest();
}

export function releaseManifest(app: string, sha: string, contentDigest: string): ReleaseManifest {
  return {
    schemaVersion: 2, app, releaseId: releaseIdFor(sha, contentDigest), sha, shortSha: sha.slice(0, 7), contentDigest, dirty: false,
    branch: 'main', author: { name: 'Test', email: 'test@example.com' },
    commitTime: '2024-01-01T00:00:00Z', buildTime: '2024-01-01T00:00:01Z', controllerVersion: '0.1.0',
  };
}

/**
 * A crafted release the agent accepts: the body of its `manifest.json` entry (mode and position
 * kept) becomes the manifest of `sha` with the other entries' content digest.
 */
export function sealRelease(app: string, entries: CraftEntry[], sha = randomCommit()): { releaseId: string; entries: CraftEntry[] } {
  const manifest = releaseManifest(app, sha, contentDigestOfEntries(entries));
  const sealed = entries.map((entry) => (treePath(entry.path) === MANIFEST_FILE ? { ...entry, body: JSON.stringify(manifest) } : entry));
  return { releaseId: manifest.releaseId, entries: sealed };
}
