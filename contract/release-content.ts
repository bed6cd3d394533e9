/**
 * A release's identity: a digest over its file manifest. The controller computes it when it packs
 * (from the tar it is about to send), records it in manifest.json with the commit SHA beside it,
 * and names the release after both; the agent recomputes it from what it actually unpacked and
 * refuses to publish a release whose files do not match. The tarball's sha256 stays a transport
 * check only: packing the same files twice (other mtimes, other compression) gives the same id,
 * and other files for one commit (a fixed build output) give a new one.
 *
 * Release id: `<first 12 hex of the commit sha>-<first 12 hex of the content digest>`.
 *
 * Canonical encoding, version 1 (the digest is the sha256 of these UTF-8 bytes):
 *
 *     "slipway-release-content-v1\n"
 *     one line per entry of the release tree, sorted by the path's UTF-8 bytes:
 *     JSON.stringify([path, type, mode, size, sha256, target]) + "\n"
 *
 * - path: relative, `/`-separated, no `.` or empty segments (`a/b`);
 * - type: "file", "directory" or "symlink";
 * - mode: the permission bits the release gets on the box (normalizeMode), as an octal string
 *   ("644"); null for a symlink;
 * - size and sha256: the file's byte count and the hex sha256 of its content; null otherwise;
 * - target: the symlink's target exactly as written; null otherwise.
 *
 * The tree holds every directory, including those the archive only implies (mode
 * IMPLIED_DIR_MODE), and for a directory listed twice the last mode; it leaves out the root
 * itself, manifest.json at the root, which carries the digest, and DEPLOYMENT_INFO.json at the root,
 * which the agent writes when it publishes (contract/deployment-info.ts). JSON.stringify makes every
 * line unambiguous whatever the names hold.
 */
import { createHash } from 'node:crypto';
import { MANIFEST_FILE } from './manifest.js';
import { DEPLOYMENT_INFO_FILE } from './deployment-info.js';

export type ContentEntry =
  | { path: string; type: 'file'; mode: number; size: number; sha256: string }
  | { path: string; type: 'directory'; mode: number }
  | { path: string; type: 'symlink'; target: string };

export type ContentKind = ContentEntry['type'];

const ENCODING_HEADER = 'slipway-release-content-v1\n';
/** Directories the archive implies without an entry of their own. */
export const IMPLIED_DIR_MODE = 0o755;

/** `<first 12 hex of the commit sha>-<first 12 hex of the content digest>`. */
export function releaseIdFor(commitSha: string, contentDigest: string): string {
  return `${commitSha.slice(0, 12)}-${contentDigest.slice(0, 12)}`;
}

/**
 * The mode a release entry gets on the box. Releases never need setuid/setgid/sticky nor group or
 * world write; owner read (and for directories owner rwx) is forced so that the app, running as
 * the agent's user, can always load its own files.
 */
export function normalizeMode(kind: ContentKind, mode: number | undefined): number {
  if (kind === 'symlink') return 0o777;
  if (kind === 'directory') return ((mode ?? 0o755) & 0o755) | 0o700;
  return ((mode ?? 0o644) & 0o755) | 0o400;
}

/** `./a//b/` -> `a/b`; '' for the root. `..` is kept: whether it is allowed is the caller's rule. */
export function treePath(archivePath: string): string {
  return archivePath.split('/').filter((s) => s !== '' && s !== '.').join('/');
}

/** The digest of a release tree (see the encoding above); the root, the manifest and the deployment info are skipped. */
export function contentDigest(entries: Iterable<ContentEntry>): string {
  const lines: Array<{ key: Buffer; line: string }> = [];
  for (const entry of entries) {
    const path = treePath(entry.path);
    if (path === '' || path === MANIFEST_FILE || path === DEPLOYMENT_INFO_FILE) continue;
    lines.push({ key: Buffer.from(path, 'utf8'), line: `${JSON.stringify(encode(path, entry))}\n` });
  }
  lines.sort((a, b) => Buffer.compare(a.key, b.key));
  const hash = createHash('sha256').update(ENCODING_HEADER, 'utf8');
  for (const { line } of lines) hash.update(line, 'utf8');
  return hash.digest('hex');
}

function encode(path: string, entry: ContentEntry): [string, ContentKind, string | null, number | null, string | null, string | null] {
  switch (entry.type) {
    case 'file': return [path, 'file', entry.mode.toString(8), entry.size, entry.sha256, null];
    case 'directory': return [path, 'directory', entry.mode.toString(8), null, null, null];
    case 'symlink': return [path, 'symlink', null, null, null, entry.target];
  }
}

/**
 * The tree an archive's entries make when unpacked, built in archive order: paths normalised,
 * modes normalised, parents implied, the last mode of a directory listed twice. What the
 * controller digests before sending; the agent's tree writer records the same from what it made.
 */
export class ContentTree {
  private readonly entries = new Map<string, ContentEntry>();

  add(entry: ContentEntry): void {
    const path = treePath(entry.path);
    if (path === '') return;
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      if (!this.entries.has(parent)) this.entries.set(parent, { path: parent, type: 'directory', mode: IMPLIED_DIR_MODE });
    }
    this.entries.set(path, entry.type === 'symlink' ? { ...entry, path } : { ...entry, path, mode: normalizeMode(entry.type, entry.mode) });
  }

  digest(): string {
    return contentDigest(this.entries.values());
  }

  /** The tree's entries, every directory before what it holds (parents are added first). */
  list(): ContentEntry[] {
    return [...this.entries.values()];
  }
}
