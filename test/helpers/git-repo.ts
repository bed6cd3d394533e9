import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';

async function git(repo: string, ...args: string[]): Promise<string> {
  const result = await runCommand(['git', ...args], { cwd: repo, timeoutMs: 30_000 });
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout.trim();
}

export interface AppRepo {
  dir: string;
  /** Writes files (relative path → content; null deletes), commits them, returns the new HEAD sha. */
  commit(files: Record<string, string | null>, message: string): Promise<string>;
  head(): Promise<string>;
}

/** A real git repository holding a copy of `sourceDir`, committed once. */
export async function createAppRepo(dir: string, sourceDir: string, extraFiles: Record<string, string> = {}): Promise<AppRepo> {
  await fs.mkdir(dir, { recursive: true });
  await fs.cp(sourceDir, dir, { recursive: true });
  await git(dir, 'init', '-q', '-b', 'main');
  await git(dir, 'config', 'user.name', 'Slipway Test');
  await git(dir, 'config', 'user.email', 'test@slipway.invalid');
  await git(dir, 'config', 'commit.gpgsign', 'false');
  const repo: AppRepo = {
    dir,
    async commit(files, message) {
      for (const [file, content] of Object.entries(files)) {
        const full = path.join(dir, file);
        if (content === null) await fs.rm(full, { force: true });
        else {
          await fs.mkdir(path.dirname(full), { recursive: true });
          await fs.writeFile(full, content);
        }
      }
      await git(dir, 'add', '-A');
      await git(dir, 'commit', '-q', '-m', message);
      return repo.head();
    },
    head: () => git(dir, 'rev-parse', 'HEAD'),
  };
  await repo.commit(extraFiles, 'initial commit');
  return repo;
}
