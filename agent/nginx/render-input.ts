import { isIPv4, isIPv6 } from 'node:net';
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, SERVER_NAME_PATTERN, SLOTS, type Slot } from '../../contract/names.js';
import { compileChecker } from '../../lib/validate.js';
import { SWITCH_DIR_PATTERN } from './settings.js';

/** One slot as nginx knows it: its port, and the release it runs (null before its first deploy). */
export interface SlotUpstream { port: number; releaseId: string | null }

/** Everything an app's nginx include is rendered from. */
export interface AppConfigInput {
  app: string;
  /**
   * The slot nginx serves if it cannot see the switch flags (see agent/nginx/slot-switch.ts): the
   * slot live when the config was rendered. Normally the flag decides, per request, with no reload.
   */
  slot: Slot;
  /** Both slots: nginx can route to either, so moving traffic between them needs no reload. */
  slots: Record<Slot, SlotUpstream>;
  /** The app's switch directory; nginx checks `<switchDir>/live/<slot>` on every request. */
  switchDir: string;
  /** Bumped whenever the rendered config changes, so every applied config has a marker never seen before. */
  generation: number;
  listen: { host: string; port: number };
  serverNames: string[];
  /** nginx size: bytes, or a number with k/m/g. Default "1m" (nginx's own default). */
  clientMaxBodySize?: string | number;
  /** Default 60 (nginx's own default). */
  proxyReadTimeoutSeconds?: number;
}

// Characters that could end a directive, open/close a block, start a comment, quote, interpolate a
// variable or split a token in nginx config. The schema's patterns exclude them too; this check
// is the backstop that names the field even if a pattern is loosened later.
const FORBIDDEN_CHARACTERS = /[;{}"'`#$\\\s\u0000-\u001f\u007f]/;
const SIZE_PATTERN = '^[0-9]{1,10}[kKmMgG]?$';
const MAX_SERVER_NAMES = 64;

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const slotUpstream = {
  type: 'object',
  additionalProperties: false,
  required: ['port', 'releaseId'],
  properties: { port, releaseId: { type: 'string', nullable: true, pattern: RELEASE_ID_PATTERN } },
} as const;

/** Every value that ends up in nginx config; what a schema cannot say is in inputRuleProblems. */
const inputSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'slot', 'slots', 'switchDir', 'generation', 'listen', 'serverNames'],
  properties: {
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    slot: { enum: SLOTS },
    slots: { type: 'object', additionalProperties: false, required: SLOTS, properties: { blue: slotUpstream, green: slotUpstream } },
    switchDir: { type: 'string', pattern: SWITCH_DIR_PATTERN },
    generation: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    listen: {
      type: 'object',
      additionalProperties: false,
      required: ['host', 'port'],
      properties: { host: { type: 'string' }, port },
    },
    serverNames: { type: 'array', minItems: 1, maxItems: MAX_SERVER_NAMES, items: { type: 'string', pattern: SERVER_NAME_PATTERN } },
    // nginx size: a byte count, or a string with an optional k/m/g unit.
    clientMaxBodySize: {
      if: { type: 'string' },
      then: { type: 'string', pattern: SIZE_PATTERN },
      else: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    },
    proxyReadTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
  },
} as const;

const checkInput = compileChecker<AppConfigInput>(inputSchema);

interface Problem { path: (string | number)[]; message: string }

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The value at `path` inside `input`, or undefined where there is none. */
function valueAt(input: unknown, path: (string | number)[]): unknown {
  let value = input;
  for (const segment of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return value;
}

/** A field as the messages name it: "slots.blue.port", "serverNames[0]". */
function fieldName(path: (string | number)[]): string {
  return path.map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : i === 0 ? segment : `.${segment}`)).join('') || '(input)';
}

/** Schema paths come as strings; an index into an array becomes a number, so it is shown as one. */
function typedPath(input: unknown, path: string[]): (string | number)[] {
  return path.map((segment, i) => (Array.isArray(valueAt(input, path.slice(0, i))) ? Number(segment) : segment));
}

/** Collects every string inside `value` with the path it sits at, for the forbidden-character check. */
function* stringsIn(value: unknown, at: (string | number)[]): Generator<[(string | number)[], string]> {
  if (typeof value === 'string') yield [at, value];
  else if (Array.isArray(value)) for (const [i, item] of value.entries()) yield* stringsIn(item, [...at, i]);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) yield* stringsIn(item, [...at, key]);
  }
}

/** nginx wants IPv6 listen addresses in brackets; "*" means every address. */
function isListenHost(host: string): boolean {
  if (host === '*' || isIPv4(host)) return true;
  return isIPv6(host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);
}

/** What the schema cannot say: relations between fields, address syntax, case-insensitive duplicates, the character backstop. */
function inputRuleProblems(input: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  for (const [path, text] of stringsIn(input, [])) {
    if (FORBIDDEN_CHARACTERS.test(text)) {
      problems.push({ path, message: 'contains a character not allowed in nginx config (whitespace, quotes, ; { } # $ \\ or a control character)' });
    }
  }
  const slots = input.slots as Partial<Record<Slot, { port?: unknown }>> | undefined;
  const [blue, green] = SLOTS.map((slot) => slots?.[slot]?.port);
  if (typeof blue === 'number' && blue === green) problems.push({ path: ['slots'], message: 'blue and green must use different ports' });
  const host = (input.listen as { host?: unknown } | undefined)?.host;
  if (typeof host === 'string' && !isListenHost(host)) {
    problems.push({ path: ['listen', 'host'], message: 'must be an IPv4 address, an IPv6 address or "*"' });
  }
  const names = input.serverNames;
  if (Array.isArray(names)) {
    // nginx compares names case-insensitively; a duplicate is a copy-paste mistake worth reporting.
    const seen = new Set<string>();
    for (const [i, name] of names.entries()) {
      if (typeof name !== 'string') continue;
      if (seen.has(name.toLowerCase())) problems.push({ path: ['serverNames', i], message: 'is listed twice' });
      seen.add(name.toLowerCase());
    }
  }
  return problems;
}

function comparePaths(a: (string | number)[], b: (string | number)[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const [x, y] = [a[i]!, b[i]!];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return a.length - b.length;
}

/** Every bad field once, in field order; a field the schema refuses is not reported again by the rules. */
function inputProblems(input: unknown): Problem[] {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return [{ path: [], message: 'must be an object' }];
  const checked = checkInput(input);
  const fromSchema = checked.ok ? [] : checked.problems.map(({ path, message }) => ({ path: typedPath(input, path), message }));
  const byField = new Map<string, Problem>();
  for (const problem of [...fromSchema, ...inputRuleProblems(input as Record<string, unknown>)]) {
    const field = fieldName(problem.path);
    if (!byField.has(field)) byField.set(field, problem);
  }
  return [...byField.values()].sort((a, b) => comparePaths(a.path, b.path));
}

function problemLine(input: unknown, { path, message }: Problem): string {
  const got = path.length > 0 ? valueAt(input, path) : undefined;
  return `${fieldName(path)}: ${message}${got === undefined ? '' : ` (got ${show(got)})`}`;
}

/**
 * Pure check of every value that ends up in nginx config: the schema above, then the rules it
 * cannot express. Returns one "field: problem (got value)" line per bad field (empty when the
 * input is safe to render).
 */
export function nginxInputProblems(input: unknown): string[] {
  return inputProblems(input).map((problem) => problemLine(input, problem));
}

/** The fields to refuse and a line per problem, or null when the input is safe to render. */
export function inputRefusal(input: unknown): { fields: string[]; details: string[] } | null {
  const problems = inputProblems(input);
  if (problems.length === 0) return null;
  return { fields: problems.map(({ path }) => fieldName(path)), details: problems.map((problem) => problemLine(input, problem)) };
}

// ---- The multi-route input of an app spec (DESIGN-12). The rollout produces it; until the
// template renders it directly, agent.ts maps it onto AppConfigInput above (first route only).

/** One route of a slot's spec: where nginx listens and which process it proxies to. */
export interface RouteInput {
  listenPort: number;
  serverNames: string[];
  path: string;
  process: string;
  clientMaxBodySize?: string;
  readTimeoutSeconds?: number;
  websocket: boolean;
}

/** One slot: the release it runs, the port of each listening process, and its spec's routes. */
export interface SlotInput { releaseId: string | null; ports: Record<string, number>; routes: RouteInput[] }

/** Everything an app's include is rendered from: both slots' layouts and routes. */
export interface RoutedAppConfigInput {
  app: string;
  /** The slot live at render time (the fallback when nginx cannot see the flags). */
  slot: Slot;
  slots: Record<Slot, SlotInput>;
  switchDir: string;
  generation: number;
  listenHost: string;
}
