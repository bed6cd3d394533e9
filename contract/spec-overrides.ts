import { compileChecker } from '../lib/validate.js';
import { SERVER_NAME_PATTERN } from './names.js';
import {
  checkAppSpec, ENV_NAME_PATTERN, MEMORY_PATTERN, PROCESS_NAME_PATTERN, smokeSchema, watchSchema,
  type AppSpec, type SmokeCheck, type SpecProblem, type WatchSpec,
} from './spec.js';

// Per-environment changes to a release's app spec (deploy.config.json environments.<env>.spec).
// The artifact is the same in every environment; what differs between staging and production
// (server names, instance counts, a few non-secret env values, the watch window, smoke checks)
// is merged into the release's spec where the spec is used: by the controller before packing
// (checked), and by the agent wherever a release's effective spec is computed.

export interface ProcessOverride { instances?: number; env?: Record<string, string>; maxMemory?: string }

export interface SpecOverrides {
  /** Replaces the serverNames of every route. */
  serverNames?: string[];
  /** Per route (by its index in the spec's routes): replaces its serverNames. */
  routes?: Record<string, { serverNames: string[] }>;
  processes?: Record<string, ProcessOverride>;
  /** Non-secret values added to every process's env (a process's own override wins). */
  env?: Record<string, string>;
  /** Replaces the spec's watch window (fields not given take their defaults). */
  watch?: Partial<WatchSpec>;
  /** Replaces the spec's smoke checks. */
  smoke?: Partial<SmokeCheck>[];
}

/** Header carrying the overrides with an upload (base64url of their JSON). */
export const SPEC_OVERRIDES_HEADER = 'x-slipway-spec-overrides';
export const MAX_SPEC_OVERRIDES_BYTES = 8 * 1024;

const serverNames = { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', pattern: SERVER_NAME_PATTERN } } as const;
const envMap = {
  type: 'object', maxProperties: 256,
  propertyNames: { pattern: ENV_NAME_PATTERN, maxLength: 128 },
  additionalProperties: { type: 'string', maxLength: 4096, pattern: '^[^\\u0000]*$' },
} as const;
// Without the top-level default: an absent watch must stay absent (useDefaults would add one).
const { default: _watchDefault, ...watchOverride } = watchSchema;

export const specOverridesSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    serverNames,
    routes: {
      type: 'object', maxProperties: 256, propertyNames: { pattern: '^(0|[1-9][0-9]{0,2})$' },
      additionalProperties: { type: 'object', additionalProperties: false, required: ['serverNames'], properties: { serverNames } },
    },
    processes: {
      type: 'object', maxProperties: 32, propertyNames: { pattern: PROCESS_NAME_PATTERN },
      additionalProperties: {
        type: 'object', additionalProperties: false,
        properties: { instances: { type: 'integer', minimum: 1, maximum: 64 }, env: envMap, maxMemory: { type: 'string', pattern: MEMORY_PATTERN } },
      },
    },
    env: envMap,
    watch: watchOverride,
    smoke: { type: 'array', maxItems: 64, items: smokeSchema },
  },
} as const;

const checkOverrides = compileChecker<SpecOverrides>(specOverridesSchema);

/** Pure: validates overrides (defaults of smoke checks and watch filled in); problems name their fields. */
export function checkSpecOverrides(raw: unknown): { ok: true; overrides: SpecOverrides } | { ok: false; problems: SpecProblem[] } {
  const copy = structuredClone(raw);
  const checked = checkOverrides(copy);
  if (!checked.ok) return { ok: false, problems: checked.problems.map((p) => ({ field: p.path.join('/') || '(root)', message: p.message })) };
  return { ok: true, overrides: checked.value };
}

/** Pure: true when there is nothing to override. */
export function isEmptyOverrides(overrides: SpecOverrides | null | undefined): boolean {
  return !overrides || Object.keys(overrides).length === 0;
}

/**
 * Pure: the spec with the overrides merged in (not checked: see mergeSpecOverrides). Routes and
 * processes the spec does not have are left out here and reported by mergeSpecOverrides.
 */
export function applySpecOverrides(spec: AppSpec, overrides: SpecOverrides | null | undefined): AppSpec {
  const merged = structuredClone(spec);
  if (!overrides) return merged;
  if (overrides.serverNames) for (const route of merged.routes) route.serverNames = [...overrides.serverNames];
  for (const [index, route] of Object.entries(overrides.routes ?? {})) {
    const target = merged.routes[Number(index)];
    if (target) target.serverNames = [...route.serverNames];
  }
  for (const [name, proc] of Object.entries(merged.processes)) {
    const own = overrides.processes?.[name];
    proc.env = { ...proc.env, ...overrides.env, ...own?.env };
    if (own?.instances !== undefined) proc.instances = own.instances;
    if (own?.maxMemory !== undefined) proc.maxMemory = own.maxMemory;
  }
  if (overrides.watch) merged.watch = structuredClone(overrides.watch) as WatchSpec;
  if (overrides.smoke) merged.smoke = structuredClone(overrides.smoke) as SmokeCheck[];
  return merged;
}

/** Pure: the override field a problem of the merged spec comes from, if any ("processes/web/instances"). */
export function overrideFieldOf(problemField: string, overrides: SpecOverrides): string | null {
  const parts = problemField.split('/');
  if (parts[0] === 'routes' && parts[2] === 'serverNames') {
    if (overrides.routes?.[parts[1]!]) return `routes/${parts[1]}/serverNames`;
    if (overrides.serverNames) return 'serverNames';
  }
  if (parts[0] === 'processes' && parts[1] && overrides.processes?.[parts[1]]) {
    const own = overrides.processes[parts[1]]!;
    if (parts[2] === 'instances' && own.instances !== undefined) return `processes/${parts[1]}/instances`;
    if (parts[2] === 'maxMemory' && own.maxMemory !== undefined) return `processes/${parts[1]}/maxMemory`;
    if (parts[2] === 'env' && parts[3] && own.env?.[parts[3]] !== undefined) return `processes/${parts[1]}/env/${parts[3]}`;
  }
  if (parts[0] === 'processes' && parts[2] === 'env' && parts[3] && overrides.env?.[parts[3]] !== undefined) return `env/${parts[3]}`;
  if ((parts[0] === 'watch' && overrides.watch) || (parts[0] === 'smoke' && overrides.smoke)) return problemField;
  return null;
}

export interface OverrideProblem { field: string; message: string; fromOverrides: boolean }

/**
 * Pure: merges and checks. Problems carry the override field they come from (fromOverrides), or
 * the merged spec's field; a route index or process name the spec does not have is a problem.
 */
export function mergeSpecOverrides(spec: AppSpec, overrides: SpecOverrides | null | undefined):
  { ok: true; spec: AppSpec } | { ok: false; problems: OverrideProblem[] } {
  if (isEmptyOverrides(overrides)) return { ok: true, spec };
  const o = overrides!;
  const problems: OverrideProblem[] = [];
  for (const index of Object.keys(o.routes ?? {})) {
    if (Number(index) >= spec.routes.length) problems.push({ field: `routes/${index}`, message: `the spec has ${spec.routes.length} route(s) (indexes from 0)`, fromOverrides: true });
  }
  for (const name of Object.keys(o.processes ?? {})) {
    if (!spec.processes[name]) problems.push({ field: `processes/${name}`, message: `names no process (the spec has ${Object.keys(spec.processes).join(', ')})`, fromOverrides: true });
  }
  const checked = checkAppSpec(applySpecOverrides(spec, o));
  if (!checked.ok) {
    for (const p of checked.problems) {
      const from = overrideFieldOf(p.field, o);
      problems.push(from ? { field: from, message: p.message, fromOverrides: true } : { field: p.field, message: p.message, fromOverrides: false });
    }
  }
  return problems.length > 0 || !checked.ok ? { ok: false, problems } : { ok: true, spec: checked.spec };
}

/** Pure: problem lines naming where to fix each: the environment's overrides, or the spec they were merged into. */
export function overrideProblemLines(problems: OverrideProblem[], overridesSource: string, specSource: string): string[] {
  return problems.map((p) => (p.fromOverrides
    ? `${overridesSource}.${p.field.split('/').join('.')}: ${p.message}`
    : `${specSource} (with ${overridesSource}): ${p.field}: ${p.message}`));
}

/** Pure: the header value for an upload (base64url JSON); null when there is nothing to send. */
export function encodeSpecOverrides(overrides: SpecOverrides | null): string | null {
  if (isEmptyOverrides(overrides)) return null;
  return Buffer.from(JSON.stringify(overrides), 'utf8').toString('base64url');
}

/** Pure: the overrides of an upload header; throws a message on a bad header. */
export function decodeSpecOverrides(header: string): SpecOverrides {
  if (header.length > Math.ceil((MAX_SPEC_OVERRIDES_BYTES * 4) / 3) + 4 || !/^[A-Za-z0-9_-]*$/.test(header)) {
    throw new Error(`must be base64url of at most ${MAX_SPEC_OVERRIDES_BYTES} bytes of JSON`);
  }
  const text = Buffer.from(header, 'base64url').toString('utf8');
  if (Buffer.byteLength(text) > MAX_SPEC_OVERRIDES_BYTES) throw new Error(`is over ${MAX_SPEC_OVERRIDES_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error('is not base64url of JSON');
  }
  const checked = checkSpecOverrides(raw);
  if (!checked.ok) throw new Error(checked.problems.map((p) => `${p.field}: ${p.message}`).join('; '));
  return checked.overrides;
}
