/**
 * The controller reads deploy.spec.json from the commit being deployed (a dirty snapshot included),
 * reports JSON syntax errors with line and column and every spec problem with its field path,
 * and records the tag a release was named by.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { lineColumn, loadSpec, parseJson, parseSpecText } from '../../controller/build/spec.js';
import { resolveCommit, snapshotWorkTree, tagOf } from '../../controller/git.js';
import { runCommand } from '../../lib/exec.js';
import { createAppRepo, type AppRepo } from '../helpers/git-repo.js';

const minimal = { processes: { web: { script: 'server.js' } }, routes: [{ serverNames: ['shop.test'], process: 'web' }] };

describe('parseSpecText (pure)', () => {
  it('normalises a valid spec and digests it', () => {
    const result = parseSpecText(JSON.stringify(minimal));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.spec.processes.web).toMatchObject({ script: 'server.js', port: true, instances: 1 });
    expect(result.loaded.spec.routes[0]).toMatchObject({ path: '/', websocket: true });
    expect(result.loaded.digest).toMatch(/^[0-9a-f]{64}$/);
    // Key order and whitespace do not change the digest.
    const reordered = parseSpecText(`{ "routes": [{ "process": "web", "serverNames": ["shop.test"] }],\n "processes": { "web": { "script": "server.js" } } }`);
    expect(reordered.ok && reordered.loaded.digest).toBe(result.loaded.digest);
  });

  it('names the line and column of a JSON syntax error', () => {
    expect(parseSpecText('{\n  "processes": {},\n}')).toEqual({ ok: false, problems: ['deploy.spec.json: line 3, column 1: Expected double-quoted property name'] });
    expect(parseSpecText('{"processes":')).toEqual({ ok: false, problems: ['deploy.spec.json: line 1, column 14: Unexpected end'] });
    expect(parseJson('{"a": "x\u0000"}')).toEqual({ ok: false, message: 'line 1, column 9: Bad control character in string literal' });
    expect(lineColumn('ab\ncd\ne', 4)).toEqual({ line: 2, column: 2 });
  });

  it('reports every problem at once, each with its field path', () => {
    const bad = {
      processes: { web: { script: 'server.js', colour: 'blue', env: { NAME: 'a\u0000b' } } },
      routes: [{ serverNames: ['shop.test'], process: 'web', path: 'api' }],
    };
    const result = parseSpecText(JSON.stringify(bad));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual([
      'deploy.spec.json: processes/web/colour: is not a known field (check its spelling, or remove it)',
      expect.stringMatching(/^deploy\.spec\.json: processes\/web\/env\/NAME: has characters or a form that is not allowed/),
      expect.stringMatching(/^deploy\.spec\.json: routes\/0\/path: has characters or a form that is not allowed/),
    ]);
  });

  it('reports the rules a schema cannot say with their paths too', () => {
    const result = parseSpecText(JSON.stringify({ processes: { web: { script: 'a.js', command: ['x'] } }, routes: [{ serverNames: ['a.test'], process: 'api' }] }));
    expect(!result.ok && result.problems).toEqual([
      'deploy.spec.json: processes/web: needs exactly one of "command" (argv) or "script" (a Node script)',
      'deploy.spec.json: routes/0/process: names no process (the spec has web)',
    ]);
  });
});

describe('loadSpec and tags (real git)', () => {
  let dir: string;
  let repo: AppRepo;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-spec-load-'));
    repo = await createAppRepo(path.join(dir, 'app'), path.join(import.meta.dirname, '..', 'fixtures', 'sample-app'));
  });
  afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  it('a commit without deploy.spec.json has no spec (legacy)', async () => {
    expect(await loadSpec(repo.dir, await repo.head(), 'x')).toBeNull();
  });

  it('reads the committed spec, not the work tree', async () => {
    const sha = await repo.commit({ 'deploy.spec.json': JSON.stringify(minimal) }, 'spec');
    await fs.writeFile(path.join(repo.dir, 'deploy.spec.json'), '{ broken');
    const loaded = await loadSpec(repo.dir, sha, sha.slice(0, 12));
    expect(loaded?.spec.processes.web?.script).toBe('server.js');
    // A dirty snapshot carries the work tree's spec, and so its problems.
    const snapshot = await snapshotWorkTree(repo.dir);
    const error = await loadSpec(repo.dir, snapshot!, 'dirty').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'spec_invalid', kind: 'usage', details: ['deploy.spec.json: line 1, column 3: Expected property name or \'}\''] });
    await runCommand(['git', 'checkout', '--', 'deploy.spec.json'], { cwd: repo.dir });
  });

  it('names the tag a ref is, lightweight or annotated, and peels it to the commit', async () => {
    const sha = await repo.head();
    await runCommand(['git', 'tag', 'v1.0'], { cwd: repo.dir });
    await runCommand(['git', 'tag', '-a', 'v1.1', '-m', 'annotated'], { cwd: repo.dir });
    expect(await tagOf(repo.dir, 'v1.0')).toBe('v1.0');
    expect(await tagOf(repo.dir, 'v1.1')).toBe('v1.1');
    expect(await tagOf(repo.dir, 'tags/v1.1')).toBe('v1.1');
    expect(await tagOf(repo.dir, 'refs/tags/v1.1')).toBe('v1.1');
    expect(await resolveCommit(repo.dir, 'v1.1')).toBe(sha);
    expect(await tagOf(repo.dir, 'HEAD')).toBeNull();
    expect(await tagOf(repo.dir, 'main')).toBeNull();
    expect(await tagOf(repo.dir, sha)).toBeNull();
    expect(await tagOf(repo.dir, '--all')).toBeNull();
  });
});
