import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingEnvKeys, parseEnvFile, readAppEnv } from '../../agent/envfile.js';

describe('env file', () => {
  it('parses KEY=VALUE lines, quotes, export and comments', () => {
    expect(parseEnvFile('# comment\nA=1\nexport B="two words"\nC=\'x=y\'\nD=plain # trailing\n\n')).toEqual({
      ok: true, env: { A: '1', B: 'two words', C: 'x=y', D: 'plain' },
    });
  });

  it('reports bad lines by number without echoing them (they may hold secrets)', () => {
    const result = parseEnvFile('A=1\nthis is SECRET\n');
    expect(result).toEqual({ ok: false, errors: ['line 2: expected KEY=VALUE'] });
  });

  it('finds missing and empty required keys', () => {
    expect(missingEnvKeys({ A: '1', B: '' }, ['A', 'B', 'C'])).toEqual(['B', 'C']);
  });

  it('refuses an env file other users can read', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-env-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'A=1\n');
    chmodSync(file, 0o644);
    await expect(readAppEnv(file, 'shop', [])).rejects.toMatchObject({ code: 'env_file_insecure', hint: `run: chmod 600 ${file}` });
    chmodSync(file, 0o600);
    await expect(readAppEnv(file, 'shop', ['A'])).resolves.toEqual({ A: '1' });
    await expect(readAppEnv(file, 'shop', ['A', 'DB_URI'])).rejects.toMatchObject({ code: 'env_missing_keys' });
    await expect(readAppEnv(path.join(dir, 'missing'), 'shop', [])).resolves.toEqual({});
  });
});
