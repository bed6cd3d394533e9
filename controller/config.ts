import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { APP_NAME_PATTERN } from '../contract/names.js';
import { SlipwayError } from '../contract/errors.js';
import { compileValidator } from '../lib/validate.js';

export const DEFAULT_CONFIG_FILE = 'deploy.config.json';
export const DEFAULT_UPLOAD_STALL_TIMEOUT_MS = 30_000;

export interface ControllerConfig {
  app: string;
  host: {
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
  };
  agent: { port: number; tokenFile: string };
  /** Untracked build output (relative paths) added to the release next to the committed files. */
  include: string[];
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'host', 'agent'],
  properties: {
    $schema: { type: 'string' },
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    host: {
      type: 'object',
      additionalProperties: false,
      required: ['address', 'user'],
      properties: {
        address: { type: 'string', pattern: '^[A-Za-z0-9.:_-]{1,253}$' },
        port: { type: 'integer', minimum: 1, maximum: 65535, default: 22 },
        user: { type: 'string', pattern: '^[a-z_][a-z0-9_.-]{0,31}$' },
        identityFile: { type: 'string', minLength: 1 },
        knownHostsFile: { type: 'string', minLength: 1, default: '~/.ssh/known_hosts' },
        connectTimeoutMs: { type: 'integer', minimum: 1000, default: 15_000 },
        keepaliveIntervalMs: { type: 'integer', minimum: 1000, maximum: 300_000, default: 5_000 },
        keepaliveCountMax: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
        uploadStallTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: DEFAULT_UPLOAD_STALL_TIMEOUT_MS },
      },
    },
    agent: {
      type: 'object',
      additionalProperties: false,
      required: [],
      default: {},
      properties: {
        port: { type: 'integer', minimum: 1, maximum: 65535, default: 7070 },
        tokenFile: { type: 'string', pattern: '^/[^\\u0000]*$', default: '/etc/slipway/agent.token' },
      },
    },
    include: {
      type: 'array',
      default: [],
      items: { type: 'string', minLength: 1, pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$' },
    },
  },
} as const;

const validate = compileValidator<ControllerConfig>(schema);

function expandHome(file: string, baseDir: string): string {
  if (file === '~' || file.startsWith('~/')) return path.join(os.homedir(), file.slice(1));
  return path.resolve(baseDir, file);
}

/** Pure: validates a parsed config; relative paths resolve against the config file's directory. */
export function parseControllerConfig(raw: unknown, source: string): ControllerConfig {
  const copy = structuredClone(raw);
  const result = validate(copy);
  if (!result.ok) {
    throw new SlipwayError('config_invalid', `${source} has ${result.errors.length} problem(s)`, {
      details: result.errors, hint: `fix the fields listed above in ${source}`,
    });
  }
  const config = result.value;
  const baseDir = path.dirname(path.resolve(source));
  config.host.knownHostsFile = expandHome(config.host.knownHostsFile, baseDir);
  if (config.host.identityFile) config.host.identityFile = expandHome(config.host.identityFile, baseDir);
  return config;
}

export function loadControllerConfig(file: string): ControllerConfig {
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
  return parseControllerConfig(raw, file);
}
