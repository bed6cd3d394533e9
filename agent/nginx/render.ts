import { readdirSync, statSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import path from 'node:path';
import nunjucks from 'nunjucks';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { APP_NAME_PATTERN, NO_RELEASE, RELEASE_ID_PATTERN, SERVER_NAME_PATTERN, SLOTS, isAppName, isSlot, type Slot } from '../../contract/names.js';

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

export interface RenderOptions {
  templateDir: string;
  template?: string;
}

export const DEFAULT_TEMPLATE = 'app.conf.njk';
export const TEMPLATE_NAME_PATTERN = '^[A-Za-z0-9_.-]+\\.njk$';

const INPUT_FIELDS = new Set([
  'app', 'slot', 'slots', 'switchDir', 'generation', 'listen', 'serverNames',
  'clientMaxBodySize', 'proxyReadTimeoutSeconds',
]);
// Absolute, plain characters only, no "." or ".." segments: the path is written into an `if (-f …)`.
const SWITCH_DIR_PATTERN = /^(\/(?!\.{1,2}(\/|$))[A-Za-z0-9._-]+)+$/;
// Characters that could end a directive, open/close a block, start a comment, quote, interpolate a
// variable or split a token in nginx config. The per-field patterns exclude them too; this check
// is the backstop that names the field even if a pattern is loosened later.
const FORBIDDEN_CHARACTERS = /[;{}"'`#$\\\s\u0000-\u001f\u007f]/;
const SIZE_PATTERN = /^[0-9]{1,10}[kKmMgG]?$/;
const MAX_SERVER_NAMES = 64;

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
}

/** Collects every string inside `value` with the path it sits at, for the forbidden-character check. */
function* stringsIn(value: unknown, at: string): Generator<[string, string]> {
  if (typeof value === 'string') yield [at, value];
  else if (Array.isArray(value)) for (const [i, item] of value.entries()) yield* stringsIn(item, `${at}[${i}]`);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) yield* stringsIn(item, `${at}.${key}`);
  }
}

/** nginx wants IPv6 listen addresses in brackets; "*" means every address. */
function listenHostProblem(host: unknown): string | null {
  if (typeof host !== 'string') return 'must be a string';
  if (host === '*' || isIPv4(host)) return null;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return isIPv6(bare) ? null : 'must be an IPv4 address, an IPv6 address or "*"';
}

function formatListen(host: string, port: number): string {
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]:${port}`;
  return `${host}:${port}`;
}

/**
 * Pure check of every value that ends up in nginx config. Returns one "field: problem" line per
 * problem (empty when the input is safe to render).
 */
export function nginxInputProblems(input: unknown): string[] {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return ['(input): must be an object'];
  const value = input as Record<string, unknown>;
  const problems: string[] = [];
  const add = (field: string, problem: string, got: unknown) => problems.push(`${field}: ${problem} (got ${show(got)})`);

  for (const key of Object.keys(value)) {
    if (!INPUT_FIELDS.has(key)) add(key, 'is not a known field', value[key]);
  }
  for (const [field, text] of stringsIn(value, '')) {
    if (FORBIDDEN_CHARACTERS.test(text)) {
      add(field.replace(/^\./, ''), 'contains a character not allowed in nginx config (whitespace, quotes, ; { } # $ \\ or a control character)', text);
    }
  }
  const flagged = new Set(problems.map((p) => p.split(':')[0]));
  const check = (field: string, ok: boolean, problem: string, got: unknown) => {
    if (!ok && !flagged.has(field)) add(field, problem, got);
  };

  check('app', typeof value.app === 'string' && new RegExp(APP_NAME_PATTERN).test(value.app),
    `must match ${APP_NAME_PATTERN}`, value.app);
  check('slot', isSlot(value.slot), 'must be "blue" or "green"', value.slot);
  const slots = value.slots as Record<string, unknown> | undefined;
  if (typeof slots !== 'object' || slots === null || Array.isArray(slots)) {
    add('slots', 'must be an object {blue: {port, releaseId}, green: {port, releaseId}}', slots);
  } else {
    for (const key of Object.keys(slots)) {
      if (!isSlot(key)) add(`slots.${key}`, 'is not a slot (blue or green)', slots[key]);
    }
    for (const slot of SLOTS) {
      const entry = slots[slot] as Record<string, unknown> | undefined;
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        add(`slots.${slot}`, 'must be an object {port, releaseId}', entry);
        continue;
      }
      for (const key of Object.keys(entry)) {
        if (key !== 'port' && key !== 'releaseId') add(`slots.${slot}.${key}`, 'is not a known field', entry[key]);
      }
      check(`slots.${slot}.port`, isPort(entry.port), 'must be an integer from 1 to 65535', entry.port);
      check(`slots.${slot}.releaseId`, entry.releaseId === null || (typeof entry.releaseId === 'string' && new RegExp(RELEASE_ID_PATTERN).test(entry.releaseId)),
        `must be null or match ${RELEASE_ID_PATTERN}`, entry.releaseId);
    }
    const ports = SLOTS.map((slot) => (slots[slot] as { port?: unknown } | undefined)?.port);
    if (isPort(ports[0]) && ports[0] === ports[1]) add('slots', 'blue and green must use different ports', ports[0]);
  }
  check('switchDir', typeof value.switchDir === 'string' && SWITCH_DIR_PATTERN.test(value.switchDir),
    'must be an absolute path of letters, digits, ".", "_", "-" and "/" (no "." or ".." segments)', value.switchDir);
  check('generation', Number.isSafeInteger(value.generation) && (value.generation as number) >= 1,
    'must be a positive integer', value.generation);

  const listen = value.listen as Record<string, unknown> | undefined;
  if (typeof listen !== 'object' || listen === null || Array.isArray(listen)) {
    add('listen', 'must be an object {host, port}', listen);
  } else {
    for (const key of Object.keys(listen)) {
      if (key !== 'host' && key !== 'port') add(`listen.${key}`, 'is not a known field', listen[key]);
    }
    const hostProblem = listenHostProblem(listen.host);
    if (hostProblem) check('listen.host', false, hostProblem, listen.host);
    check('listen.port', isPort(listen.port), 'must be an integer from 1 to 65535', listen.port);
  }

  const names = value.serverNames;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_SERVER_NAMES) {
    add('serverNames', `must be a list of 1 to ${MAX_SERVER_NAMES} names`, names);
  } else {
    const pattern = new RegExp(SERVER_NAME_PATTERN);
    const seen = new Set<string>();
    for (const [i, name] of names.entries()) {
      check(`serverNames[${i}]`, typeof name === 'string' && pattern.test(name), `must match ${SERVER_NAME_PATTERN}`, name);
      if (typeof name === 'string') {
        // nginx compares names case-insensitively; a duplicate is a copy-paste mistake worth reporting.
        if (seen.has(name.toLowerCase())) add(`serverNames[${i}]`, 'is listed twice', name);
        seen.add(name.toLowerCase());
      }
    }
  }

  const size = value.clientMaxBodySize;
  if (size !== undefined) {
    const ok = typeof size === 'number'
      ? Number.isSafeInteger(size) && size >= 0
      : typeof size === 'string' && SIZE_PATTERN.test(size);
    check('clientMaxBodySize', ok, 'must be a byte count, optionally with k, m or g (e.g. "10m")', size);
  }
  const timeout = value.proxyReadTimeoutSeconds;
  if (timeout !== undefined) {
    check('proxyReadTimeoutSeconds', Number.isInteger(timeout) && (timeout as number) >= 1 && (timeout as number) <= 86_400,
      'must be an integer from 1 to 86400', timeout);
  }
  return problems;
}

const environments = new Map<string, { signature: string; env: nunjucks.Environment }>();

/** name:mtime:size of every file in the template dir: any edit (an included file too) changes it. */
function templateDirSignature(templateDir: string): string {
  try {
    return readdirSync(templateDir).sort().map((name) => {
      const st = statSync(path.join(templateDir, name));
      return `${name}:${st.mtimeMs}:${st.size}`;
    }).join('|');
  } catch {
    return 'unreadable';
  }
}

/**
 * One nunjucks environment per template dir, kept while no file in it changes: compiling the
 * template on every render cost 2–10 ms of each switch, and a swap-back is latency-critical.
 */
function environmentFor(templateDir: string): nunjucks.Environment {
  const signature = templateDirSignature(templateDir);
  const cached = environments.get(templateDir);
  if (cached && cached.signature === signature) return cached.env;
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(templateDir, { noCache: false, watch: false }), {
    autoescape: false,
    throwOnUndefined: true,
    trimBlocks: true,
    lstripBlocks: true,
  });
  environments.set(templateDir, { signature, env });
  return env;
}

/**
 * Renders an app's nginx include (a file included from nginx's http{} block). Pure apart from
 * reading the template: every value is validated first, so nothing from the outside can inject a
 * directive, and the template may only use variables this function provides.
 */
export function renderAppConfig(input: AppConfigInput, { templateDir, template = DEFAULT_TEMPLATE }: RenderOptions): string {
  const problems = nginxInputProblems(input);
  if (problems.length > 0) {
    const fields = [...new Set(problems.map((p) => p.split(':')[0]))];
    throw new SlipwayError('invalid_nginx_value',
      `refusing to render nginx config${isAppName(input?.app) ? ` for app ${input.app}` : ''}: invalid ${fields.join(', ')}`,
      {
        status: 400,
        details: problems,
        hint: 'fix the listed values in the agent config (apps/<app>/public) or the request; they are written into nginx config verbatim, so only plain names, addresses and numbers are accepted',
      });
  }
  if (!new RegExp(TEMPLATE_NAME_PATTERN).test(template)) {
    throw new SlipwayError('nginx_template_error', `nginx template name ${show(template)} is not allowed`, {
      status: 500,
      hint: `use a file name matching ${TEMPLATE_NAME_PATTERN} inside ${templateDir}`,
    });
  }

  const templatePath = path.join(templateDir, template);
  const env = environmentFor(templateDir);
  const slotContext = (slot: Slot) => ({ port: input.slots[slot].port, releaseId: input.slots[slot].releaseId ?? NO_RELEASE });
  const context = {
    app: input.app,
    slot: input.slot,
    slots: { blue: slotContext('blue'), green: slotContext('green') },
    switchDir: input.switchDir,
    // The default slot's upstream, for templates that route without the switch flags.
    upstreamPort: input.slots[input.slot].port,
    releaseId: input.slots[input.slot].releaseId ?? NO_RELEASE,
    generation: input.generation,
    listen: { host: input.listen.host, port: input.listen.port },
    listenAddress: formatListen(input.listen.host, input.listen.port),
    serverNames: [...input.serverNames],
    clientMaxBodySize: input.clientMaxBodySize ?? '1m',
    proxyReadTimeoutSeconds: input.proxyReadTimeoutSeconds ?? 60,
  };
  try {
    return env.render(template, context);
  } catch (error) {
    const message = errorMessage(error).replace(/\s+/g, ' ').trim();
    const missing = /template not found/i.test(message);
    throw new SlipwayError('nginx_template_error', `nginx template ${templatePath} failed to render: ${message}`, {
      status: 500,
      cause: error,
      hint: missing
        ? `create ${templatePath} or point nginx.templateDir / apps/<app>/nginxTemplate at an existing template`
        : `the template may only use these variables: ${Object.keys(context).join(', ')}`,
    });
  }
}
