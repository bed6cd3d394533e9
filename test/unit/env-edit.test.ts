import { describe, expect, it } from 'vitest';
import { editEnvFile, envKeysOf, parseEnvFile, renderEnvValue } from '../../contract/env-file.js';
import { SlipwayError } from '../../contract/errors.js';

// The edits `deploy env set/unset` make to an app's env file, and the quoting that makes the
// agent's parser read back exactly what was set.

/** Deterministic PRNG (mulberry32): the same values on every run, so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const PIECES = [
  'a', 'Z', '0', '_', '-', '.', '/', ':', '@', '=', ' ', '  ', '\t', '#', ' #', '# ', "'", '"', '\\', '\\n', '\\"', 'n', '\n', '\r',
  'é', '日本', '🚀', '\u00a0', '\u2028', '$', '${X}', '`', '!', ';', '&', '|', '\0', 'export ', 'KEY=', '\\\\',
];

function generated(count: number, seed: number): string[] {
  const random = prng(seed);
  return Array.from({ length: count }, () => {
    const length = Math.floor(random() * 9);
    return Array.from({ length }, () => PIECES[Math.floor(random() * PIECES.length)]!).join('');
  });
}

/** When a value may be refused: what no quoting of the parser carries (the module's doc comment). */
function mayBeRefused(value: string): boolean {
  return value.includes('\0') || value.includes('\r') || value.includes('\u2028') || value.includes('\u2029')
    || (value.includes('\\n') && (value.includes("'") || value.includes('\n')));
}

const readBack = (key: string, rendered: string) => {
  const parsed = parseEnvFile(`${key}=${rendered}\n`);
  return parsed.ok ? parsed.env[key] : parsed;
};

describe('renderEnvValue', () => {
  it('writes a plain value bare, one with spaces or # in single quotes, one with \' or a newline in double quotes', () => {
    expect(renderEnvValue('A', 'postgres://u@db:5432/x')).toBe('postgres://u@db:5432/x');
    expect(renderEnvValue('A', '')).toBe('');
    expect(renderEnvValue('A', 'two words # not a comment')).toBe("'two words # not a comment'");
    expect(renderEnvValue('A', ' padded ')).toBe("' padded '");
    expect(renderEnvValue('A', 'back\\slash')).toBe("'back\\slash'");
    expect(renderEnvValue('A', 'it\'s "quoted"')).toBe('"it\'s \\"quoted\\""');
    expect(renderEnvValue('A', 'line 1\nline 2')).toBe('"line 1\\nline 2"');
  });

  it('refuses a value the parser cannot read back, naming the key and never the value', () => {
    for (const value of ['with\0nul', "it's \\n literal", 'a\\nb\nc', 'cr\rhere']) {
      let error: unknown;
      try { renderEnvValue('API_TOKEN', value); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(SlipwayError);
      expect(error).toMatchObject({ code: 'env_value_invalid', status: 400 });
      const text = `${(error as SlipwayError).message} ${(error as SlipwayError).hint ?? ''}`;
      expect(text).toContain('API_TOKEN');
      expect(text).not.toContain(value);
      expect((error as SlipwayError).hint).toBeTruthy();
    }
  });

  it('round-trips every generated value through the parser, or refuses only what it must', () => {
    const values = [...generated(5000, 42), ...generated(5000, 7), '', ' ', '\n', "'", '"', '\\', '#', '=', "''", '""', '\\"', '"\\'];
    let refused = 0;
    for (const value of values) {
      let rendered: string;
      try {
        rendered = renderEnvValue('K', value);
      } catch (error) {
        expect(error, JSON.stringify(value)).toMatchObject({ code: 'env_value_invalid' });
        expect(mayBeRefused(value), `refused ${JSON.stringify(value)}`).toBe(true);
        refused += 1;
        continue;
      }
      expect(readBack('K', rendered), `${JSON.stringify(value)} rendered as ${JSON.stringify(rendered)}`).toBe(value);
      // Inside a whole file too: a line of its own, between others.
      const parsed = parseEnvFile(`# top\nA=1\nK=${rendered}\nB=2\n`);
      expect(parsed).toEqual({ ok: true, env: { A: '1', K: value, B: '2' } });
    }
    // The alphabet is dense in the refused characters (NUL, CR, U+2028): still most values are written.
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThan(values.length / 2);
  });
});

describe('editEnvFile', () => {
  const FILE = '# database\nDATABASE_URL=postgres://old\n\nexport GREETING="hi there"\n# trailing comment\nDUP=1\nDUP=2\n';

  it('keeps comments, blank lines and untouched lines in order; replaces a set key in place; appends a new one', () => {
    const edit = editEnvFile(FILE, { set: { DATABASE_URL: 'postgres://new', NEW_KEY: 'with space' }, unset: [] });
    expect(edit.text).toBe("# database\nDATABASE_URL=postgres://new\n\nexport GREETING=\"hi there\"\n# trailing comment\nDUP=1\nDUP=2\nNEW_KEY='with space'\n");
    expect(edit).toMatchObject({ added: ['NEW_KEY'], changed: ['DATABASE_URL'], removed: [], unchanged: [] });
    expect(edit.keys).toEqual(['DATABASE_URL', 'GREETING', 'DUP', 'NEW_KEY']);
  });

  it('keeps exactly one line of a duplicated key that is set (where the last one was), and `export`', () => {
    const edit = editEnvFile(FILE, { set: { DUP: '3', GREETING: 'hello' }, unset: [] });
    expect(edit.text).toBe('# database\nDATABASE_URL=postgres://old\n\nexport GREETING=hello\n# trailing comment\nDUP=3\n');
    expect(edit.changed).toEqual(['DUP', 'GREETING']);
  });

  it('removes every line of an unset key; a key not there is unchanged', () => {
    const edit = editEnvFile(FILE, { set: {}, unset: ['DUP', 'ABSENT'] });
    expect(edit.text).toBe('# database\nDATABASE_URL=postgres://old\n\nexport GREETING="hi there"\n# trailing comment\n');
    expect(edit).toMatchObject({ removed: ['DUP'], unchanged: ['ABSENT'], added: [], changed: [] });
  });

  it('changes nothing, byte for byte, when every value is already what it is set to', () => {
    const edit = editEnvFile(FILE, { set: { GREETING: 'hi there', DUP: '2' }, unset: ['ABSENT'] });
    expect(edit.text).toBe(FILE);
    expect(edit).toMatchObject({ added: [], changed: [], removed: [], unchanged: ['GREETING', 'DUP', 'ABSENT'] });
  });

  it('starts a missing (empty) file, and keeps CRLF line ends', () => {
    expect(editEnvFile('', { set: { A: '1' }, unset: [] }).text).toBe('A=1\n');
    expect(editEnvFile('A=1\r\nB=2\r\n', { set: { A: 'x y', C: '3' }, unset: [] }).text).toBe("A='x y'\r\nB=2\r\nC=3\r\n");
    expect(editEnvFile('A=1', { set: {}, unset: ['A'] }).text).toBe('');
  });

  it('reads back exactly what was set, for generated values, after several edits', () => {
    let text = FILE;
    const expected: Record<string, string> = { ...(parseEnvFile(FILE) as { env: Record<string, string> }).env };
    const values = generated(400, 3).filter((v) => !mayBeRefused(v));
    values.forEach((value, i) => {
      const key = `K${i % 17}`;
      text = editEnvFile(text, { set: { [key]: value }, unset: i % 5 === 0 ? ['DUP'] : [] }).text;
      expected[key] = value;
      if (i % 5 === 0) delete expected.DUP;
    });
    expect(parseEnvFile(text)).toEqual({ ok: true, env: expected });
    expect(text.startsWith('# database\n')).toBe(true);
  });

  it('refuses bad keys, a key both set and unset, and an empty change, without values in the message', () => {
    const refuse = (request: { set: Record<string, string>; unset: string[] }) => {
      try { editEnvFile('', request); } catch (error) { return error as SlipwayError; }
      throw new Error('not refused');
    };
    expect(refuse({ set: { '1BAD': 'secret-1' }, unset: [] })).toMatchObject({ code: 'invalid_request', details: [expect.stringContaining('1BAD')] });
    expect(refuse({ set: { A: 'secret-2' }, unset: ['A'] })).toMatchObject({ code: 'invalid_request', details: ['A: both set and unset'] });
    expect(refuse({ set: {}, unset: [] })).toMatchObject({ code: 'invalid_request' });
    expect(JSON.stringify(refuse({ set: { 'B-C': 'secret-3' }, unset: [] }).toBody())).not.toContain('secret-3');
  });

  it('lists keys in file order, once each, leaving comments out', () => {
    expect(envKeysOf('# X=1\nB=1\nexport A=2\nB=3\n  C = 4\n')).toEqual(['B', 'A', 'C']);
  });
});
