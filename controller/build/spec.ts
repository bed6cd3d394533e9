import { SlipwayError } from '../../contract/errors.js';
import { SPEC_FILE, checkAppSpec, specDigest, specProblemLines, type AppSpec } from '../../contract/spec.js';
import { readCommittedFile } from '../git.js';

// The app spec of a release comes from the commit being deployed (deploy.spec.json at its root),
// never from the work tree: a rollback to that commit brings the spec back with the code.

/** Larger than any real spec; a bigger file is a mistake (a generated file committed under this name). */
export const MAX_SPEC_BYTES = 1024 * 1024;

export interface LoadedSpec {
  spec: AppSpec;
  digest: string;
}

/** Pure: 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}

/** Pure: JSON.parse with the position of a syntax error as line and column. */
export function parseJson(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const raw = error instanceof Error ? error.message : String(error);
    const at = /at position (\d+)/.exec(raw);
    const offset = at ? Number(at[1]) : text.length;
    const { line, column } = lineColumn(text, offset);
    const reason = raw.replace(/\s*in JSON at position \d+.*$/s, '').replace(/ of JSON input$/, '');
    return { ok: false, message: `line ${line}, column ${column}: ${reason}` };
  }
}

/**
 * Pure: the spec in a file's text: parsed, checked and normalised (contract/spec.ts), with its
 * digest; or every problem, one "deploy.spec.json: field/path: message" line each.
 */
export function parseSpecText(text: string): { ok: true; loaded: LoadedSpec } | { ok: false; problems: string[] } {
  const parsed = parseJson(text.replace(/^\uFEFF/, ''));
  if (!parsed.ok) return { ok: false, problems: [`${SPEC_FILE}: ${parsed.message}`] };
  const checked = checkAppSpec(parsed.value);
  if (!checked.ok) return { ok: false, problems: specProblemLines(checked.problems) };
  return { ok: true, loaded: { spec: checked.spec, digest: specDigest(checked.spec) } };
}

/** The spec committed in `treeish` (a commit, or a dirty tree's snapshot commit); null when it has none. */
export async function loadSpec(repo: string, treeish: string, label: string): Promise<LoadedSpec | null> {
  const text = await readCommittedFile(repo, treeish, SPEC_FILE, MAX_SPEC_BYTES);
  if (text === null) return null;
  if (text === 'too_large') {
    throw new SlipwayError('spec_invalid', `${SPEC_FILE} in ${label} is larger than ${MAX_SPEC_BYTES / 1024} KiB`, {
      hint: `${SPEC_FILE} describes processes, routes and the build; keep data elsewhere`,
    });
  }
  const result = parseSpecText(text);
  if (!result.ok) {
    const count = result.problems.length;
    throw new SlipwayError('spec_invalid', `${SPEC_FILE} in ${label} has ${count} problem${count === 1 ? '' : 's'}; nothing was built or uploaded`, {
      details: result.problems,
      hint: `fix ${SPEC_FILE}, commit it, and push again (the spec is read from the commit being deployed, not the work tree)`,
    });
  }
  return result.loaded;
}
