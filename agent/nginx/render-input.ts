import { isIPv4, isIPv6 } from 'node:net';
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, SERVER_NAME_PATTERN, SLOTS, type Slot } from '../../contract/names.js';
import { NGINX_SIZE_PATTERN, PROCESS_NAME_PATTERN, ROUTE_PATH_PATTERN } from '../../contract/spec.js';
import { compileChecker } from '../../lib/validate.js';
import { SWITCH_DIR_PATTERN } from './settings.js';
import { TLS_PATH_PATTERN } from '../tls/config.js';

/** One route of a slot's release: requests for these names on this port under `path` go to `process`. */
export interface RouteInput {
  listenPort: number;
  serverNames: string[];
  /** URL prefix with a leading slash; the longest matching prefix wins, "/" catches everything else. */
  path: string;
  process: string;
  /** nginx size: bytes, or a number with k/m/g. Default "1m" (nginx's own default). */
  clientMaxBodySize?: string;
  /** nginx's proxy_read_timeout for this route. Default 60 (nginx's own default). */
  readTimeoutSeconds?: number;
  /** Pass WebSocket upgrades through (Upgrade/Connection mapped, not blanked). */
  websocket: boolean;
}

/** One slot as nginx knows it: the release it runs (null before its first deploy), its processes' ports, its routes. */
export interface SlotInput {
  releaseId: string | null;
  /** The port of each listening process of the slot, by process name. */
  ports: Record<string, number>;
  routes: RouteInput[];
}

/**
 * HTTPS for the server blocks on `httpPort` (agent/tls): each gets a twin on `httpsPort` with the
 * same routes. Without a certificate yet (ACME before its first issuance) only the challenge
 * location is added to the plain blocks.
 */
export interface TlsInput {
  httpPort: number;
  httpsPort: number;
  /** The installed certificate chain and key (both or neither). */
  certificate: string | null;
  key: string | null;
  /** Plain HTTP on httpPort answers with a 301 to HTTPS (challenges excepted), once there is a certificate. */
  redirect: boolean;
  hsts: { maxAgeSeconds: number; includeSubDomains: boolean } | null;
  /** Served at /.well-known/acme-challenge/ on httpPort (ACME's HTTP-01); null without ACME. */
  challengeRoot: string | null;
}

/** Everything an app's nginx include is rendered from. */
export interface AppConfigInput {
  app: string;
  /**
   * The slot nginx serves if it cannot see the switch flags (see agent/nginx/slot-switch.ts); the
   * agent renders for the slot about to serve. Normally the flag decides, per request, with no
   * reload. A location's settings (body size, read timeout, WebSocket) come from this slot's
   * route there, else the other slot's: nginx cannot vary them per request.
   */
  slot: Slot;
  /**
   * The slot whose routes' settings (body size, read timeout, WebSocket) the include carries, when
   * it is not `slot`: the switch renders for the slot about to serve whatever fallback it compares.
   */
  settingsFrom?: Slot;
  /** Both slots: nginx can route to either, so moving traffic between them needs no reload. */
  slots: Record<Slot, SlotInput>;
  /** The app's switch directory; nginx checks `<switchDir>/live/<slot>` on every request. */
  switchDir: string;
  /** Bumped whenever the rendered config changes, so every applied config has a marker never seen before. */
  generation: number;
  /** The address every server block of the app listens on (with each route's listenPort). */
  listenHost: string;
  /** HTTPS for the app (absent or null: plain HTTP only). */
  tls?: TlsInput | null;
  /**
   * The file that sets the agent's probe secret (agent/nginx/probe-secret.ts): the include
   * includes it, and sends the release markers only to requests carrying the secret. The agent
   * always passes it; without it (tests of nginx alone) every answer carries the markers.
   */
  probeSecretFile?: string;
}

/** The name h-runtime's branch gives this input (DESIGN-12's AppConfigInput): the same type. */
export type RoutedAppConfigInput = AppConfigInput;

// Characters that could end a directive, open/close a block, start a comment, quote, interpolate a
// variable or split a token in nginx config. The schema's patterns exclude them too; this check
// is the backstop that names the field even if a pattern is loosened later.
const FORBIDDEN_CHARACTERS = /[;{}"'`#$\\\s\u0000-\u001f\u007f]/;
const MAX_SERVER_NAMES = 64;
const MAX_ROUTES = 256;
const MAX_PROCESSES = 32;
const PROCESS_NAME = new RegExp(PROCESS_NAME_PATTERN);

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const routeInput = {
  type: 'object',
  additionalProperties: false,
  required: ['listenPort', 'serverNames', 'path', 'process', 'websocket'],
  properties: {
    listenPort: port,
    serverNames: { type: 'array', minItems: 1, maxItems: MAX_SERVER_NAMES, items: { type: 'string', pattern: SERVER_NAME_PATTERN } },
    // The leading slash has its own rule (inputRuleProblems), with a plainer message.
    path: { type: 'string', minLength: 1, maxLength: 1024, pattern: ROUTE_PATH_PATTERN },
    process: { type: 'string', pattern: PROCESS_NAME_PATTERN },
    clientMaxBodySize: { type: 'string', pattern: NGINX_SIZE_PATTERN },
    readTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
    websocket: { type: 'boolean' },
  },
} as const;
const slotInput = {
  type: 'object',
  additionalProperties: false,
  required: ['releaseId', 'ports', 'routes'],
  properties: {
    releaseId: { type: 'string', nullable: true, pattern: RELEASE_ID_PATTERN },
    // Keyed by process name; the names (part of upstream names) are checked in slotRuleProblems.
    ports: { type: 'object', maxProperties: MAX_PROCESSES, additionalProperties: port },
    routes: { type: 'array', maxItems: MAX_ROUTES, items: routeInput },
  },
} as const;

const tlsPath = { type: 'string', nullable: true, pattern: TLS_PATH_PATTERN } as const;
const tlsInput = {
  type: 'object',
  nullable: true,
  additionalProperties: false,
  required: ['httpPort', 'httpsPort', 'certificate', 'key', 'redirect', 'hsts', 'challengeRoot'],
  properties: {
    httpPort: port,
    httpsPort: port,
    certificate: tlsPath,
    key: tlsPath,
    redirect: { type: 'boolean' },
    hsts: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      required: ['maxAgeSeconds', 'includeSubDomains'],
      properties: { maxAgeSeconds: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 }, includeSubDomains: { type: 'boolean' } },
    },
    challengeRoot: tlsPath,
  },
} as const;

/** Every value that ends up in nginx config; what a schema cannot say is in inputRuleProblems. */
const inputSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'slot', 'slots', 'switchDir', 'generation', 'listenHost'],
  properties: {
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    slot: { enum: SLOTS },
    settingsFrom: { enum: SLOTS },
    slots: { type: 'object', additionalProperties: false, required: SLOTS, properties: { blue: slotInput, green: slotInput } },
    switchDir: { type: 'string', pattern: SWITCH_DIR_PATTERN },
    generation: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    listenHost: { type: 'string' },
    tls: tlsInput,
    probeSecretFile: { type: 'string', pattern: SWITCH_DIR_PATTERN },
  },
} as const;

const checkInput = compileChecker<AppConfigInput>(inputSchema);

type Path = (string | number)[];
/** `got` overrides the value shown when the field's value is not what is wrong (a bad key). */
interface Problem { path: Path; message: string; got?: string }

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The value at `path` inside `input`, or undefined where there is none. */
function valueAt(input: unknown, path: Path): unknown {
  let value = input;
  for (const segment of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return value;
}

/** A field as the messages name it: "slots.blue.ports.web", "slots.green.routes[0].serverNames[1]". */
function fieldName(path: Path): string {
  return path.map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : i === 0 ? segment : `.${segment}`)).join('') || '(input)';
}

/** Schema paths come as strings; an index into an array becomes a number, so it is shown as one. */
function typedPath(input: unknown, path: string[]): Path {
  return path.map((segment, i) => (Array.isArray(valueAt(input, path.slice(0, i))) ? Number(segment) : segment));
}

/**
 * Collects every string inside `value` with the path it sits at, for the forbidden-character
 * check; object keys too (process names in `ports` become part of upstream names).
 */
function* stringsIn(value: unknown, at: Path): Generator<[Path, string, 'key' | 'value']> {
  if (typeof value === 'string') yield [at, value, 'value'];
  else if (Array.isArray(value)) for (const [i, item] of value.entries()) yield* stringsIn(item, [...at, i]);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (FORBIDDEN_CHARACTERS.test(key)) yield [[...at, key], key, 'key'];
      else yield* stringsIn(item, [...at, key]);
    }
  }
}

/** nginx wants IPv6 listen addresses in brackets; "*" means every address. */
function isListenHost(host: string): boolean {
  if (host === '*' || isIPv4(host)) return true;
  return isIPv6(host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The rules of one slot: routed processes have ports, no route repeated, no name twice in a route. */
function slotRuleProblems(slot: Slot, value: unknown): Problem[] {
  if (!isObject(value)) return [];
  const problems: Problem[] = [];
  const ports = isObject(value.ports) ? value.ports : {};
  const routes = Array.isArray(value.routes) ? value.routes : [];
  for (const name of Object.keys(ports)) {
    // They end up in upstream names, slipway_<app>_<slot>_<process>: unique per app, no "_" inside.
    if (!PROCESS_NAME.test(name) && !FORBIDDEN_CHARACTERS.test(name)) {
      problems.push({ path: ['slots', slot, 'ports', name], message: `is not a process name (must match ${PROCESS_NAME_PATTERN})`, got: name });
    }
  }
  const seen = new Map<string, number>();
  for (const [i, route] of routes.entries()) {
    if (!isObject(route)) continue;
    const at = (...rest: Path): Path => ['slots', slot, 'routes', i, ...rest];
    if (typeof route.path === 'string' && !route.path.startsWith('/')) problems.push({ path: at('path'), message: 'must start with "/"' });
    if (typeof route.process === 'string' && !Object.hasOwn(ports, route.process)) {
      const listed = Object.keys(ports);
      problems.push({ path: at('process'), message: `has no port in slot ${slot} (its ports: ${listed.length ? listed.join(', ') : 'none'})` });
    }
    if (!Array.isArray(route.serverNames)) continue;
    // nginx compares names case-insensitively; a duplicate is a copy-paste mistake worth reporting.
    const names = new Set<string>();
    for (const [j, name] of route.serverNames.entries()) {
      if (typeof name !== 'string') continue;
      const lower = name.toLowerCase();
      if (names.has(lower)) problems.push({ path: at('serverNames', j), message: 'is listed twice' });
      names.add(lower);
      const key = `${String(route.listenPort)} ${lower} ${String(route.path)}`;
      const earlier = seen.get(key);
      if (earlier !== undefined && earlier !== i) {
        problems.push({ path: at(), message: `routes ${name}:${String(route.listenPort)}${String(route.path)} again (routes[${earlier}] has it)` });
      }
      seen.set(key, i);
    }
  }
  return problems;
}

/** What the schema cannot say: relations between fields, address syntax, duplicates, the character backstop. */
function inputRuleProblems(input: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  for (const [path, text, kind] of stringsIn(input, [])) {
    if (FORBIDDEN_CHARACTERS.test(text)) {
      problems.push({
        path,
        message: `${kind === 'key' ? 'is a name with' : 'contains'} a character not allowed in nginx config (whitespace, quotes, ; { } # $ \\ or a control character)`,
        ...(kind === 'key' ? { got: text } : {}),
      });
    }
  }
  const slots = isObject(input.slots) ? input.slots : {};
  // Each (slot, process) is its own upstream: one port behind two of them would mix the slots.
  const owners = new Map<number, string>();
  for (const slot of SLOTS) {
    const ports = isObject(slots[slot]) && isObject(slots[slot].ports) ? slots[slot].ports : {};
    for (const [process, value] of Object.entries(ports)) {
      if (typeof value !== 'number') continue;
      const owner = owners.get(value);
      if (owner !== undefined) problems.push({ path: ['slots', slot, 'ports', process], message: `is also the port of ${owner}` });
      else owners.set(value, `slots.${slot}.ports.${process}`);
    }
    problems.push(...slotRuleProblems(slot, slots[slot]));
  }
  if (isObject(input.tls)) {
    const tls = input.tls;
    if ((tls.certificate === null) !== (tls.key === null)) problems.push({ path: ['tls'], message: 'needs both certificate and key, or neither' });
    if (tls.httpPort === tls.httpsPort) problems.push({ path: ['tls', 'httpsPort'], message: 'is also the HTTP port' });
  }
  if (typeof input.listenHost === 'string' && !isListenHost(input.listenHost)) {
    problems.push({ path: ['listenHost'], message: 'must be an IPv4 address, an IPv6 address or "*"' });
  }
  return problems;
}

function comparePaths(a: Path, b: Path): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const [x, y] = [a[i]!, b[i]!];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * Every bad field once, in field order. The rules' plainer messages ("must start with "/"", the
 * forbidden character) win over the schema's pattern message for the same field.
 */
function inputProblems(input: unknown): Problem[] {
  if (!isObject(input)) return [{ path: [], message: 'must be an object' }];
  const checked = checkInput(input);
  const fromSchema = checked.ok ? [] : checked.problems.map(({ path, message }) => ({ path: typedPath(input, path), message }));
  const byField = new Map<string, Problem>();
  for (const problem of [...inputRuleProblems(input), ...fromSchema]) {
    const field = fieldName(problem.path);
    if (!byField.has(field)) byField.set(field, problem);
  }
  return [...byField.values()].sort((a, b) => comparePaths(a.path, b.path));
}

function problemLine(input: unknown, problem: Problem): string {
  const { path, message } = problem;
  const got = problem.got ?? (path.length > 0 ? valueAt(input, path) : undefined);
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
