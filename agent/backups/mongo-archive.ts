// A streaming reader of mongodump's archive format (the bytes inside the gzip), enough to prove
// an archive is whole and to count its documents per namespace without a MongoDB server:
//
//   magic (uint32 LE 0x8199e26d)
//   prelude block: header doc, one metadata doc per namespace, terminator (int32 -1)
//   body blocks:   namespace header doc {db, collection, EOF}, documents..., terminator
//
// Every namespace dumped ends with a header whose EOF is true (an empty collection has only
// that). A dump cut short stops mid-document or before some namespace's EOF, which this reader
// reports. Views and time-series collections carry metadata only, so they need no EOF.

export const MONGO_ARCHIVE_MAGIC = 0x8199e26d;
const TERMINATOR = 0xffffffff;
const MIN_BSON = 5;
const MAX_BSON = 16 * 1024 * 1024 + 16 * 1024;

export interface MongoArchiveSummary {
  /** Namespaces announced in the prelude ("db.collection"). */
  namespaces: string[];
  /** Documents per namespace that has data blocks. */
  counts: Record<string, number>;
  /** True when the stream ended on a block boundary and every namespace with data reached its EOF. */
  complete: boolean;
  problems: string[];
  formatVersion: string | null;
}

type Field = string | boolean | number | null;

/** Reads the top-level string, bool and int fields of one BSON document; others are skipped. */
export function readBsonFields(doc: Buffer): Record<string, Field> {
  const fields: Record<string, Field> = {};
  const length = doc.readInt32LE(0);
  if (length !== doc.length || doc[length - 1] !== 0) throw new Error('malformed BSON document');
  let at = 4;
  const cstring = () => {
    const end = doc.indexOf(0, at);
    if (end < 0 || end >= length) throw new Error('malformed BSON key');
    const value = doc.toString('utf8', at, end);
    at = end + 1;
    return value;
  };
  while (at < length - 1) {
    const type = doc[at++]!;
    const key = cstring();
    switch (type) {
      case 0x02: case 0x0d: case 0x0e: { // string, JS code, symbol
        const size = doc.readInt32LE(at);
        if (size < 1 || at + 4 + size > length) throw new Error('malformed BSON string');
        if (type === 0x02) fields[key] = doc.toString('utf8', at + 4, at + 4 + size - 1);
        at += 4 + size;
        break;
      }
      case 0x08: fields[key] = doc[at] === 1; at += 1; break;
      case 0x10: fields[key] = doc.readInt32LE(at); at += 4; break;
      case 0x12: fields[key] = Number(doc.readBigInt64LE(at)); at += 8; break;
      case 0x01: fields[key] = doc.readDoubleLE(at); at += 8; break;
      case 0x09: case 0x11: at += 8; break;
      case 0x07: at += 12; break;
      case 0x13: at += 16; break;
      case 0x0a: case 0x06: case 0xff: case 0x7f: fields[key] = null; break;
      case 0x03: case 0x04: case 0x0f: at += doc.readInt32LE(at); break;
      case 0x05: at += 5 + doc.readInt32LE(at); break;
      case 0x0b: cstring(); cstring(); break;
      case 0x0c: at += 4 + doc.readInt32LE(at) + 12; break;
      default: throw new Error(`unknown BSON type 0x${type.toString(16)}`);
    }
    if (at > length - 1) throw new Error('malformed BSON element');
  }
  return fields;
}

/** A view or time-series collection: its prelude entry has no data blocks of its own. */
function isMetadataOnly(fields: Record<string, Field>): boolean {
  if (fields.type === 'view' || fields.type === 'timeseries') return true;
  if (typeof fields.metadata !== 'string') return false;
  try {
    const metadata = JSON.parse(fields.metadata) as { options?: { viewOn?: unknown; timeseries?: unknown }; type?: unknown };
    return metadata.options?.viewOn !== undefined || metadata.options?.timeseries !== undefined || metadata.type === 'view';
  } catch {
    return false;
  }
}

type Section = 'prelude' | 'block' | 'body';
type Phase = 'magic' | 'length' | 'document' | 'document-end';

/** Feed it the decompressed archive in chunks of any size, then call end(). */
export class MongoArchiveReader {
  private section: Section = 'prelude';
  private phase: Phase = 'magic';
  /** Bytes the current phase needs, gathered in `acc`. */
  private want = 4;
  private acc: Buffer[] = [];
  private accBytes = 0;
  /** Bytes of the current document still to skip (documents are counted, not kept). */
  private skip = 0;
  private lengthPrefix: Buffer | null = null;
  private sawHeader = false;
  private current: { ns: string; eof: boolean } | null = null;
  private readonly namespaces: string[] = [];
  /** Prelude namespaces that must reach an EOF marker (all but views and time-series). */
  private readonly expected = new Set<string>();
  private readonly counts = new Map<string, number>();
  private readonly finished = new Set<string>();
  private formatVersion: string | null = null;
  private failure: string | null = null;

  push(chunk: Buffer): void {
    if (this.failure) return;
    let data = chunk;
    try {
      while (data.length) {
        if (this.skip > 0) {
          const n = Math.min(this.skip, data.length);
          this.skip -= n;
          data = data.subarray(n);
          continue;
        }
        const n = Math.min(this.want - this.accBytes, data.length);
        this.acc.push(data.subarray(0, n));
        this.accBytes += n;
        data = data.subarray(n);
        if (this.accBytes === this.want) {
          const got = this.acc.length === 1 ? this.acc[0]! : Buffer.concat(this.acc);
          this.acc = [];
          this.accBytes = 0;
          this.step(got);
        }
      }
    } catch (error) {
      this.failure = (error as Error).message;
    }
  }

  end(): MongoArchiveSummary {
    const problems: string[] = [];
    const midway = this.phase !== 'length' || this.accBytes > 0 || this.skip > 0;
    if (this.failure) problems.push(this.failure);
    else if (this.phase === 'magic') problems.push('the archive is empty or shorter than its magic number');
    else if (this.section === 'prelude') problems.push('the archive ends inside its prelude');
    else if (this.section === 'body' || midway) problems.push(`the archive ends inside a block of ${this.current?.ns ?? 'a namespace'}`);
    for (const ns of new Set([...this.expected, ...this.counts.keys()])) {
      if (!this.finished.has(ns)) problems.push(`namespace ${ns} has no end-of-data marker (the dump stopped early)`);
    }
    return {
      namespaces: [...this.namespaces],
      counts: Object.fromEntries(this.counts),
      complete: problems.length === 0,
      problems,
      formatVersion: this.formatVersion,
    };
  }

  private expect(phase: Phase, bytes: number): void {
    this.phase = phase;
    this.want = bytes;
  }

  private step(got: Buffer): void {
    switch (this.phase) {
      case 'magic':
        if (got.readUInt32LE(0) !== MONGO_ARCHIVE_MAGIC) throw new Error('not a mongodump archive (wrong magic number)');
        return this.expect('length', 4);
      case 'length':
        return this.onLength(got);
      case 'document':
        this.onDocument(Buffer.concat([this.lengthPrefix!, got]));
        return this.expect('length', 4);
      case 'document-end':
        if (got[0] !== 0) throw new Error(`a document of ${this.current!.ns} does not end with a null byte`);
        this.counts.set(this.current!.ns, (this.counts.get(this.current!.ns) ?? 0) + 1);
        return this.expect('length', 4);
    }
  }

  private onLength(bytes: Buffer): void {
    const size = bytes.readUInt32LE(0);
    if (size === TERMINATOR) {
      if (this.section === 'prelude') {
        if (!this.sawHeader) throw new Error('the archive prelude has no header');
        this.section = 'block';
      } else if (this.section === 'body') {
        this.section = 'block';
        this.current = null;
      } else {
        throw new Error('two terminators in a row (a headerless block)');
      }
      return this.expect('length', 4);
    }
    if (size < MIN_BSON || size > MAX_BSON) throw new Error(`${size} is neither a BSON length nor a terminator`);
    if (this.section === 'body') {
      if (this.current!.eof) throw new Error(`namespace ${this.current!.ns} has data after its end marker`);
      this.skip = size - 5;
      return this.expect('document-end', 1);
    }
    this.lengthPrefix = Buffer.from(bytes);
    return this.expect('document', size - 4);
  }

  private onDocument(doc: Buffer): void {
    const fields = readBsonFields(doc);
    if (this.section === 'prelude') {
      if (!this.sawHeader) {
        this.sawHeader = true;
        this.formatVersion = typeof fields.version === 'string' ? fields.version : null;
        return;
      }
      const ns = `${String(fields.db ?? '')}.${String(fields.collection ?? '')}`;
      this.namespaces.push(ns);
      if (!isMetadataOnly(fields)) this.expected.add(ns);
      return;
    }
    // section 'block': a namespace header opens a body
    if (typeof fields.db !== 'string' || typeof fields.collection !== 'string') throw new Error('a block header names no namespace');
    const ns = `${fields.db}.${fields.collection}`;
    if (this.finished.has(ns)) throw new Error(`namespace ${ns} continues after its end marker`);
    const eof = fields.EOF === true;
    if (eof) this.finished.add(ns);
    if (!this.counts.has(ns)) this.counts.set(ns, 0);
    this.current = { ns, eof };
    this.section = 'body';
  }
}
