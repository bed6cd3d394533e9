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

/** Renders Ajv errors as "path/to/field: problem" lines, one per problem. */
export function formatAjvErrors(errors: ErrorObject[] | null | undefined, root = ''): string[] {
  return (errors ?? []).map((e) => {
    let path = e.instancePath.replace(/^\//, '');
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      path = path ? `${path}/${extra}` : extra;
      message = 'is not a known field (check its spelling, or remove it)';
    } else if (e.keyword === 'required') {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      path = path ? `${path}/${missing}` : missing;
      message = 'is required';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    } else if (e.keyword === 'pattern') {
      message = `has characters or a form that is not allowed (must match ${(e.params as { pattern: string }).pattern})`;
    }
    const full = [root, path].filter(Boolean).join('/');
    return `${full || '(root)'}: ${message}`;
  });
}

export function compileValidator<T>(schema: object): (value: unknown) => Validation<T> {
  const validate = sharedAjv.compile(schema);
  return (value: unknown) => {
    if (validate(value)) return { ok: true, value: value as T };
    return { ok: false, errors: formatAjvErrors(validate.errors) };
  };
}
