import { readFileSync } from 'node:fs';
import cron from 'node-cron';
import path from 'node:path';
import { APP_NAME_PATTERN, SERVER_NAME_PATTERN, type Slot } from '../contract/names.js';
import { SlipwayError } from '../contract/errors.js';
import { compileValidator } from '../lib/validate.js';
import { packageRoot } from '../contract/version.js';
import { NGINX_DEFAULTS, SWITCH_DIR_PATTERN, type NginxSettings } from './nginx/settings.js';
import { buildPolicySchema, type HostBuildPolicy } from './build/policy.js';
import { backupsSchema, normalizeBackups, orphanBackupBeforeDeploy, type BackupsConfig } from './backups/config.js';

export const DEFAULT_CONFIG_PATH = '/etc/slipway/agent.json';

export interface HealthCheckConfig {
  path: string;
  expectStatus: number;
  bodyContains?: string;
  timeoutMs: number;
  intervalMs: number;
  retries: number;
}

export interface AppConfig {
  slots: Record<Slot, { port: number }>;
  start: { script: string; args: string[]; nodeArgs: string[] };
  /** The app's env file (KEY=VALUE lines, mode 0600); default <home>/apps/<app>/shared/.env */
  envFile?: string;
  requiredEnv: string[];
  health: HealthCheckConfig;
  public: { listenHost: string; listenPort: number; serverNames: string[] };
  nginxTemplate: string;
  /** Backup job run (and verified) before each deploy of this app; a failed backup stops the rollout. */
  backupBeforeDeploy?: string;
  /** After the switch: how long and how often traffic is checked, and what happens to the old slot. */
  watch: {
    windowMs: number; intervalMs: number; failuresToRollback: number; keepPreviousWarm: boolean;
    /** The window of a rollback or switch (default: windowMs, at most 15 s); see agent/rollout/activation-plan.ts. */
    activationWindowMs?: number;
  };
  /** What host builds (`build.on: "host"`) of this app may use (agent/build/policy.ts). */
  build?: HostBuildPolicy;
}

export interface AgentConfig {
  home: string;
  api: { host: string; port: number; tokenFile: string };
  /** watchdogIntervalMs: how often the agent checks that its PM2 daemon is alive (pm2-watchdog.ts). */
  pm2: { home: string; callTimeoutMs: number; watchdogIntervalMs: number };
  nginx: NginxSettings;
  limits: { maxReleaseBytes: number; maxUnpackedBytes: number; maxEntries: number; uploadIdleTimeoutMs: number };
  /** Release cleanup: how many releases to keep per app, and when the cleanup job runs (cron). */
  retention: { keepReleases: number; schedule: string };
  apps: Record<string, AppConfig>;
  /** Scheduled, verified database backups (agent/backups). */
  backups?: BackupsConfig;
}

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const absolutePath = { type: 'string', pattern: '^/[^\\u0000]*$' } as const;
const argvList = { type: 'array', items: { type: 'string', minLength: 1, pattern: '^[^\\u0000]*$' } } as const;
const packageNginxDir = path.join(packageRoot(), 'nginx');

const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['home', 'api', 'nginx', 'apps'],
  properties: {
    home: absolutePath,
    api: {
      type: 'object',
      additionalProperties: false,
      required: ['port', 'tokenFile'],
      properties: {
        // The API is for the controller's SSH tunnel only: loopback addresses and nothing else.
        host: { enum: ['127.0.0.1', '::1'], default: '127.0.0.1' },
        port,
        tokenFile: absolutePath,
      },
    },
    pm2: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        home: absolutePath,
        callTimeoutMs: { type: 'integer', minimum: 1000, default: 20_000 },
        watchdogIntervalMs: { type: 'integer', minimum: 100, maximum: 60_000, default: 2_000 },
      },
    },
    nginx: {
      type: 'object',
      additionalProperties: false,
      required: ['pidFile', 'includeDir'],
      properties: {
        command: { ...argvList, minItems: 1, default: NGINX_DEFAULTS.command },
        testArgs: { ...argvList, default: NGINX_DEFAULTS.testArgs },
        reloadArgs: { ...argvList, default: NGINX_DEFAULTS.reloadArgs },
        pidFile: absolutePath,
        includeDir: absolutePath,
        templateDir: absolutePath,
        switchDir: { type: 'string', pattern: SWITCH_DIR_PATTERN },
        timeoutMs: { type: 'integer', minimum: 100, default: NGINX_DEFAULTS.timeoutMs },
        proveTimeoutMs: { type: 'integer', minimum: 100, default: NGINX_DEFAULTS.proveTimeoutMs },
        errorLogPath: { ...absolutePath, default: NGINX_DEFAULTS.errorLogPath },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxReleaseBytes: { type: 'integer', minimum: 1024, default: 512 * 1024 * 1024 },
        maxUnpackedBytes: { type: 'integer', minimum: 1024, default: 2 * 1024 * 1024 * 1024 },
        maxEntries: { type: 'integer', minimum: 1, default: 100_000 },
        // An upload that sends nothing for this long (a dead link) is dropped and its partial file removed.
        uploadIdleTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: 30_000 },
      },
    },
    retention: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        keepReleases: { type: 'integer', minimum: 1, maximum: 1000, default: 5 },
        schedule: { type: 'string', minLength: 9, default: '17 * * * *' },
      },
    },
    backups: backupsSchema,
    apps: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: APP_NAME_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['slots', 'start', 'public'],
        properties: {
          slots: {
            type: 'object',
            additionalProperties: false,
            required: ['blue', 'green'],
            properties: {
              blue: { type: 'object', additionalProperties: false, required: ['port'], properties: { port } },
              green: { type: 'object', additionalProperties: false, required: ['port'], properties: { port } },
            },
          },
          start: {
            type: 'object',
            additionalProperties: false,
            required: ['script'],
            properties: {
              // Relative to the release dir; may not climb out of it.
              script: { type: 'string', minLength: 1, pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$' },
              args: { ...argvList, default: [] },
              nodeArgs: { ...argvList, default: [] },
            },
          },
          envFile: absolutePath,
          requiredEnv: {
            type: 'array',
            default: [],
            items: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
          },
          health: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
              path: { type: 'string', pattern: '^/[\\x21-\\x7e]*$', default: '/health' },
              expectStatus: { type: 'integer', minimum: 100, maximum: 599, default: 200 },
              bodyContains: { type: 'string', minLength: 1 },
              timeoutMs: { type: 'integer', minimum: 50, default: 2_000 },
              intervalMs: { type: 'integer', minimum: 10, default: 250 },
              retries: { type: 'integer', minimum: 1, maximum: 10_000, default: 120 },
            },
          },
          public: {
            type: 'object',
            additionalProperties: false,
            required: ['listenPort'],
            properties: {
              listenHost: { type: 'string', pattern: '^[0-9a-fA-F.:\\[\\]]+$|^\\*$', default: '127.0.0.1' },
              listenPort: port,
              serverNames: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', pattern: SERVER_NAME_PATTERN },
                default: ['_'],
              },
            },
          },
          nginxTemplate: { type: 'string', pattern: '^[A-Za-z0-9_.-]+\\.njk$', default: 'app.conf.njk' },
          backupBeforeDeploy: { type: 'string', pattern: APP_NAME_PATTERN },
          build: buildPolicySchema,
          watch: {
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
          },
        },
      },
    },
  },
} as const;

const validateConfig = compileValidator<AgentConfig>(configSchema);

/** Pure: validates and normalises a parsed config object, listing every problem by its path. */
export function parseAgentConfig(raw: unknown, source = 'agent config'): AgentConfig {
  // Defaults are applied in place by Ajv; work on a copy so callers keep their object.
  const copy = structuredClone(raw);
  const result = validateConfig(copy);
  if (!result.ok) {
    throw new SlipwayError('config_invalid', `${source} has ${result.errors.length} problem(s)`, {
      details: result.errors,
      hint: `fix the fields listed above in ${source}`,
    });
  }
  const config = result.value;
  config.pm2.home ??= path.join(config.home, 'pm2');
  config.nginx.templateDir ??= packageNginxDir;
  config.nginx.switchDir ??= `${config.nginx.includeDir.replace(/\/+$/, '')}-switch`;
  const problems: string[] = [];
  problems.push(...(config.backups ? normalizeBackups(config.backups, config.home, config.apps) : orphanBackupBeforeDeploy(config.apps)));
  if (!cron.validate(config.retention.schedule)) {
    problems.push(`retention/schedule: "${config.retention.schedule}" is not a valid cron expression (e.g. "17 * * * *")`);
  }
  for (const [app, appConfig] of Object.entries(config.apps)) {
    if (appConfig.slots.blue.port === appConfig.slots.green.port) {
      problems.push(`apps/${app}/slots: blue and green must use different ports`);
    }
  }
  const portsInUse = new Map<number, string>();
  for (const [app, appConfig] of Object.entries(config.apps)) {
    for (const slot of ['blue', 'green'] as const) {
      const p = appConfig.slots[slot].port;
      const owner = portsInUse.get(p);
      if (owner && owner !== `${app}/${slot}`) problems.push(`apps/${app}/slots/${slot}/port: ${p} is already used by ${owner}`);
      portsInUse.set(p, `${app}/${slot}`);
    }
    if (portsInUse.has(appConfig.public.listenPort)) {
      problems.push(`apps/${app}/public/listenPort: ${appConfig.public.listenPort} is also a slot port`);
    }
  }
  if (problems.length) {
    throw new SlipwayError('config_invalid', `${source} has ${problems.length} problem(s)`, {
      details: problems,
      hint: `fix the fields listed above in ${source}`,
    });
  }
  return config;
}

export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new SlipwayError('config_missing', `cannot read agent config ${file}: ${(error as Error).message}`, {
      hint: 'pass --config FILE or create /etc/slipway/agent.json (see README "Agent config")',
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new SlipwayError('config_invalid', `agent config ${file} is not valid JSON: ${(error as Error).message}`, {
      hint: 'fix the JSON syntax',
    });
  }
  return parseAgentConfig(raw, file);
}

export function envFileOf(config: AgentConfig, app: string): string {
  return config.apps[app]?.envFile ?? path.join(config.home, 'apps', app, 'shared', '.env');
}
