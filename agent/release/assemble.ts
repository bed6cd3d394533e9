import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { SlipwayError } from '../../contract/errors.js';
import { DEPLOYMENT_INFO_FILE } from '../../contract/deployment-info.js';
import { MANIFEST_FILE } from '../../contract/manifest.js';
import type { ContentEntry } from '../../contract/release-content.js';
import type { KnownContent } from './file-index.js';
import { inodeKey, isTrusted, type TrustTable } from './trust.js';
import { checkEntry, createPolicyState, type TarEntryLimits } from './tar-entry-policy.js';

export interface AssembleInput {
  /** The new release's staging dir; must not exist (created 0700, left for the caller to open up). */
  root: string;
  /** The release's file manifest (contract/file-manifest.ts), in tree order. */
  entries: readonly ContentEntry[];
  /** Contents received with the upload, already verified against their sha256: sha256 -> file. */
  objects: ReadonlyMap<string, string>;
  /** Contents kept releases hold (file-index.ts): sha256 -> where, in order of preference. */
  known: ReadonlyMap<string, readonly KnownContent[]>;
  releaseDir: (releaseId: string) => string;
  limits: TarEntryLimits;
  label: string;
  /** What the agent verified of kept files (trust.ts): a file linked unchanged since is not read again. */
  trust?: TrustTable;
}

export interface AssembleResult {
  /** The tree made, each file with the sha256 of what it holds: the input of the content digest check. */
  contents: ContentEntry[];
  /** Files hardlinked from kept releases, copied from them (another mode), and made from received contents. */
  linked: number;
  copied: number;
  received: number;
  /** Of the linked files, those taken on the trust record of their inode, unread. */
  trusted: number;
  /** Files with new data (received or copied), relative to the root: what must be synced. */
  fresh: string[];
  /** Bytes of file content in the tree. */
  bytes: number;
}

/** Files placed at once: each is a link (or copy) and a read to hash it. */
const CONCURRENCY = 8;
const REUSED_ROOT_FILES = new Set([MANIFEST_FILE, DEPLOYMENT_INFO_FILE]);

/**
 * Makes a release tree from its file manifest: directories and symlinks as listed, and every file
 * from a received content or from a file of a kept release with the same content. Every entry
 * passes the tar entry policy first (agent/release/tar-entry-policy.ts: paths, links, limits), as
 * it would in a tarball. A file of a kept release is hardlinked when it has the mode wanted, else
 * copied; nothing is ever written through a kept release's files (links are made, never opened
 * for writing), so kept releases stay byte-identical. Each file taken from a kept release is
 * hashed where it now is, unless it is linked and its inode is as the agent recorded it when it
 * last verified it (trust.ts: size, mtime, ctime; any write or chmod changes ctime); a copy is
 * always hashed. A base file that is gone is delta_base_missing, one whose bytes are not
 * its indexed content delta_base_mismatch (both 409: the sender falls back to a full upload).
 * On failure the caller removes `root`.
 */
export async function assembleRelease(input: AssembleInput): Promise<AssembleResult> {
  const { root, entries } = input;
  const plan = checkedPlan(input);
  await mkdir(root, { mode: 0o700 });
  await chmod(root, 0o700);
  for (const entry of plan) {
    const abs = path.join(root, entry.path);
    if (entry.type === 'directory') {
      await mkdir(abs, { mode: entry.mode });
      await chmod(abs, entry.mode);
    } else if (entry.type === 'symlink') {
      await symlink(entry.target, abs);
    }
  }
  const result: AssembleResult = { contents: [], linked: 0, copied: 0, received: 0, trusted: 0, fresh: [], bytes: 0 };
  const files = plan.filter((e): e is Extract<ContentEntry, { type: 'file' }> => e.type === 'file');
  const hashed = new Map<string, string>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const entry = files[next++]!;
      const placed = await placeFile(input, entry, path.join(root, entry.path));
      result[placed.how]++;
      if (placed.trusted) result.trusted++;
      if (placed.how !== 'linked') result.fresh.push(entry.path);
      hashed.set(entry.path, placed.sha256);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  for (const entry of plan) {
    if (entry.type !== 'file') {
      result.contents.push(entry);
      continue;
    }
    result.contents.push({ ...entry, sha256: hashed.get(entry.path)! });
    result.bytes += entry.size;
  }
  if (result.contents.length !== entries.length) throw new Error('assembly lost entries');
  return result;
}

/** Pure: the manifest's entries as the policy sees them (normalised paths and modes); throws on the first refusal. */
function checkedPlan(input: AssembleInput): ContentEntry[] {
  const state = createPolicyState(input.limits);
  return input.entries.map((entry) => {
    const verdict = checkEntry({
      path: entry.path,
      type: entry.type === 'file' ? 'File' : entry.type === 'directory' ? 'Directory' : 'SymbolicLink',
      mode: entry.type === 'symlink' ? 0o777 : entry.mode,
      size: entry.type === 'file' ? entry.size : 0,
      linkpath: entry.type === 'symlink' ? entry.target : undefined,
    }, state);
    if (!verdict.ok) {
      const code = verdict.limit ? 'release_limit_exceeded' : 'bad_tarball';
      throw new SlipwayError(code, `${input.label}: the file manifest was refused at entry ${JSON.stringify(entry.path.slice(0, 200))}: ${verdict.reason}`, {
        status: verdict.limit ? 413 : 400,
        details: [`rule: ${verdict.rule}`, ...(verdict.limit ? [`limit: limits.${verdict.limit}`] : [])],
        hint: verdict.limit ? `raise limits.${verdict.limit} in the agent config if the release really needs it` : 'push with `deploy push`; nothing was stored',
      });
    }
    if (verdict.path === '' || REUSED_ROOT_FILES.has(verdict.path)) {
      throw new SlipwayError('delta_bundle_invalid', `${input.label}: the file manifest lists ${JSON.stringify(entry.path)}, which the release's own files may not be`, {
        status: 400, hint: 'push with `deploy push`; nothing was stored',
      });
    }
    if (entry.type === 'symlink') return { ...entry, path: verdict.path };
    return { ...entry, path: verdict.path, mode: verdict.mode };
  });
}

type Placed = { how: 'linked' | 'copied' | 'received'; sha256: string; trusted?: boolean };

/** Puts one file at `abs`: from the upload, or from the first kept release that holds its content. */
async function placeFile(input: AssembleInput, entry: Extract<ContentEntry, { type: 'file' }>, abs: string): Promise<Placed> {
  const object = input.objects.get(entry.sha256);
  if (object !== undefined) {
    await linkOrCopy(object, abs, entry.mode);
    // Verified by hash when it was received; a copy made by the kernel is the same bytes.
    return { how: 'received', sha256: entry.sha256 };
  }
  const problems: string[] = [];
  let mismatch = false;
  for (const candidate of input.known.get(entry.sha256) ?? []) {
    const from = path.join(input.releaseDir(candidate.releaseId), candidate.path);
    const st = await lstat(from, { bigint: true }).catch(() => undefined);
    if (!st?.isFile()) {
      problems.push(`${candidate.releaseId}/${candidate.path}: gone`);
      continue;
    }
    if (st.size !== BigInt(entry.size)) {
      mismatch = true;
      problems.push(`${candidate.releaseId}/${candidate.path}: ${st.size} bytes, not ${entry.size}`);
      continue;
    }
    const trusted = input.trust !== undefined && isTrusted(await input.trust.get(st), st, entry.sha256);
    let how: Placed['how'];
    try {
      how = await linkOrCopy(from, abs, entry.mode);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      problems.push(`${candidate.releaseId}/${candidate.path}: gone`);
      continue;
    }
    if (how === 'linked' && trusted) {
      // The link is the inode trusted a moment ago, changed by nothing but the link itself (which
      // moves its ctime: noted, so the next upload trusts it too).
      const now = await lstat(abs, { bigint: true });
      if (inodeKey(now) === inodeKey(st) && now.size === st.size && now.mtimeNs === st.mtimeNs && now.nlink > st.nlink) {
        await input.trust!.note(now, entry.sha256);
        return { how, sha256: entry.sha256, trusted: true };
      }
    }
    // What the new release holds now, read where it is: a kept file changed on disk is caught here.
    const sha256 = await hashFile(abs);
    if (sha256 === entry.sha256) {
      await input.trust?.note(await lstat(abs, { bigint: true }), sha256);
      return { how, sha256 };
    }
    await unlink(abs);
    mismatch = true;
    problems.push(`${candidate.releaseId}/${candidate.path}: sha256 ${sha256.slice(0, 12)}…, not ${entry.sha256.slice(0, 12)}…`);
  }
  const shown = JSON.stringify(entry.path.slice(0, 200));
  if (mismatch) {
    throw new SlipwayError('delta_base_mismatch', `${input.label}: the host's copy of ${shown} is not the content its index names; nothing was stored`, {
      status: 409, details: problems.slice(0, 5),
      hint: 'a file of a kept release changed on disk; push again (a full upload is used), and check the disk and who writes into releases/',
    });
  }
  throw new SlipwayError('delta_base_missing', `${input.label}: the host no longer has the content of ${shown}; nothing was stored`, {
    status: 409, details: problems.slice(0, 5),
    hint: 'a release it was in was removed since the upload was planned; push again (a full upload is used)',
  });
}

/**
 * Hardlinks `from` at `to` when it already has `mode`, or the read-only mode a stored release gives
 * a file of that mode (store.ts strips every write bit after ingest: the link then already has the
 * mode the new release's file will end with); else copies it and gives the copy `mode`.
 */
async function linkOrCopy(from: string, to: string, mode: number): Promise<'linked' | 'copied'> {
  const st = await lstat(from);
  const has = st.mode & 0o7777;
  if (has === mode || has === (mode & ~0o222)) {
    try {
      await link(from, to);
      return 'linked';
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another file system, a file system without hardlinks, or the inode's link count at its maximum.
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw error;
    }
  }
  await copyFile(from, to);
  await chmod(to, mode);
  return 'copied';
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}
