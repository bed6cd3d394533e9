import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';

// ajv-formats ships CommonJS; under NodeNext its default export arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: string[] };

/**
 * One Ajv for configs, manifests and API payloads: no type coercion and no silent removal of
 * unknown fields, so bad input is reported instead of being quietly "fixed".
 */
export function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: true, strict: true });
  addFormats(ajv);
  return ajv;
}

const sharedAjv = createAjv();

/** One problem a schema found: where (the path's segments from the root) and what. */
export interface SchemaProblem {
  path: string[];
  message: string;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problems: SchemaProblem[] };

function pointerSegments(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Ajv errors as problems, one per error; an unknown or missing field is named in the path. */
export function schemaProblems(errors: ErrorObject[] | null | undefined): SchemaProblem[] {
  return (errors ?? []).map((e) => {
    const path = pointerSegments(e.instancePath);
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') {
      path.push((e.params as { additionalProperty: string }).additionalProperty);
      message = 'is not a known field (check its spelling, or remove it)';
    } else if (e.keyword === 'required') {
      path.push((e.params as { missingProperty: string }).missingProperty);
      message = 'is required';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    } else if (e.keyword === 'pattern') {
      message = `has characters or a form that is not allowed (must match ${(e.params as { pattern: string }).pattern})`;
    }
    return { path, message };
  });
}

/** A problem as one "path/to/field: problem" line. */
function formatProblem({ path, message }: SchemaProblem, root = ''): string {
  return `${[root, ...path].filter(Boolean).join('/') || '(root)'}: ${message}`;
}

/** Renders Ajv errors as "path/to/field: problem" lines, one per problem. */
export function formatAjvErrors(errors: ErrorObject[] | null | undefined, root = ''): string[] {
  return schemaProblems(errors).map((problem) => formatProblem(problem, root));
}

/** Like compileValidator, with each problem's path as segments, for callers that name fields their own way. */
export function compileChecker<T>(schema: object): (value: unknown) => Checked<T> {
  const validate = sharedAjv.compile(schema);
  return (value: unknown) => {
    if (validate(value)) return { ok: true, value: value as T };
    return { ok: false, problems: schemaProblems(validate.errors) };
  };
}

export function compileValidator<T>(schema: object): (value: unknown) => Validation<T> {
  const check = compileChecker<T>(schema);
  return (value: unknown) => {
    const result = check(value);
    return result.ok ? result : { ok: false, errors: result.problems.map((problem) => formatProblem(problem)) };
  };
}
