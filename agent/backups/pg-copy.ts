import { StringDecoder } from 'node:string_decoder';
import { QUALIFIED_TABLE } from './commands.js';

// Counts the rows of each table in `pg_restore --data-only --file=-` output: every table's data
// is a "COPY <table> (<columns>) FROM stdin;" line, one line per row (newlines inside values are
// escaped as \n in COPY text format), and a "\." line.

const COPY_LINE = new RegExp(`^COPY (${QUALIFIED_TABLE}) (?:\\(.*\\) )?FROM stdin;$`);

export interface CopyCount { table: string; rows: number }

export class CopyRowCounter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';
  private current: CopyCount | null = null;
  private readonly tables: CopyCount[] = [];

  push(chunk: Buffer): void {
    const text = this.partial + this.decoder.write(chunk);
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) this.line(line);
  }

  /** Row counts per table, and whether every COPY block was closed. */
  end(): { tables: CopyCount[]; complete: boolean } {
    const rest = this.partial + this.decoder.end();
    if (rest) this.line(rest);
    this.partial = '';
    return { tables: this.tables.map((t) => ({ ...t })), complete: this.current === null };
  }

  private line(line: string): void {
    if (this.current) {
      if (line === '\\.') this.current = null;
      else this.current.rows += 1;
      return;
    }
    const match = COPY_LINE.exec(line);
    if (match) {
      this.current = { table: match[1]!, rows: 0 };
      this.tables.push(this.current);
    }
  }
}
