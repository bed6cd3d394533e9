import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, symlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { IMPLIED_DIR_MODE, type ContentEntry } from '../../contract/release-content.js';
import { foldName, spelled } from './name-fold.js';
import type { EntryKind } from './tar-entry-policy.js';

/** The body and metadata of one archive entry (node-tar's ReadEntry has all of it). */
export interface EntryBody extends AsyncIterable<Buffer> {
  size: number;
  linkpath?: string | undefined;
  mtime?: Date | undefined;
  atime?: Date | undefined;
  resume(): unknown;
  destroy(): unknown;
}

/**
 * Waits for `done`, failing only when `stallMs` pass with `progress()` unchanged: a slow disk that
 * keeps finishing work is waited for, one that hangs fails (`<what> made no progress for N s`).
 * An infinite `stallMs` only waits.
 */
export async function awaitProgress(done: Promise<unknown>, progress: () => number, stallMs: number, what: string): Promise<void> {
  if (!Number.isFinite(stallMs)) {
    await done;
    return;
  }
  const finished = done.then(() => true);
  for (;;) {
    const before = progress();
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([finished, new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), stallMs); })]);
    clearTimeout(timer);
    if (ended) return;
    if (progress() === before) throw new Error(`${what} made no progress for ${stallMs / 1000} s`);
  }
}

/** An entry as the policy approved it: normalised path (`a/b`, '' for the root), kind, mode. */
export interface ApprovedEntry {
  path: string;
  kind: EntryKind;
  mode: number;
}

export interface TreeWriterOptions {
  /** Files at least this large are flushed to disk (fsync) as soon as they are complete. */
  flushFromBytes: number;
  /** Called once, with the first problem; the caller stops the archive. */
  onError(error: unknown): void;
}

/** A file system error caused by one entry (a name too long, the disk full, ...). */
export class EntryWriteError extends Error {
  constructor(readonly entryPath: string, readonly error: unknown) {
    super(`cannot create ${JSON.stringify(entryPath.length > 200 ? `${entryPath.slice(0, 200)}…` : entryPath)}: ${clipMessage(error)}`);
  }

  get code(): string | undefined {
    return (this.error as NodeJS.ErrnoException | undefined)?.code;
  }
}

/** The tree on disk would differ from what the archive declared. */
export class TreeMismatch extends Error {}

/** Entries being created at once: enough to overlap the round trips of many small files. */
const MAX_ACTIVE = 8;
/** Entries accepted but not yet started; beyond this the reader waits (bounded memory). */
const MAX_WAITING = 64;
/** Open files waiting for their early flush; beyond this a file is just closed (sync() covers it). */
const MAX_QUEUED_FLUSHES = 16;
/** fsyncs run at once by sync(): concurrent ones share journal commits. */
const SYNC_CONCURRENCY = 8;
const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Writes the entries of a release archive into a fresh private directory while the archive
 * streams in. Every entry reaching it was approved by the tar entry policy (which refuses any
 * path through an earlier symlink, duplicates, type changes and one name spelled two ways); the
 * writer does not rely on that alone: it creates only below directories it made itself, with
 * O_EXCL and O_NOFOLLOW, and refuses a second spelling of a name it made (compared folded, as a
 * case-folding or normalising file system would), so nothing is ever written through a symlink,
 * whatever the archive holds. It records what it made (contents()), with each file's sha256 as
 * written, for the release's content digest.
 */
export class TreeWriter {
  /** Folded relative path -> what this writer created there, as spelled ('' is the root, made by the caller). */
  private readonly made = new Map<string, { kind: EntryKind; path: string }>([['', { kind: 'directory', path: '' }]]);
  /** Folded relative dir -> its spelling and creation, resolving to the mode it was created with. */
  private readonly dirs = new Map<string, { path: string; created: Promise<number> }>([['', { path: '', created: Promise.resolve(0o700) }]]);
  /** Relative dir -> the mode its last entry in the archive gives it (finishDirectories applies it). */
  private readonly dirModes = new Map<string, number>();
  /** Files and symlinks made, as the content digest describes them. */
  private readonly madeEntries: ContentEntry[] = [];
  private readonly jobs = new Set<Promise<void>>();
  private readonly bodies = new Set<EntryBody>();
  private readonly slotWaiters: Array<() => void> = [];
  private readonly roomWaiters: Array<() => void> = [];
  private readonly flushQueue: FileHandle[] = [];
  /** Files closed without an fsync, and every directory made (absolute paths): what sync() must flush. */
  private readonly unsyncedFiles: string[] = [];
  private readonly madeDirs: string[];
  private flushing: Promise<void> | undefined;
  private active = 0;
  private failed = false;
  /** Counts finished entries and flushes, so settle() can tell a slow disk from a stuck one. */
  private progress = 0;
  /** Entries handed to add(). */
  entries = 0;
  /** Bytes of file content written. */
  bytes = 0;

  private constructor(
    private readonly root: string,
    /** The process umask, or undefined when unknown (then every mode is set explicitly). */
    private readonly umask: number | undefined,
    private readonly options: TreeWriterOptions,
  ) {
    this.madeDirs = [root];
  }

  /** `root` must be an existing, empty directory only this writer uses. */
  static async create(root: string, options: TreeWriterOptions): Promise<TreeWriter> {
    return new TreeWriter(path.resolve(root), await processUmask(), options);
  }

  /** True while enough entries wait that the reader should hold back (see room()). */
  get crowded(): boolean {
    return !this.failed && this.jobs.size >= MAX_WAITING;
  }

  /**
   * Resolves once fewer entries wait, or the writer failed. Throws when no entry or flush finished
   * for `stallMs` (a disk that hangs), as settle() does: the reader must not wait on it forever.
   */
  async room(stallMs = Infinity): Promise<void> {
    if (!this.crowded) return;
    const roomy = new Promise<void>((resolve) => { this.roomWaiters.push(resolve); });
    await awaitProgress(roomy, () => this.progress, stallMs, 'writing the release');
  }

  /**
   * Creates one approved entry, consuming its body. Entries are started in archive order; until
   * a slot is free the body is not read, which holds back the parser.
   */
  add(body: EntryBody, entry: ApprovedEntry): void {
    this.entries += 1;
    // In archive order, so that of a directory listed twice the last mode counts, as in the digest.
    if (entry.kind === 'directory' && entry.path !== '') this.dirModes.set(entry.path, entry.mode);
    const job = this.run(body, entry).catch((error: unknown) => this.fail(error));
    this.jobs.add(job);
    void job.finally(() => {
      this.jobs.delete(job);
      this.progress += 1;
      if (!this.crowded) this.wake(this.roomWaiters);
    });
  }

  /**
   * Waits until every entry handed over is on disk (or abandoned after a failure) and every file
   * is closed. Throws if nothing at all finished for `stallMs`: a disk that hangs must fail the
   * ingest, not hold it forever.
   */
  async settle(stallMs = Infinity): Promise<void> {
    while (this.jobs.size > 0 || this.flushing) {
      await awaitProgress(Promise.all([...this.jobs, this.flushing]), () => this.progress, stallMs, 'writing the release');
    }
  }

  /**
   * Once settled: gives every directory the mode of its last entry in the archive (IMPLIED_DIR_MODE
   * for one the archive only implies). Done at the end, not per entry, so the outcome never depends
   * on the order concurrent entries finish in.
   */
  async finishDirectories(): Promise<void> {
    for (const { path: rel, created } of this.dirs.values()) {
      if (rel === '') continue;
      const wanted = this.dirModes.get(rel) ?? IMPLIED_DIR_MODE;
      if ((await created) !== wanted) await chmod(path.join(this.root, ...rel.split('/')), wanted).catch(this.blame(rel));
    }
  }

  /** What this writer made (root excluded), after finishDirectories(): the input of the release's content digest. */
  contents(): ContentEntry[] {
    const dirs: ContentEntry[] = [...this.dirs.values()]
      .filter(({ path: rel }) => rel !== '')
      .map(({ path: rel }) => ({ path: rel, type: 'directory', mode: this.dirModes.get(rel) ?? IMPLIED_DIR_MODE }));
    return [...dirs, ...this.madeEntries];
  }

  /**
   * Makes the tree durable once settled: fsyncs the files the early flush did not cover, then
   * every directory (their entries, and modes set since). Resolves false without doing anything
   * when more than `maxFiles` files are left, for which one syncfs is cheaper than an fsync each.
   */
  async sync(maxFiles: number): Promise<boolean> {
    if (this.unsyncedFiles.length > maxFiles) return false;
    await inParallel(this.unsyncedFiles, fsyncPath);
    // After the files: on file systems that order metadata, the entries then point at flushed data.
    await inParallel(this.madeDirs, fsyncPath);
    return true;
  }

  /** Stops: bodies being read are abandoned, waiting entries are skipped. settle() still waits for open files. */
  fail(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    for (const body of this.bodies) body.destroy();
    this.wake(this.slotWaiters);
    this.wake(this.roomWaiters);
    this.options.onError(error);
  }

  private async run(body: EntryBody, entry: ApprovedEntry): Promise<void> {
    await this.acquire();
    try {
      if (this.failed || entry.path === '') {
        // The root's mode is the caller's to set once the release is complete.
        body.resume();
        return;
      }
      const segments = entry.path.split('/');
      if (segments.some((s) => s === '' || s === '.' || s === '..')) throw new TreeMismatch(`refusing to create ${JSON.stringify(entry.path)}`);
      const parent = segments.slice(0, -1).join('/');
      await this.ensureDir(parent, IMPLIED_DIR_MODE, entry.path);
      const abs = path.join(this.root, ...segments);
      switch (entry.kind) {
        case 'directory':
          // Its mode is set by finishDirectories(), once every entry is in.
          await this.ensureDir(entry.path, entry.mode, entry.path);
          body.resume();
          return;
        case 'symlink': {
          this.claim(entry.path, 'symlink');
          const target = body.linkpath ?? '';
          await symlink(target, abs).catch(this.blame(entry.path));
          this.madeEntries.push({ path: entry.path, type: 'symlink', target });
          body.resume();
          return;
        }
        case 'file':
          this.claim(entry.path, 'file');
          await this.writeFile(body, entry, abs);
          return;
      }
    } finally {
      this.release();
    }
  }

  private async writeFile(body: EntryBody, entry: ApprovedEntry, abs: string): Promise<void> {
    const blame = this.blame(entry.path);
    this.bodies.add(body);
    let handle: FileHandle;
    try {
      handle = await open(abs, CREATE_FILE, entry.mode).catch(blame);
    } catch (error) {
      this.bodies.delete(body);
      throw error;
    }
    let flushing = false;
    try {
      const copied = await this.copyBody(body, handle, blame);
      if (!copied) return;
      const { written, sha256 } = copied;
      if (written !== body.size) throw new TreeMismatch(`${JSON.stringify(entry.path)} holds ${written} bytes but its header declares ${body.size}`);
      if (this.needsChmod(entry.mode)) await handle.chmod(entry.mode).catch(blame);
      // Kept from the archive, so an unchanged asset keeps its Last-Modified across releases.
      if (body.mtime) await handle.utimes(body.atime ?? new Date(), body.mtime).catch(blame);
      this.madeEntries.push({ path: entry.path, type: 'file', mode: entry.mode, size: written, sha256 });
      if (written >= this.options.flushFromBytes) flushing = this.flushLater(handle);
      if (!flushing) this.unsyncedFiles.push(abs);
    } finally {
      this.bodies.delete(body);
      if (!flushing) await handle.close().catch((error: unknown) => this.fail(new EntryWriteError(entry.path, error)));
    }
  }

  /** Writes the whole body into `handle`, hashing what it writes; undefined once the writer failed. */
  private async copyBody(body: EntryBody, handle: FileHandle, blame: (error: unknown) => never): Promise<{ written: number; sha256: string } | undefined> {
    const hash = createHash('sha256');
    let written = 0;
    const chunks = body[Symbol.asyncIterator]();
    for (;;) {
      // A body destroyed by fail() while no read was pending would never answer the next one.
      if (this.failed) return undefined;
      const next = await chunks.next();
      if (next.done) break;
      const chunk = next.value;
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset).catch(blame);
        offset += bytesWritten;
      }
      hash.update(chunk);
      written += chunk.length;
      this.bytes += chunk.length;
    }
    return this.failed ? undefined : { written, sha256: hash.digest('hex') };
  }

  /**
   * Starts writing a complete file to disk while the rest of the archive still arrives, so that
   * the flush before publishing finds little left to do. Durability itself is the caller's
   * final sync; this only moves the work earlier.
   */
  private flushLater(handle: FileHandle): boolean {
    if (this.flushQueue.length >= MAX_QUEUED_FLUSHES) return false;
    this.flushQueue.push(handle);
    this.flushing ??= this.pumpFlushes();
    return true;
  }

  private async pumpFlushes(): Promise<void> {
    for (let handle = this.flushQueue.shift(); handle; handle = this.flushQueue.shift()) {
      try {
        if (!this.failed) await handle.sync();
      } catch (error) {
        this.fail(error);
      } finally {
        await handle.close().catch((error: unknown) => this.fail(error));
        this.progress += 1;
      }
    }
    this.flushing = undefined;
  }

  /** Creates `rel` (and its parents) once, as a real directory of this writer; resolves to the mode it got. */
  private ensureDir(rel: string, mode: number, forEntry: string): Promise<number> {
    const key = foldName(rel);
    const existing = this.dirs.get(key);
    if (existing) {
      if (existing.path !== rel) return Promise.reject(collision(rel, existing.path));
      return existing.created;
    }
    const created = (async () => {
      const cut = rel.lastIndexOf('/');
      await this.ensureDir(cut === -1 ? '' : rel.slice(0, cut), IMPLIED_DIR_MODE, forEntry);
      this.claim(rel, 'directory');
      const abs = path.join(this.root, ...rel.split('/'));
      await mkdir(abs, mode).catch(this.blame(forEntry));
      this.madeDirs.push(abs);
      if (this.needsChmod(mode)) await chmod(abs, mode).catch(this.blame(forEntry));
      return mode;
    })();
    this.dirs.set(key, { path: rel, created });
    return created;
  }

  /**
   * Records that `rel` is about to be created; refuses anything below a non-directory, a second
   * thing at one path, and a second spelling of a name already made.
   */
  private claim(rel: string, kind: EntryKind): void {
    const segments = rel.split('/');
    for (let i = 1; i < segments.length; i++) {
      const prefix = segments.slice(0, i).join('/');
      const parent = this.made.get(foldName(prefix));
      if (parent && parent.path !== prefix) throw collision(prefix, parent.path);
      if (parent?.kind !== 'directory') {
        throw new TreeMismatch(`${JSON.stringify(rel)} would be created below ${JSON.stringify(prefix)}, which is not a directory of this release`);
      }
    }
    const key = foldName(rel);
    const existing = this.made.get(key);
    if (existing && existing.path !== rel) throw collision(rel, existing.path);
    if (existing) throw new TreeMismatch(`${JSON.stringify(rel)} is already a ${existing.kind} of this release`);
    this.made.set(key, { kind, path: rel });
  }

  /** Modes are exact only if the umask takes nothing away from them. */
  private needsChmod(mode: number): boolean {
    return this.umask === undefined || (mode & this.umask) !== 0;
  }

  private blame(entryPath: string): (error: unknown) => never {
    return (error: unknown) => { throw new EntryWriteError(entryPath, error); };
  }

  private acquire(): Promise<void> {
    if (this.active < MAX_ACTIVE || this.failed) {
      this.active += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.slotWaiters.push(() => { this.active += 1; resolve(); });
    });
  }

  private release(): void {
    this.active -= 1;
    this.slotWaiters.shift()?.();
  }

  private wake(waiters: Array<() => void>): void {
    for (const wake of waiters.splice(0)) wake();
  }
}

function collision(rel: string, made: string): TreeMismatch {
  return new TreeMismatch(`${JSON.stringify(spelled(rel))} and ${JSON.stringify(spelled(made))} are one name where the file system folds case or normalises Unicode`);
}

async function fsyncPath(file: string): Promise<void> {
  // O_NOFOLLOW: the paths are this writer's own files and directories, never a link to elsewhere.
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function inParallel(items: string[], task: (item: string) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(SYNC_CONCURRENCY, items.length) }, worker));
}

/** The umask, read without changing it (process.umask() would set it, racing other threads). */
async function processUmask(): Promise<number | undefined> {
  try {
    const status = await readFile('/proc/self/status', 'utf8');
    const match = /^Umask:\s*([0-7]+)$/m.exec(status);
    return match ? Number.parseInt(match[1]!, 8) : undefined;
  } catch {
    return undefined;
  }
}

function clipMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length <= 400 ? text : `${text.slice(0, 400)}…`;
}
