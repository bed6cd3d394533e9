/**
 * Every error code the programs can produce is declared once, with its kind, and each kind exits
 * with the code the README's table promises. The sources are scanned, so a code made anywhere
 * (including the bare error bodies the agent's framework hooks send) is covered.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_KINDS, SlipwayError, isErrorCode, type ErrorKind } from '../../contract/errors.js';
import { EXIT, EXIT_CODE_OF_KIND, exitCodeFor, exitCodeOfResult } from '../../controller/errors.js';
import type { DeploymentResult } from '../../contract/api.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SOURCE_DIRS = ['agent', 'controller', 'lib', 'contract'];

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.join(entry.parentPath, entry.name));
}

const sources = SOURCE_DIRS.flatMap(sourceFiles).map((file) => ({ file: path.relative(ROOT, file), text: readFileSync(file, 'utf8') }));

/** Codes given literally to `new SlipwayError(`, and the literal prefixes of codes built from a template. */
function createdCodes(): { literal: Map<string, string>; templatePrefixes: string[] } {
  const literal = new Map<string, string>();
  const templatePrefixes: string[] = [];
  for (const { file, text } of sources) {
    for (const match of text.matchAll(/new SlipwayError\(\s*'([^']+)'/g)) literal.set(match[1]!, file);
    for (const match of text.matchAll(/new SlipwayError\(\s*`([a-z_]*)\$\{/g)) templatePrefixes.push(match[1]!);
  }
  return { literal, templatePrefixes };
}

/** Codes the agent sends in hand-made error bodies ({ error: 'code', message }) that no SlipwayError carries. */
function bodyCodes(): Map<string, string> {
  const codes = new Map<string, string>();
  for (const { file, text } of sources.filter((s) => s.file.startsWith('agent/'))) {
    for (const match of text.matchAll(/\berror: '([a-z_]+)', message:/g)) codes.set(match[1]!, file);
  }
  return codes;
}

/** The README's exit-code table: kind → exit code. */
function readmeExitTable(): Map<string, number> {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const table = new Map<string, number>();
  for (const match of readme.matchAll(/^\| `(\d+)` \| (?:`([a-z_]+)`)? *\|/gm)) table.set(match[2] ?? 'ok', Number(match[1]));
  return table;
}

describe('error codes and their kinds', () => {
  it('every code created in agent/, controller/, lib/ and contract/ is registered with a kind', () => {
    const { literal } = createdCodes();
    expect(literal.size, 'the scan finds the codes').toBeGreaterThan(100);
    const unregistered = [...literal].filter(([code]) => !isErrorCode(code)).map(([code, file]) => `${code} (${file})`);
    expect(unregistered).toEqual([]);
  });

  it('every code the agent puts in a hand-made error body is registered too (the controller narrows what it receives)', () => {
    const codes = bodyCodes();
    expect(codes.size).toBeGreaterThan(3);
    expect([...codes].filter(([code]) => !isErrorCode(code)).map(([code, file]) => `${code} (${file})`)).toEqual([]);
  });

  it('every registered code is made somewhere: no stale entries like ssh_timeout', () => {
    const { templatePrefixes } = createdCodes();
    const everything = sources.filter((s) => s.file !== path.join('contract', 'errors.ts')).map((s) => s.text).join('\n');
    const stale = Object.keys(ERROR_KINDS).filter((code) =>
      !everything.includes(`'${code}'`) && !templatePrefixes.some((prefix) => prefix !== '' && code.startsWith(prefix)));
    expect(stale).toEqual([]);
    expect(isErrorCode('ssh_timeout')).toBe(false);
  });

  it('each kind exits with the code the README table promises, and every exit code is in the table', () => {
    const table = readmeExitTable();
    const kinds = Object.keys(EXIT_CODE_OF_KIND) as ErrorKind[];
    expect(new Set(Object.values(ERROR_KINDS))).toEqual(new Set(kinds));
    for (const kind of kinds) expect(table.get(kind), `README row for ${kind}`).toBe(EXIT_CODE_OF_KIND[kind]);
    expect([...table.values()].sort()).toEqual(Object.values(EXIT).sort());
    expect(table.get('ok')).toBe(EXIT.ok);
  });

  it('classifies the codes that used to fall through to "failed before the switch"', () => {
    const exitOf = (code: keyof typeof ERROR_KINDS) => exitCodeFor(new SlipwayError(code, 'x'));
    for (const code of ['ssh_no_credentials', 'ssh_key_unreadable', 'ssh_key_unusable', 'known_hosts_unreadable'] as const) {
      expect(exitOf(code), code).toBe(EXIT.usage);
    }
    for (const code of ['host_key_unreadable', 'remote_command_timeout', 'ssh_channel_failed', 'agent_bad_response', 'upload_stalled'] as const) {
      expect(exitOf(code), code).toBe(EXIT.unreachable);
    }
    expect(exitOf('ssh_session_closed'), 'its hint says it is a bug in Slipway').toBe(EXIT.internal);
    expect(exitOf('agent_stream_cut')).toBe(EXIT.inDoubt);
    expect(exitOf('rollout_link_lost')).toBe(EXIT.inDoubt);
    expect(exitOf('watch_failed_no_previous')).toBe(EXIT.failedAfterSwitch);
  });

  it('a rollout result exits by where it stopped', () => {
    const result = (outcome: DeploymentResult['outcome'], phase: DeploymentResult['phase']) => ({ outcome, phase }) as DeploymentResult;
    expect(exitCodeOfResult(result('succeeded', null))).toBe(EXIT.ok);
    expect(exitCodeOfResult(result('rolled_back', 'after_switch'))).toBe(EXIT.rolledBack);
    expect(exitCodeOfResult(result('failed', 'before_switch'))).toBe(EXIT.failedBeforeSwitch);
    expect(exitCodeOfResult(result('failed', 'after_switch'))).toBe(EXIT.failedAfterSwitch);
  });
});
