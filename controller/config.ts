import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { APP_NAME_PATTERN } from '../contract/names.js';
import { SlipwayError } from '../contract/errors.js';
import { ENV_NAME_PATTERN } from '../contract/api.js';
import { RELAY_DEFAULT_PORT } from '../contract/relay.js';
import { compileValidator } from '../lib/validate.js';
import { specOverridesSchema, type SpecOverrides } from '../contract/spec-overrides.js';
import { resolveTarget, type Target } from './environments.js';
import { defaultHostName, fleetProblems } from './fleet/target.js';

export const DEFAULT_CONFIG_FILE = 'deploy.config.json';
export const DEFAULT_UPLOAD_STALL_TIMEOUT_MS = 30_000;

export interface HostConfig {
  /**
   * How commands, tables and the fleet record name this host. Filled in at load: the address, or
   * address:port when the port is not 22 (controller/fleet/target.ts defaultHostName).
   */
  name?: string;
  address: string;
  port: number;
  user: string;
  /** Private key file; without it the ssh-agent at SSH_AUTH_SOCK is used. */
  identityFile?: string;
  knownHostsFile: string;
  connectTimeoutMs: number;
  /** How often an idle link is probed, and how many unanswered probes declare it dead. */
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** An upload the agent accepts no bytes of for this long is abandoned. */
  uploadStallTimeoutMs: number;
  /**
   * The address the OTHER hosts of the environment reach this host at (a private IP): where its
   * agent listens, during a push only, for them to fetch the release from it (controller/fleet/relay.ts).
   */
  relay?: string;
}

export interface AgentEndpoint { port: number; tokenFile: string }

/** One resolved deploy target: an app on one host (controller/environments.ts adds what an environment says). */
export interface ControllerConfig {
  /** The app's name on the box. */
  app: string;
  host: HostConfig;
  agent: AgentEndpoint;
  /** Untracked build output (relative paths) added to the release next to the committed files. */
  include: string[];
}

export interface EnvironmentConfig {
  /** The app's name on the box (default: the top-level app). */
  app?: string;
  hosts?: HostConfig[];
  agent?: Partial<AgentEndpoint>;
  /** Overrides merged into each release's spec in this environment (contract/spec-overrides.ts). */
  spec?: SpecOverrides;
  requireApproval: boolean;
  promotion?: { from: string; maxAge: string };
  gitTag?: string;
  /** How a push rolls out over several hosts (controller/fleet/target.ts resolves it). */
  rollout?: RolloutSettings;
}

/** environments.<env>.rollout as written (defaults filled in by the schema). */
export interface RolloutSettings {
  /** Hosts switched per batch: a count, or a percentage of the fleet ("50%", rounded up). */
  batch: number | string;
  /** The short watch after each batch but the last ("30s", "2m", "500ms"). */
  bake: string;
  /** The watch after the last batch (default: the release's own full window). */
  window?: string;
  /** The host that alone runs the release phase and the pre-deploy backup (default: the first host). */
  primary?: string;
  /** How many hosts are connected to and uploaded to at once. */
  concurrency: number;
  /** The upload-once relay between hosts (used for hosts whose entries have `relay`). */
  relay?: { port: number };
}

/** deploy.config.json as written: one app (the project), one host or one per environment. */
export interface DeployConfig {
  app: string;
  host?: HostConfig;
  agent: AgentEndpoint;
  include: string[];
  defaultEnv?: string;
  environments?: Record<string, EnvironmentConfig>;
}


/** A host's name in a fleet: what --hosts takes (so no comma) and tables show. */
export const HOST_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9.:_-]{0,63}$';

const rolloutSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    batch: {
      anyOf: [{ type: 'integer', minimum: 1, maximum: 64 }, { type: 'string', pattern: '^(100|[1-9][0-9]?)%$' }],
      default: 1,
    },
    bake: { type: 'string', pattern: '^[0-9]{1,6}(ms|s|m)$', default: '30s' },
    window: { type: 'string', pattern: '^[0-9]{1,6}(ms|s|m)$' },
    primary: { type: 'string', pattern: HOST_NAME_PATTERN },
    concurrency: { type: 'integer', minimum: 1, maximum: 64, default: 4 },
    relay: {
      type: 'object', additionalProperties: false,
      properties: { port: { type: 'integer', minimum: 1, maximum: 65535, default: RELAY_DEFAULT_PORT } },
    },
  },
} as const;

const hostSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['address', 'user'],
  properties: {
    name: { type: 'string', pattern: HOST_NAME_PATTERN },
    address: { type: 'string', pattern: '^[A-Za-z0-9.:_-]{1,253}$' },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 22 },
    user: { type: 'string', pattern: '^[a-z_][a-z0-9_.-]{0,31}$' },
    identityFile: { type: 'string', minLength: 1 },
    knownHostsFile: { type: 'string', minLength: 1, default: '~/.ssh/known_hosts' },
    connectTimeoutMs: { type: 'integer', minimum: 1000, default: 15_000 },
    keepaliveIntervalMs: { type: 'integer', minimum: 1000, maximum: 300_000, default: 5_000 },
    keepaliveCountMax: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
    uploadStallTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: DEFAULT_UPLOAD_STALL_TIMEOUT_MS },
    relay: { type: 'string', pattern: '^[0-9A-Fa-f.:]{2,45}$' },
  },
} as const;

const agentProperties = {
  port: { type: 'integer', minimum: 1, maximum: 65535 },
  tokenFile: { type: 'string', pattern: '^/[^\\u0000]*$' },
} as const;

const environmentSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    hosts: { type: 'array', minItems: 1, maxItems: 64, items: hostSchema },
    agent: { type: 'object', additionalProperties: false, properties: agentProperties },
    spec: specOverridesSchema,
    requireApproval: { type: 'boolean', default: false },
    promotion: {
      type: 'object', additionalProperties: false, required: ['from'],
      properties: {
        from: { type: 'string', pattern: ENV_NAME_PATTERN },
        maxAge: { type: 'string', pattern: '^[0-9]{1,4}[hdw]$', default: '14d' },
      },
    },
    gitTag: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._/{}-]+$' },
    rollout: rolloutSchema,
  },
} as const;

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['app'],
  properties: {
    $schema: { type: 'string' },
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    host: hostSchema,
    agent: {
      type: 'object',
      additionalProperties: false,
      required: [],
      default: {},
      properties: {
        port: { ...agentProperties.port, default: 7070 },
        tokenFile: { ...agentProperties.tokenFile, default: '/etc/slipway/agent.token' },
      },
    },
    include: {
      type: 'array',
      default: [],
      items: { type: 'string', minLength: 1, pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$' },
    },
    defaultEnv: { type: 'string', pattern: ENV_NAME_PATTERN },
    environments: {
      type: 'object', minProperties: 1, maxProperties: 32,
      propertyNames: { pattern: ENV_NAME_PATTERN },
      additionalProperties: environmentSchema,
    },
  },
} as const;

const validate = compileValidator<DeployConfig>(schema);

function expandHome(file: string, baseDir: string): string {
  if (file === '~' || file.startsWith('~/')) return path.join(os.homedir(), file.slice(1));
  return path.resolve(baseDir, file);
}

function normalizeHost(host: HostConfig, baseDir: string): void {
  host.name ??= defaultHostName(host);
  host.knownHostsFile = expandHome(host.knownHostsFile, baseDir);
  if (host.identityFile) host.identityFile = expandHome(host.identityFile, baseDir);
}

/** Pure: validates a parsed deploy.config.json; relative paths resolve against the config file's directory. */
export function parseDeployConfig(raw: unknown, source: string): DeployConfig {
  const copy = structuredClone(raw);
  const result = validate(copy);
  if (!result.ok) {
    throw new SlipwayError('config_invalid', `${source} has ${result.errors.length} problem(s)`, {
      details: result.errors, hint: `fix the fields listed above in ${source}`,
    });
  }
  const config = result.value;
  const baseDir = path.dirname(path.resolve(source));
  if (config.host) normalizeHost(config.host, baseDir);
  for (const env of Object.values(config.environments ?? {})) for (const host of env.hosts ?? []) normalizeHost(host, baseDir);
  const problems = environmentProblems(config);
  if (problems.length > 0) {
    throw new SlipwayError('config_invalid', `${source} has ${problems.length} problem(s)`, { details: problems, hint: `fix the fields listed above in ${source}` });
  }
  return config;
}

/** Pure: what the schema cannot say about environments. */
function environmentProblems(config: DeployConfig): string[] {
  const problems: string[] = [];
  const envs = config.environments ?? {};
  const names = Object.keys(envs);
  if (config.defaultEnv !== undefined && !envs[config.defaultEnv]) {
    problems.push(names.length ? `defaultEnv: names no environment (declared: ${names.join(', ')})` : 'defaultEnv: needs "environments"');
  }
  if (!config.host && names.length === 0) problems.push('host: is required (or declare "environments", each with its "hosts")');
  const boxApps = new Map<string, string>();
  for (const [name, env] of Object.entries(envs)) {
    if (!env.hosts && !config.host) problems.push(`environments/${name}/hosts: is required when there is no top-level "host"`);
    problems.push(...fleetProblems(`environments/${name}`, env));
    if (env.promotion && !envs[env.promotion.from]) problems.push(`environments/${name}/promotion/from: names no environment (declared: ${names.join(', ')})`);
    if (env.promotion?.from === name) problems.push(`environments/${name}/promotion/from: an environment cannot promote from itself`);
    for (const host of env.hosts ?? (config.host ? [config.host] : [])) {
      const key = `${host.address}:${host.port} ${env.app ?? config.app}`;
      const other = boxApps.get(key);
      if (other === name) continue;
      if (other) problems.push(`environments/${name}: deploys the same app (${env.app ?? config.app}) to the same host as environments/${other}; give one of them its own "app"`);
      boxApps.set(key, name);
    }
  }
  return problems;
}

/** Pure: the config resolved for no named environment (the default one, if it declares any). */
export function parseControllerConfig(raw: unknown, source: string): Target {
  return resolveTarget(parseDeployConfig(raw, source), undefined);
}

export function loadDeployConfig(file: string): DeployConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new SlipwayError('config_missing', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
      hint: `run deploy from your app's repository, or pass --config PATH/${DEFAULT_CONFIG_FILE}`,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new SlipwayError('config_invalid', `${file} is not valid JSON: ${(error as Error).message}`, { hint: 'fix the JSON syntax' });
  }
  return parseDeployConfig(raw, file);
}

/** The config file resolved for an environment (undefined: the default one, or none). */
export function loadControllerConfig(file: string, envName?: string): Target {
  return resolveTarget(loadDeployConfig(file), envName);
}
