import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { SlipwayError } from '../../contract/errors.js';

/**
 * Reads blobs of a repository in the order asked for, streamed, through one `git cat-file --batch`:
 * each blob's bytes go to a callback as they arrive, so a big blob is never held in memory.
 * Open it with every object id it will be asked for; read() them in that order; close() at the end.
 */
export class BlobStream {
  private pending: Buffer = Buffer.alloc(0);
  private readonly chunks: AsyncIterator<Buffer>;
  private stderr = '';
  /** Resolves once git has exited and its output streams are closed (all its output was read). */
  private readonly exited: Promise<number | null>;
  /** Resolves once git has exited, whatever is left unread in its pipes. */
  private readonly ended: Promise<void>;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, private readonly repo: string) {
    this.chunks = (child.stdout as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    child.stderr.on('data', (chunk: Buffer) => { if (this.stderr.length < 4096) this.stderr += chunk.toString('utf8'); });
    this.exited = new Promise((resolve) => {
      child.on('error', () => resolve(null));
      child.on('close', (code) => resolve(code));
    });
    this.ended = new Promise((resolve) => {
      child.on('error', () => resolve());
      child.on('exit', () => resolve());
    });
  }

  static open(repo: string, oids: readonly string[]): BlobStream {
    const child = spawn('git', ['cat-file', '--batch'], { cwd: repo, stdio: ['pipe', 'pipe', 'pipe'] });
    const stream = new BlobStream(child, repo);
    child.stdin.on('error', () => { /* cat-file died: read() reports it */ });
    child.stdin.end(oids.length ? `${oids.join('\n')}\n` : '');
    return stream;
  }

  /** Streams the next blob, which must be `oid`, to `onChunk`; resolves with its size. */
  async read(oid: string, onChunk: (chunk: Buffer) => void): Promise<number> {
    let newline: number;
    while ((newline = this.pending.indexOf(0x0a)) === -1) await this.more(oid);
    const header = this.pending.subarray(0, newline).toString('utf8');
    this.pending = this.pending.subarray(newline + 1);
    const [got, type, sizeText] = header.split(' ');
    if (got !== oid || type !== 'blob' || sizeText === undefined || !/^\d+$/.test(sizeText)) {
      throw this.failure(`asked for blob ${oid}, git answered "${header.slice(0, 120)}"`);
    }
    const size = Number(sizeText);
    let left = size;
    while (left > 0) {
      if (this.pending.length === 0) await this.more(oid);
      const take = this.pending.subarray(0, Math.min(left, this.pending.length));
      this.pending = this.pending.subarray(take.length);
      left -= take.length;
      onChunk(take);
    }
    while (this.pending.length === 0) await this.more(oid);
    this.pending = this.pending.subarray(1); // the LF after the content
    return size;
  }

  /**
   * Ends the process; whatever was not read is dropped. It waits for the exit, not for 'close':
   * unread output keeps git's stdout from ever ending, so 'close' would never come (a packing
   * that stopped at a changed file hung on the blobs after it).
   */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    this.child.stdout.destroy();
    await this.ended;
  }

  private async more(oid: string): Promise<void> {
    const next = await this.chunks.next();
    if (next.done) {
      const code = await this.exited;
      throw this.failure(`git cat-file ended (exit ${code}) before blob ${oid} was read${this.stderr ? `: ${this.stderr.trim().slice(0, 300)}` : ''}`);
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, next.value]) : next.value;
  }

  private failure(why: string): SlipwayError {
    return new SlipwayError('git_failed', `git failed while reading file contents: ${why}`, {
      hint: `run "git fsck" in ${this.repo}; a push packs committed files from the repository's objects`,
    });
  }
}
