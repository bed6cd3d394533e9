import { runCommand, outputTail } from '../../lib/exec.js';
import { SlipwayError } from '../../contract/errors.js';

/** One entry of `git ls-tree -r -t -z --full-tree`: a tree before what it holds, in git's order. */
export interface GitTreeEntry { mode: string; type: 'blob' | 'tree' | 'commit'; oid: string; path: string }

/** Attributes under which `git archive` would write other bytes or other files than the blobs. */
export const ARCHIVE_ATTRIBUTES = ['export-ignore', 'export-subst', 'filter', 'text', 'eol', 'crlf', 'ident', 'working-tree-encoding'] as const;

export const gitTreeCommands = {
  listTree: (treeish: string) => ['git', 'ls-tree', '-r', '-t', '-z', '--full-tree', treeish],
  checkAttr: () => ['git', 'check-attr', '-z', '--stdin', ...ARCHIVE_ATTRIBUTES],
  autocrlf: () => ['git', 'config', '--get', 'core.autocrlf'],
};

/** Pure: the entries of `git ls-tree -r -t -z` output (`<mode> <type> <oid>\t<path>\0`...). */
export function parseLsTree(output: string): GitTreeEntry[] {
  const entries: GitTreeEntry[] = [];
  for (const record of output.split('\0')) {
    if (record === '') continue;
    const tab = record.indexOf('\t');
    const [mode, type, oid] = record.slice(0, tab).split(' ');
    if (tab === -1 || !mode || !oid || (type !== 'blob' && type !== 'tree' && type !== 'commit')) {
      throw new Error(`unexpected git ls-tree record ${JSON.stringify(record.slice(0, 200))}`);
    }
    entries.push({ mode, type, oid, path: record.slice(tab + 1) });
  }
  return entries;
}

/**
 * Pure: whether `git archive` of these entries is exactly their blobs (so a blob id names the bytes
 * the release gets): no .gitattributes in the commit, every path valid UTF-8 (it travels as text),
 * no attribute set that converts or drops files (`check-attr -z` output), and core.autocrlf not true.
 */
export function archiveIsPlainBlobs(entries: readonly GitTreeEntry[], checkAttrOutput: string, autocrlf: string): boolean {
  if (autocrlf.trim().toLowerCase() === 'true') return false;
  for (const entry of entries) {
    if (entry.path.includes('\uFFFD')) return false;
    if (entry.path === '.gitattributes' || entry.path.endsWith('/.gitattributes')) return false;
  }
  const fields = checkAttrOutput.split('\0');
  for (let i = 2; i < fields.length; i += 3) if (fields[i] !== 'unspecified') return false;
  return true;
}

/** The commit's tree, and whether `git archive` would give its blobs unchanged (archiveIsPlainBlobs). */
export async function listGitTree(repo: string, treeish: string): Promise<{ entries: GitTreeEntry[]; plain: boolean }> {
  const listed = await runCommand(gitTreeCommands.listTree(treeish), { cwd: repo, timeoutMs: 120_000, maxOutputBytes: 512 * 1024 * 1024 });
  if (listed.exitCode !== 0) {
    throw new SlipwayError('git_failed', `git failed while trying to list the files of ${treeish.slice(0, 12)} (exit ${listed.exitCode}): ${outputTail(listed.stderr, 5)}`, {
      hint: `run "${gitTreeCommands.listTree(treeish).join(' ')}" in ${repo} to see the full error`,
    });
  }
  const entries = parseLsTree(listed.stdout);
  const paths = entries.filter((e) => e.type === 'blob').map((e) => e.path);
  const attrs = paths.length === 0 ? { exitCode: 0, stdout: '' }
    : await runCommand(gitTreeCommands.checkAttr(), { cwd: repo, timeoutMs: 120_000, input: `${paths.join('\0')}\0`, maxOutputBytes: 512 * 1024 * 1024 });
  const autocrlf = await runCommand(gitTreeCommands.autocrlf(), { cwd: repo, timeoutMs: 30_000 });
  return { entries, plain: attrs.exitCode === 0 && archiveIsPlainBlobs(entries, attrs.stdout, autocrlf.stdout) };
}
