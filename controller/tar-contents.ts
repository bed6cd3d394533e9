import { createHash } from 'node:crypto';
import * as tar from 'tar';
import { ContentTree, normalizeMode, type ContentEntry } from '../contract/release-content.js';

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * The file manifest (contract/file-manifest.ts) of a plain tar file, in tree order, and its
 * content digest (contract/release-content.ts), read back with node-tar's parser, as the agent
 * reads the upload. Entries of any other type (a hardlink, a device) are left out: the box
 * refuses the archive for them anyway.
 */
export async function tarFileManifest(file: string): Promise<{ entries: ContentEntry[]; digest: string }> {
  // In archive order: for a directory listed twice, the last mode counts.
  const entries: Array<Promise<ContentEntry | undefined>> = [];
  await tar.t({ file, strict: true, onReadEntry: (entry) => { entries.push(contentOf(entry)); } });
  const tree = new ContentTree();
  for (const entry of await Promise.all(entries)) if (entry) tree.add(entry);
  return { entries: tree.list(), digest: tree.digest() };
}

function contentOf(entry: tar.ReadEntry): Promise<ContentEntry | undefined> {
  const { path } = entry;
  if (entry.type === 'Directory') return Promise.resolve({ path, type: 'directory', mode: normalizeMode('directory', entry.mode) });
  if (entry.type === 'SymbolicLink') return Promise.resolve({ path, type: 'symlink', target: entry.linkpath ?? '' });
  if (!FILE_TYPES.has(entry.type)) return Promise.resolve(undefined);
  const mode = normalizeMode('file', entry.mode);
  const hash = createHash('sha256');
  let size = 0;
  return new Promise((resolve, reject) => {
    entry.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
    });
    entry.on('end', () => resolve({ path, type: 'file', mode, size, sha256: hash.digest('hex') }));
    entry.on('error', reject);
  });
}
