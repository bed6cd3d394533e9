import { createHash } from 'node:crypto';
import { SERVER_NAME_PATTERN } from './names.js';
import { compileChecker, type SchemaProblem } from '../lib/validate.js';

// The app spec: what an app is (its processes, routes, health, build, release phase, smoke checks,
// watch window, required env). It lives in the app's repository as `deploy.spec.json`, is
// validated by the controller before packing, travels in the release manifest, and is validated
// again by the agent against the host's policy (agent/spec/policy.ts). Activating a release
// activates its spec.

export const SPEC_FILE = 'deploy.spec.json';

/** Process names end up in PM2 names, env variable names and nginx upstream names. */
export const PROCESS_NAME_PATTERN = '^[a-z][a-z0-9]{0,19}$';
/** A path inside the release: relative, no "..", no NUL. */
export const RELATIVE_PATH_PATTERN = '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$';
/** A URL path prefix nginx routes on: leading slash, printable ASCII without nginx's special characters. */
export const ROUTE_PATH_PATTERN = '^/[A-Za-z0-9._~%!*+,=:@/-]*$';
/** A request path for a probe: leading slash, printable ASCII, query allowed. */
export const PROBE_PATH_PATTERN = '^/[\\x21-\\x7e]*$';
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
export const NGINX_SIZE_PATTERN = '^[0-9]{1,10}[kKmMgG]?$';
export const MEMORY_PATTERN = '^[0-9]{1,10}[KMG]?$';

export interface HttpHealthSpec {
  path: string;
  expectStatus: number;
  bodyContains?: string;
  timeoutMs: number;
  intervalMs: number;
  retries: number;
}

/** A process without a port is healthy when PM2 keeps it online, without a restart, for stableMs. */
export interface WorkerHealthSpec { stableMs: number }

export interface ProcessSpec {
  /** argv of a non-Node command, run by PM2 without a Node interpreter (argv[0]: absolute path or a name on PATH). */
  command?: string[];
  /** A Node script relative to cwd; PM2 runs it with Node (cluster mode when instances > 1). */
  script?: string;
  args: string[];
  nodeArgs: string[];
  /** Working directory, relative to the release root. */
  cwd: string;
  instances: number;
  /** Whether it listens on $PORT; a routed process must. Default: true when a route targets it. */
  port: boolean;
  /** Port-less only: at most one copy runs, so the old slot's copy stops before the new one starts. */
  singleton: boolean;
  health: HttpHealthSpec | WorkerHealthSpec;
  env: Record<string, string>;
  killTimeoutMs: number;
  /** PM2 max_memory_restart, e.g. "300M". */
  maxMemory?: string;
}

export interface RouteSpec {
  serverNames: string[];
  /** URL prefix, leading slash; "/" is everything. */
  path: string;
  process: string;
  /** A listen port the host allows this app (agent.json apps.<app>.listenPorts); default the first. */
  listenPort?: number;
  clientMaxBodySize?: string;
  readTimeoutSeconds?: number;
  /** Pass WebSocket upgrades through (Upgrade/Connection mapped). */
  websocket: boolean;
}

export type InstallTool = 'auto' | 'npm' | 'pnpm' | 'yarn' | 'none';

export interface BuildDirSpec {
  /** Directory relative to the repository root with its own lockfile/commands. */
  path: string;
  install: InstallTool;
  /** argv lists run in order in that directory, e.g. [["npm","run","build"]]. */
  commands: string[][];
  /** Drop dev dependencies after the build (npm prune --omit=dev or the tool's equivalent). */
  prune: boolean;
}

export interface BuildSpec {
  on: 'controller' | 'host';
  dirs: BuildDirSpec[];
  timeoutMs: number;
}

export interface SmokeCheck {
  name: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS';
  path: string;
  /** Host header; default the first server name of the first route. */
  host?: string;
  expectStatus: number;
  bodyContains?: string;
  json?: { pointer: string; equals: unknown };
  timeoutMs: number;
}

export interface WatchSpec {
  windowMs: number;
  intervalMs: number;
  failuresToRollback: number;
  keepPreviousWarm: boolean;
  activationWindowMs?: number;
}

export interface AppSpec {
  processes: Record<string, ProcessSpec>;
  routes: RouteSpec[];
  build?: BuildSpec;
  /** Release phase: argv lists run once per rollout before any slot of the new release starts. */
  release: string[][];
  smoke: SmokeCheck[];
  watch: WatchSpec;
  requiredEnv: string[];
}

const noNul = '^[^\\u0000]*$';
const argv = { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 4096, pattern: noNul } } as const;
const argList = { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 4096, pattern: noNul }, default: [] } as const;
const relativePath = { type: 'string', minLength: 1, maxLength: 1024, pattern: RELATIVE_PATH_PATTERN } as const;

const httpHealthSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    path: { type: 'string', maxLength: 2048, pattern: PROBE_PATH_PATTERN, default: '/health' },
    expectStatus: { type: 'integer', minimum: 100, maximum: 599, default: 200 },
    bodyContains: { type: 'string', minLength: 1, maxLength: 1024, pattern: noNul },
    timeoutMs: { type: 'integer', minimum: 50, maximum: 600_000, default: 2_000 },
    intervalMs: { type: 'integer', minimum: 10, maximum: 60_000, default: 250 },
    retries: { type: 'integer', minimum: 1, maximum: 10_000, default: 120 },
    stableMs: { type: 'integer', minimum: 0, maximum: 600_000 },
  },
} as const;

export const processSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    command: argv,
    script: relativePath,
    args: argList,
    nodeArgs: argList,
    cwd: { ...relativePath, default: '.' },
    instances: { type: 'integer', minimum: 1, maximum: 64, default: 1 },
    port: { type: 'boolean' },
    singleton: { type: 'boolean', default: false },
    health: { ...httpHealthSchema, default: {} },
    env: {
      type: 'object',
      maxProperties: 256,
      propertyNames: { pattern: ENV_NAME_PATTERN, maxLength: 128 },
      additionalProperties: { type: 'string', maxLength: 65_536, pattern: noNul },
      default: {},
    },
    killTimeoutMs: { type: 'integer', minimum: 100, maximum: 600_000, default: 5_000 },
    maxMemory: { type: 'string', pattern: MEMORY_PATTERN },
  },
} as const;

const routeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['serverNames', 'process'],
  properties: {
    serverNames: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', pattern: SERVER_NAME_PATTERN } },
    path: { type: 'string', maxLength: 1024, pattern: ROUTE_PATH_PATTERN, default: '/' },
    process: { type: 'string', pattern: PROCESS_NAME_PATTERN },
    listenPort: { type: 'integer', minimum: 1, maximum: 65535 },
    clientMaxBodySize: { type: 'string', pattern: NGINX_SIZE_PATTERN },
    readTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
    websocket: { type: 'boolean', default: true },
  },
} as const;

const buildSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    on: { enum: ['controller', 'host'], default: 'controller' },
    dirs: {
      type: 'array',
      minItems: 1,
      maxItems: 32,
      default: [{}],
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          path: { type: 'string', minLength: 1, maxLength: 1024, pattern: `^\\.$|${RELATIVE_PATH_PATTERN}`, default: '.' },
          install: { enum: ['auto', 'npm', 'pnpm', 'yarn', 'none'], default: 'auto' },
          commands: { type: 'array', maxItems: 64, items: argv, default: [] },
          prune: { type: 'boolean', default: true },
        },
      },
    },
    timeoutMs: { type: 'integer', minimum: 1000, maximum: 7_200_000, default: 900_000 },
  },
} as const;

export const smokeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100, pattern: noNul },
    method: { enum: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'], default: 'GET' },
    path: { type: 'string', maxLength: 2048, pattern: PROBE_PATH_PATTERN },
    host: { type: 'string', pattern: SERVER_NAME_PATTERN },
    expectStatus: { type: 'integer', minimum: 100, maximum: 599, default: 200 },
    bodyContains: { type: 'string', minLength: 1, maxLength: 1024, pattern: noNul },
    json: {
      type: 'object',
      additionalProperties: false,
      required: ['pointer', 'equals'],
      properties: { pointer: { type: 'string', maxLength: 1024, pattern: '^(/[^\\u0000]*)?$' }, equals: {} },
    },
    timeoutMs: { type: 'integer', minimum: 50, maximum: 120_000, default: 5_000 },
  },
} as const;

export const watchSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    windowMs: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 60_000 },
    activationWindowMs: { type: 'integer', minimum: 0, maximum: 3_600_000 },
    intervalMs: { type: 'integer', minimum: 50, maximum: 60_000, default: 1_000 },
    failuresToRollback: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
    keepPreviousWarm: { type: 'boolean', default: false },
  },
} as const;

export const specSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['processes'],
  properties: {
    $schema: { type: 'string' },
    processes: {
      type: 'object',
      minProperties: 1,
      maxProperties: 32,
      propertyNames: { pattern: PROCESS_NAME_PATTERN },
      additionalProperties: processSchema,
    },
    routes: { type: 'array', maxItems: 256, items: routeSchema, default: [] },
    build: buildSchema,
    release: { type: 'array', maxItems: 32, items: argv, default: [] },
    smoke: { type: 'array', maxItems: 64, items: smokeSchema, default: [] },
    watch: watchSchema,
    requiredEnv: { type: 'array', maxItems: 256, items: { type: 'string', pattern: ENV_NAME_PATTERN }, default: [] },
  },
} as const;

const checkSpec = compileChecker<AppSpec>(specSchema);

/** A problem with its field path ("processes/web/health/path") and what is wrong. */
export interface SpecProblem { field: string; message: string }

const WORKER_HEALTH_DEFAULT_MS = 1_000;

/** Variables Slipway sets for each process; a spec may not set them itself. */
export const RESERVED_ENV = new Set(['PORT', 'SLIPWAY_APP', 'SLIPWAY_SLOT', 'SLIPWAY_RELEASE', 'SLIPWAY_PROCESS', 'NODE_APP_INSTANCE']);

/** The variable that gives a process's port to the other processes of its slot: PORT_WEB, PORT_API. */
export function portVariable(process: string): string {
  return `PORT_${process.toUpperCase()}`;
}

function field(...segments: (string | number)[]): string {
  return segments.join('/');
}

/** The rules a schema cannot say: references between fields, one of command/script, per-kind fields. */
function ruleProblems(spec: AppSpec, raw: Record<string, unknown>): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const routed = new Set(spec.routes.map((route) => route.process));
  const rawProcesses = (raw.processes ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, proc] of Object.entries(spec.processes)) {
    const at = (...rest: string[]) => field('processes', name, ...rest);
    const hasCommand = proc.command !== undefined;
    const hasScript = proc.script !== undefined;
    if (hasCommand === hasScript) problems.push({ field: at(), message: 'needs exactly one of "command" (argv) or "script" (a Node script)' });
    if (hasCommand && proc.nodeArgs.length > 0) problems.push({ field: at('nodeArgs'), message: 'only applies to a Node "script"' });
    if (hasCommand && proc.args.length > 0) problems.push({ field: at('args'), message: 'put the arguments in "command" itself' });
    const explicitPort = rawProcesses[name]?.port;
    proc.port = typeof explicitPort === 'boolean' ? explicitPort : routed.has(name);
    if (routed.has(name) && !proc.port) problems.push({ field: at('port'), message: 'is false, but a route sends traffic to this process' });
    if (proc.singleton && proc.port) problems.push({ field: at('singleton'), message: 'only a process without a port can be a singleton' });
    if (proc.singleton && proc.instances > 1) problems.push({ field: at('instances'), message: 'a singleton runs one instance' });
    if (proc.port && proc.instances > 1 && !hasScript) {
      problems.push({ field: at('instances'), message: 'several instances on one port need PM2 cluster mode, which only runs a Node "script"; for other servers use their own worker option (e.g. uvicorn --workers)' });
    }
    for (const key of Object.keys(proc.env)) {
      if (RESERVED_ENV.has(key) || key.startsWith('PORT_')) problems.push({ field: at('env', key), message: 'is set by Slipway for each process' });
    }
    const health = (rawProcesses[name]?.health ?? {}) as Record<string, unknown>;
    if (proc.port) {
      if (health.stableMs !== undefined) problems.push({ field: at('health', 'stableMs'), message: 'applies to a process without a port; a listening process is checked over HTTP' });
      delete (proc.health as Partial<WorkerHealthSpec>).stableMs;
    } else {
      for (const key of Object.keys(health)) {
        if (key !== 'stableMs') problems.push({ field: at('health', key), message: 'an HTTP check needs a port ("port": true)' });
      }
      proc.health = { stableMs: typeof health.stableMs === 'number' ? health.stableMs : WORKER_HEALTH_DEFAULT_MS };
    }
  }
  const seen = new Map<string, number>();
  for (const [i, route] of spec.routes.entries()) {
    if (!spec.processes[route.process]) {
      problems.push({ field: field('routes', i, 'process'), message: `names no process (the spec has ${Object.keys(spec.processes).join(', ')})` });
    }
    const lower = new Set<string>();
    for (const [j, name] of route.serverNames.entries()) {
      if (lower.has(name.toLowerCase())) problems.push({ field: field('routes', i, 'serverNames', j), message: 'is listed twice' });
      lower.add(name.toLowerCase());
      const key = `${route.listenPort ?? ''} ${name.toLowerCase()} ${route.path}`;
      const earlier = seen.get(key);
      if (earlier !== undefined && earlier !== i) {
        problems.push({ field: field('routes', i), message: `routes ${name}${route.path} again (routes/${earlier} has it)` });
      }
      seen.set(key, i);
    }
  }
  if (spec.smoke.length > 0 && spec.routes.length === 0) {
    problems.push({ field: 'smoke', message: 'smoke checks go through nginx, so the spec needs at least one route' });
  }
  for (const [i, check] of spec.smoke.entries()) {
    check.name ??= `${check.method} ${check.path}`;
    if (check.json && check.bodyContains) problems.push({ field: field('smoke', i), message: 'use either "bodyContains" or "json", not both' });
  }
  if (spec.build) {
    const paths = new Set<string>();
    for (const [i, dir] of spec.build.dirs.entries()) {
      if (paths.has(dir.path)) problems.push({ field: field('build', 'dirs', i, 'path'), message: 'is listed twice' });
      paths.add(dir.path);
    }
  }
  return problems;
}

function byField(a: SpecProblem, b: SpecProblem): number {
  return a.field < b.field ? -1 : a.field > b.field ? 1 : 0;
}

/**
 * Pure: validates a parsed spec and fills in defaults. Returns the normalised spec, or every
 * problem with its field path (nothing is fixed silently: unknown fields are problems).
 */
export function checkAppSpec(raw: unknown): { ok: true; spec: AppSpec } | { ok: false; problems: SpecProblem[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, problems: [{ field: '(root)', message: 'must be a JSON object' }] };
  const copy = structuredClone(raw) as Record<string, unknown>;
  const checked = checkSpec(copy);
  if (!checked.ok) {
    return { ok: false, problems: checked.problems.map((p: SchemaProblem) => ({ field: p.path.join('/') || '(root)', message: p.message })).sort(byField) };
  }
  const spec = checked.value;
  delete (spec as { $schema?: string }).$schema;
  const problems = ruleProblems(spec, raw as Record<string, unknown>);
  return problems.length ? { ok: false, problems: problems.sort(byField) } : { ok: true, spec };
}

/** "field: message" lines, for an error's details. */
export function specProblemLines(problems: SpecProblem[], source = SPEC_FILE): string[] {
  return problems.map(({ field: f, message }) => `${source}: ${f}: ${message}`);
}

/** JSON with object keys sorted, so equal specs give equal text (and digest). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** sha256 of the normalised spec's canonical JSON: equal specs, equal digests. */
export function specDigest(spec: AppSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}

/** Processes that listen on a port, in name order (the order ports are assigned in). */
export function listeningProcesses(spec: AppSpec): string[] {
  return Object.keys(spec.processes).filter((name) => spec.processes[name]!.port).sort();
}
