// Schemas every route module shares: path parameters, "nothing here" for queries and bodies, the
// error answer, and the type that ties a response schema to its wire type.
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, SLOTS } from '../../contract/names.js';

export type JsonSchema = Readonly<Record<string, unknown>>;

/**
 * The schema of an object whose fields are exactly T's. Response schemas also decide what is
 * sent (a field the schema does not name is left out), so a wire type that gains a field
 * without its schema must not compile: `schema satisfies ObjectSchemaOf<WireType>`.
 */
export interface ObjectSchemaOf<T> {
  readonly type: 'object' | readonly ['object', 'null'];
  readonly additionalProperties: false;
  readonly required: readonly (keyof T & string)[];
  readonly properties: { readonly [K in keyof T]-?: JsonSchema };
}

export const nullable = (type: string) => ({ type: [type, 'null'] }) as const;
export const slotSchema = { type: 'string', enum: [...SLOTS] } as const;
export const stringList = { type: 'array', items: { type: 'string' } } as const;

export const appParams = {
  type: 'object', additionalProperties: false, required: ['app'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN } },
} as const;
export interface AppParams { app: string }

export const releaseParams = {
  type: 'object', additionalProperties: false, required: ['app', 'releaseId'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN } },
} as const;
export interface ReleaseParams { app: string; releaseId: string }

/** A query string with no fields: `?anything` is refused, not ignored. */
export const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
export type NoQuery = Record<string, never>;

/** A route that takes no body: none at all, or `{}`. Anything else is refused, not ignored. */
export const noBody = { type: ['object', 'null'], additionalProperties: false, properties: {} } as const;
export type NoBody = Record<string, never> | null | undefined;

/** What every refusal looks like (contract/errors.ts ErrorBody). */
export const errorBody = {
  type: 'object', additionalProperties: false, required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' }, hint: { type: 'string' }, details: stringList },
} as const;

/** Response schemas of a route: its successes, and Slipway's error shape for the rest. */
export function answers<Success extends Record<number, JsonSchema>>(success: Success) {
  return { ...success, '4xx': errorBody, '5xx': errorBody } as const;
}
