import { runCommand } from '../lib/exec.js';
import { SlipwayError } from '../contract/errors.js';
import { outputTail } from '../lib/exec.js';

/** Commands as data: each builder returns the argv; `git()` is the one place they run. */
export const gitCommands = {
  topLevel: () => ['git', 'rev-parse', '--show-toplevel'],
  resolveCommit: (ref: string) => ['git', 'rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`],
  statusTracked: () => ['git', 'status', '--porcelain', '--untracked-files=no'],
  currentBranch: () => ['git', 'symbolic-ref', '--quiet', '--short', 'HEAD'],
  commitInfo: (sha: string) => ['git', 'show', '-s', '--format=%an%x00%ae%x00%cI', sha],
  stashCreate: () => ['git', 'stash', 'create'],
  archive: (treeish: string, outFile: string) => ['git', 'archive', '--format=tar', '-o', outFile, treeish],
  lsTree: (treeish: string, file: string) => ['git', 'ls-tree', '--name-only', treeish, '--', file],
  // Callers never pass a ref starting with "-" (no ref name can), so no --end-of-options: with
  // --symbolic-full-name git 2.39 prints it back as if it were a ref.
  symbolicFullName: (ref: string) => ['git', 'rev-parse', '--symbolic-full-name', ref],
  blobSize: (treeish: string, file: string) => ['git', 'cat-file', '-s', `${treeish}:${file}`],
  catBlob: (treeish: string, file: string) => ['git', 'cat-file', 'blob', `${treeish}:${file}`],
  // Only full SHAs the agent reported reach these: never an option.
  hasCommit: (sha: string) => ['git', 'cat-file', '-e', `${sha}^{commit}`],
  logSubjects: (from: string, to: string, max: number) => ['git', 'log', `--max-count=${max}`, '--format=%h %s', `${from}..${to}`],
  // -a: annotated, so `git push --follow-tags` would push it and `git describe` sees it.
  tagAnnotated: (name: string, sha: string, message: string) => ['git', 'tag', '-a', '-m', message, '--end-of-options', name, sha],
  checkRefFormat: (ref: string) => ['git', 'check-ref-format', `refs/tags/${ref}`],
};

async function git(argv: string[], cwd: string, step: string, okCodes: number[] = [0]) {
  const result = await runCommand(argv, { cwd, timeoutMs: 120_000 });
  if (!okCodes.includes(result.exitCode ?? -1)) {
    throw new SlipwayError('git_failed', `git failed while trying to ${step} (exit ${result.exitCode}): ${outputTail(result.stderr, 5)}`, {
      hint: `run "${argv.join(' ')}" in ${cwd} to see the full error`,
    });
  }
  return result;
}

export async function repoRoot(cwd: string): Promise<string> {
  const result = await runCommand(gitCommands.topLevel(), { cwd, timeoutMs: 30_000 });
  if (result.exitCode !== 0) {
    throw new SlipwayError('not_a_git_repo', `${cwd} is not inside a git repository`, {
      hint: 'run deploy from your app\'s repository (Slipway releases are git commits)',
    });
  }
  return result.stdout.trim();
}

export async function resolveCommit(repo: string, ref: string): Promise<string> {
  const result = await git(gitCommands.resolveCommit(ref), repo, `resolve ${ref}`, [0, 1, 128]);
  const sha = result.stdout.trim();
  if (result.exitCode !== 0 || !/^[0-9a-f]{40}$/.test(sha)) {
    throw new SlipwayError('git_ref_unknown', `"${ref}" does not name a commit in ${repo}`, {
      hint: 'pass a branch, tag or SHA that exists locally: deploy push --sha <ref>',
    });
  }
  return sha;
}

export async function hasTrackedChanges(repo: string): Promise<boolean> {
  const result = await git(gitCommands.statusTracked(), repo, 'check for uncommitted changes');
  return result.stdout.trim().length > 0;
}

export async function currentBranch(repo: string): Promise<string | null> {
  const result = await git(gitCommands.currentBranch(), repo, 'read the current branch', [0, 1, 128]);
  return result.exitCode === 0 ? result.stdout.trim() || null : null;
}

export async function commitInfo(repo: string, sha: string): Promise<{ authorName: string; authorEmail: string; commitTime: string }> {
  const result = await git(gitCommands.commitInfo(sha), repo, `read commit ${sha.slice(0, 12)}`);
  const [authorName = '', authorEmail = '', commitTime = ''] = result.stdout.trim().split('\0');
  return { authorName, authorEmail, commitTime: new Date(commitTime).toISOString() };
}

/** A commit object holding the work tree's tracked changes, without touching the tree or the stash list. */
export async function snapshotWorkTree(repo: string): Promise<string | null> {
  const result = await git(gitCommands.stashCreate(), repo, 'snapshot the dirty work tree');
  const sha = result.stdout.trim();
  return sha ? sha : null;
}

export async function archiveCommit(repo: string, treeish: string, outFile: string): Promise<void> {
  await git(gitCommands.archive(treeish, outFile), repo, `archive ${treeish.slice(0, 12)}`);
}

export async function commitHasFile(repo: string, treeish: string, file: string): Promise<boolean> {
  const result = await git(gitCommands.lsTree(treeish, file), repo, `list ${file}`);
  return result.stdout.trim().length > 0;
}

/** The tag name when `ref` names a tag (lightweight or annotated; "v1", "tags/v1", "refs/tags/v1"), else null. */
export async function tagOf(repo: string, ref: string): Promise<string | null> {
  if (ref.startsWith('-')) return null;
  const result = await git(gitCommands.symbolicFullName(ref), repo, `resolve ${ref}`, [0, 1, 128]);
  const full = result.stdout.split('\n').map((line) => line.trim()).find((line) => line.startsWith('refs/tags/'));
  return full ? full.slice('refs/tags/'.length) : null;
}

/**
 * A file's text as committed in `treeish`; null when the commit has no such file, 'too_large'
 * when it has more than maxBytes.
 */
export async function readCommittedFile(repo: string, treeish: string, file: string, maxBytes: number): Promise<string | null | 'too_large'> {
  if (!await commitHasFile(repo, treeish, file)) return null;
  const size = Number((await git(gitCommands.blobSize(treeish, file), repo, `read the size of ${file}`)).stdout.trim());
  if (!(size <= maxBytes)) return 'too_large';
  const result = await runCommand(gitCommands.catBlob(treeish, file), { cwd: repo, timeoutMs: 30_000, maxOutputBytes: maxBytes + 1 });
  if (result.exitCode !== 0) {
    throw new SlipwayError('git_failed', `git failed while trying to read ${file} from ${treeish.slice(0, 12)} (exit ${result.exitCode}): ${outputTail(result.stderr, 5)}`, {
      hint: `run "git cat-file blob ${treeish}:${file}" in ${repo} to see the full error`,
    });
  }
  return result.stdout;
}

export async function hasCommit(repo: string, sha: string): Promise<boolean> {
  if (!/^[0-9a-f]{40}$/.test(sha)) return false;
  return (await runCommand(gitCommands.hasCommit(sha), { cwd: repo, timeoutMs: 30_000 })).exitCode === 0;
}

/** "<short> <subject>" of the commits in `to` but not in `from`, newest first (at most `max`). */
export async function logSubjects(repo: string, from: string, to: string, max = 50): Promise<string[]> {
  const result = await git(gitCommands.logSubjects(from, to, max), repo, `list the commits from ${from.slice(0, 12)} to ${to.slice(0, 12)}`);
  return result.stdout.split('\n').map((line) => line.trim()).filter(Boolean);
}

/** Creates an annotated tag on `sha`; a name git would refuse, or one that exists, is a git_failed with git's reason. */
export async function createAnnotatedTag(repo: string, name: string, sha: string, message: string): Promise<void> {
  await git(gitCommands.checkRefFormat(name), repo, `check the tag name ${name}`);
  await git(gitCommands.tagAnnotated(name, sha, message), repo, `create tag ${name}`);
}
