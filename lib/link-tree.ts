// File tree operations of builds (host builds, and install reuse on either side): a hardlinked
// copy of an install (a copy where a link cannot be made), the listing a failed build is undone
// against, and the write bits a release dir gets for its build only.
import { chmod, copyFile, link, lstat, mkdir, readdir, readlink, rm, symlink } from 'node:fs/promises';
import path from 'node:path';

export interface LinkTreeOptions {
  /** Files (relative to the source root) that are copied, never linked. */
  copy?: (rel: string) => boolean;
}

/**
 * Recreates `source` at `target` (which must not exist): directories are made anew, symlinks are
 * recreated with their target text, files are hardlinked, or copied when the two are on different
 * file systems (EXDEV) or the option says so. The source is only read.
 */
export async function linkTree(source: string, target: string, options: LinkTreeOptions = {}): Promise<{ linked: number; copied: number }> {
  const counts = { linked: 0, copied: 0 };
  let crossDevice = false;
  const walk = async (rel: string): Promise<void> => {
    const from = path.join(source, rel);
    const to = path.join(target, rel);
    const st = await lstat(from);
    // The root's parents may be missing; below it, every directory is new.
    await mkdir(to, { mode: (st.mode & 0o777) | 0o700, recursive: rel === '' });
    for (const entry of await readdir(from, { withFileTypes: true })) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      const childFrom = path.join(from, entry.name);
      const childTo = path.join(to, entry.name);
      if (entry.isDirectory()) await walk(childRel);
      else if (entry.isSymbolicLink()) await symlink(await readlink(childFrom), childTo);
      else if (entry.isFile()) {
        if (!crossDevice && !options.copy?.(childRel)) {
          try {
            await link(childFrom, childTo);
            counts.linked++;
            continue;
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
            crossDevice = true;
          }
        }
        await copyFile(childFrom, childTo);
        await chmod(childTo, (await lstat(childFrom)).mode & 0o777);
        counts.copied++;
      }
    }
  };
  await walk('');
  return counts;
}

/** Every path under `root` (relative, `/`-separated), directories included. */
export async function listTree(root: string): Promise<Set<string>> {
  const paths = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      paths.add(child);
      if (entry.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return paths;
}

/** Removes everything under `root` that is not in `keep` (the tree as it was before a build). */
export async function removeAdded(root: string, keep: ReadonlySet<string>): Promise<number> {
  let removed = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (!keep.has(child)) {
        await rm(path.join(root, child), { recursive: true, force: true });
        removed++;
      } else if (entry.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return removed;
}

/**
 * Sets the owner write bit on (`writable`) or every write bit off each entry of the tree, the root
 * included (`dirsOnly`: directories only, which is all a removal needs). Entries whose mode already is what is asked are left alone: files hardlinked from an
 * earlier install share their inode (and mode) with it, and are never changed from here.
 */
export async function setTreeWritable(root: string, writable: boolean, options: { skip?: (rel: string) => boolean; dirsOnly?: boolean } = {}): Promise<void> {
  const apply = async (full: string, mode: number): Promise<void> => {
    const want = writable ? mode | 0o200 : mode & ~0o222;
    if (want !== mode) await chmod(full, want);
  };
  const walk = async (rel: string): Promise<void> => {
    const full = path.join(root, rel);
    const st = await lstat(full);
    if (st.isSymbolicLink()) return;
    // A directory is opened before it is locked, so its entries can still be reached.
    if (st.isDirectory()) {
      if (writable) await apply(full, st.mode & 0o7777);
      for (const name of await readdir(full)) {
        const child = rel ? `${rel}/${name}` : name;
        if (!options.skip?.(child)) await walk(child);
      }
      if (!writable) await apply(full, st.mode & 0o7777);
    } else if (st.isFile() && !options.dirsOnly) {
      await apply(full, st.mode & 0o7777);
    }
  };
  await walk('');
}
