import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Header, Pax } from 'tar';

/**
 * A tar writer whose output depends only on the entries given to it: every entry gets the same
 * mtime (the commit's time), uid/gid 0, no user or group name, and a normalised mode (files
 * 0644, or 0755 when any execute bit is set; directories 0755; symlinks 0777). Paths that do
 * not fit a ustar header get a pax header holding only path, linkpath and mtime. The archive
 * ends with the two zero blocks at `endOffset`, so more entries can be written over them later.
 *
 * Writes are synchronous on one file descriptor: entry order is exactly call order.
 */
export class TarWriter {
  private offset = 0;
  private ended = false;

  private constructor(private readonly fd: number, private readonly mtime: Date) {}

  /** A new archive at `file` (created 0600, truncated). */
  static create(file: string, mtime: Date): TarWriter {
    return new TarWriter(openSync(file, 'w', 0o600), mtime);
  }

  /** Continues an archive at `file` from `offset` (the endOffset it was closed with), overwriting the end blocks. */
  static resume(file: string, offset: number, mtime: Date): TarWriter {
    const writer = new TarWriter(openSync(file, 'r+'), mtime);
    writer.offset = offset;
    return writer;
  }

  /** Where the end-of-archive blocks start once `close()` ran. */
  get endOffset(): number {
    return this.offset;
  }

  directory(archivePath: string): void {
    this.header({ path: withSlash(archivePath), type: 'Directory', mode: 0o755, size: 0 });
  }

  symlink(archivePath: string, target: string): void {
    this.header({ path: archivePath, type: 'SymbolicLink', mode: 0o777, size: 0, linkpath: target });
  }

  /** A regular file from a buffer. */
  bytes(archivePath: string, mode: number, content: Buffer): void {
    this.header({ path: archivePath, type: 'File', mode: fileMode(mode), size: content.length });
    this.write(content);
    this.pad(content.length);
  }

  /** A regular file whose content arrives in chunks (`size` bytes in all); returns the sink for them. */
  beginFile(archivePath: string, mode: number, size: number): { chunk(data: Buffer): void; end(): void } {
    this.header({ path: archivePath, type: 'File', mode: fileMode(mode), size });
    let written = 0;
    return {
      chunk: (data) => { written += data.length; this.write(data); },
      end: () => {
        if (written !== size) throw new Error(`${archivePath}: ${written} bytes written, ${size} declared`);
        this.pad(size);
      },
    };
  }

  /** Copies a file from disk. */
  file(archivePath: string, mode: number, source: string, size: number): void {
    const sink = this.beginFile(archivePath, mode, size);
    const fd = openSync(source, 'r');
    try {
      const buffer = Buffer.allocUnsafe(1024 * 1024);
      let position = 0;
      while (position < size) {
        const read = readSync(fd, buffer, 0, Math.min(buffer.length, size - position), position);
        if (read === 0) throw new Error(`${source} shrank while it was packed`);
        sink.chunk(buffer.subarray(0, read));
        position += read;
      }
    } finally {
      closeSync(fd);
    }
    sink.end();
  }

  /**
   * Adds what is under `root` as `prefix/...`: `root` itself (when prefix is not empty) and then
   * every entry below it in byte order of its name, depth first. Hardlinked files become regular
   * files; sockets, fifos and devices are left out.
   */
  tree(root: string, prefix: string): void {
    const st = lstatSync(root);
    if (st.isSymbolicLink()) this.symlink(prefix, readlinkSync(root));
    else if (st.isFile()) this.file(prefix, st.mode, root, st.size);
    else if (st.isDirectory()) {
      if (prefix !== '') this.directory(prefix);
      for (const name of readdirSync(root).sort(byteOrder)) this.tree(path.join(root, name), prefix === '' ? name : `${prefix}/${name}`);
    }
  }

  /** Writes the end-of-archive blocks and closes the file. */
  close(): void {
    if (!this.ended) {
      writeSync(this.fd, Buffer.alloc(1024), 0, 1024, this.offset);
      this.ended = true;
    }
    closeSync(this.fd);
  }

  private header(data: { path: string; type: 'File' | 'Directory' | 'SymbolicLink'; mode: number; size: number; linkpath?: string }): void {
    const fields = { ...data, uid: 0, gid: 0, uname: '', gname: '', mtime: this.mtime };
    const block = Buffer.alloc(512);
    const header = new Header(fields);
    if (header.encode(block)) {
      this.write(new Pax({ path: data.path, ...(data.linkpath ? { linkpath: data.linkpath } : {}), mtime: this.mtime }).encode());
      // The ustar fields then hold what fits; readers take the pax values.
      block.fill(0);
      new Header(fields).encode(block);
    }
    this.write(block);
  }

  private write(data: Buffer): void {
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, this.offset + done);
    this.offset += data.length;
  }

  private pad(size: number): void {
    const rest = size % 512;
    if (rest) this.write(Buffer.alloc(512 - rest));
  }
}

/** Pure: 0755 for a file any execute bit is set on, else 0644. */
export function fileMode(mode: number): number {
  return mode & 0o111 ? 0o755 : 0o644;
}

function withSlash(p: string): string {
  return p.endsWith('/') ? p : `${p}/`;
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
