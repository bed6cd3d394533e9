import { open, stat, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

/** At most this much is read per poll of one file: a burst of output is sent in pieces. */
const READ_CHUNK = 256 * 1024;
/** A partial line longer than this is passed on as it is. */
const MAX_PARTIAL = 64 * 1024;

export interface FollowRead {
  /** Complete lines read since the last poll, in order (the old file's rest first after a rotation). */
  lines: string[];
  /** True when the path now names another file (rotated) or the file was truncated. */
  rotated: boolean;
}

/**
 * Follows one log file by polling, the way `tail -F` does: the file is identified by its inode, so
 * when it is rotated (renamed away, a new file at the path) the rest of the old file is read to its
 * end before the new one is read from its start; a file that shrank (truncated) is read from its
 * start again. Starts at the file's end (or at its start when `fromStart`, for a file made after
 * the follow began). A missing file is waited for.
 */
export class FileFollower {
  private handle: FileHandle | null = null;
  private ino: number | null = null;
  private offset = 0;
  private partial = '';
  private started = false;
  /** Where the follow began (the file's end at the first poll), or null when the file was missing then. */
  startOffset: number | null = null;
  private decoder = new StringDecoder('utf8');

  constructor(readonly path: string, private readonly options: { fromStart?: boolean } = {}) {}

  async poll(): Promise<FollowRead> {
    const lines: string[] = [];
    let rotated = false;
    const current = await stat(this.path).catch(() => null);
    if (!this.started) {
      this.started = true;
      if (current) {
        await this.openAt(current.ino, this.options.fromStart ? 0 : current.size);
        this.startOffset = this.offset;
      }
      return { lines, rotated };
    }
    if (this.handle && current && current.ino !== this.ino) {
      lines.push(...await this.drain());
      await this.close();
      rotated = true;
    } else if (this.handle && current && current.size < this.offset) {
      this.offset = 0;
      this.partial = '';
      rotated = true;
    }
    if (!this.handle && current) {
      // Whatever the new file holds was written after the one followed before: read it all.
      const followedBefore = this.ino !== null;
      await this.openAt(current.ino, 0);
      rotated = rotated || followedBefore;
    }
    if (this.handle) lines.push(...await this.drain());
    return { lines, rotated };
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
  }

  private async openAt(ino: number, offset: number): Promise<void> {
    this.handle = await open(this.path, 'r').catch(() => null);
    this.ino = ino;
    this.offset = offset;
    this.partial = '';
    this.decoder = new StringDecoder('utf8');
  }

  /** Reads from the offset to the current end of the open file; returns its complete lines. */
  private async drain(): Promise<string[]> {
    const handle = this.handle!;
    const { size } = await handle.stat();
    const lines: string[] = [];
    while (this.offset < size) {
      const length = Math.min(READ_CHUNK, size - this.offset);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, this.offset);
      if (bytesRead === 0) break;
      this.offset += bytesRead;
      const text = this.partial + this.decoder.write(buffer.subarray(0, bytesRead));
      const parts = text.split('\n');
      this.partial = parts.pop() ?? '';
      if (this.partial.length > MAX_PARTIAL) {
        parts.push(this.partial);
        this.partial = '';
      }
      lines.push(...parts.map((line) => line.replace(/\r$/, '')));
    }
    return lines;
  }
}
