import { readFileSync } from 'node:fs';
import { LOG_ROTATION_DEFAULTS, type LogRotationSettings } from './logs/rotation.js';
import cron from 'node-cron';
import path from 'node:path';
import { APP_NAME_PATTERN, SERVER_NAME_PATTERN, type Slot } from '../contract/names.js';
import { SlipwayError } from '../contract/errors.js';
import { compileValidator } from '../lib/validate.js';
import { packageRoot } from '../contract/version.js';
import { NGINX_DEFAULTS, SWITCH_DIR_PATTERN, type NginxSettings } from './nginx/settings.js';
import { watchSchema, type HttpHealthSpec } from '../contract/spec.js';
import { notificationProblems, notificationsSchema, type NotificationsConfig } from './notify/config.js';
import { buildPolicySchema } from './build/policy.js';
import { backupsSchema, normalizeBackups, orphanBackupBeforeDeploy, type BackupsConfig } from './backups/config.js';
import type { BuildPolicy } from './spec/policy.js';
import { legacyMoves, translateLegacy } from './spec/legacy.js';
import { policyOf } from './spec/policy.js';
import { acmeSchema, appTlsProblems, appTlsSchema, type AcmeSettings, type AppTlsPolicy } from './tls/config.js';

export const DEFAULT_CONFIG_PATH = '/etc/slipway/agent.json';

/** The legacy `health` block: the same HTTP check a spec's process declares. */
export type HealthCheckConfig = HttpHealthSpec;

/**
 * One app as the box owner configures it: what it may claim (the policy: listen ports, server
 * names, process and instance limits, host builds), its env file, backup and nginx template.
 * What the app is (processes, routes, health, watch) comes with each release (deploy.spec.json).
 * The legacy fields (start, slots, health, public, watch, requiredEnv) still describe an app
 * whose releases carry no spec: see agent/spec/legacy.ts.
 */
export interface AppConfig {
  /** The app's env file (KEY=VALUE lines, mode 0600); default <home>/apps/<app>/shared/.env */
  envFile?: string;
  /** Where nginx listens for the app (host) and the listen ports its routes may use. */
  listen?: { host?: string; ports?: number[] };
  /** Server names its routes may use: exact, "*.example.com" (any subdomain), "_" (catch-all). */
  serverNames?: string[];
  maxProcesses: number;
  /** Total instances over the processes of one slot. */
  maxInstances: number;
  /** What host builds (`build.on: "host"`) of this app may use (agent/build/policy.ts). */
  build: BuildPolicy;
  nginxTemplate: string;
  /** Backup job run (and verified) before each deploy of this app; a failed backup stops the rollout. */
  backupBeforeDeploy?: string;
  /** HTTPS for the app's routes on its first listen port (agent/tls). */
  tls?: AppTlsPolicy;
  // ---- legacy: translated into the spec of releases without one (agent/spec/legacy.ts) ----
  slots?: Record<Slot, { port: number }>;
  start?: { script: string; args: string[]; nodeArgs: string[] };
  requiredEnv?: string[];
  health?: HealthCheckConfig;
  public?: { listenHost: string; listenPort: number; serverNames: string[] };
  /** After the switch: how long and how often traffic is checked, and what happens to the old slot. */
  watch?: {
    windowMs: number; intervalMs: number; failuresToRollback: number; keepPreviousWarm: boolean;
    /** The window of a rollback or switch (default: windowMs, at most 15 s); see agent/rollout/activation-plan.ts. */
    activationWindowMs?: number;
  };
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
  /** Rotation of the processes' PM2 log files (agent/logs/rotation.ts). */
  logs: LogRotationSettings;
  /** The range slot ports are assigned from (agent/spec/ports.ts). */
  ports: { from: number; to: number };
  apps: Record<string, AppConfig>;
  /** Scheduled, verified database backups (agent/backups). */
  backups?: BackupsConfig;
  /** Deploy and backup events to webhooks, through the outbox (agent/notify). */
  notifications: NotificationsConfig;
  /** Legacy app fields in use and where each belongs now; logged once when the agent starts. */
  legacyMoves?: string[];
  /** The ACME client and account of apps with tls.source "acme" (agent/tls). */
  acme?: AcmeSettings;
}

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const absolutePath = { type: 'string', pattern: '^/[^\\u0000]*$' } as const;
const argvList = { type: 'array', items: { type: 'string', minLength: 1, pattern: '^[^\\u0000]*$' } } as const;
const packageNginxDir = path.join(packageRoot(), 'nginx');
/** A server name the host allows: a name, "*.<domain>" for any name below it, or "_". */
const POLICY_SERVER_NAME_PATTERN = '^(_|(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$';
const LISTEN_HOST_PATTERN = '^[0-9a-fA-F.:\\[\\]]+$|^\\*$';
export const DEFAULT_PORT_RANGE = { from: 20_000, to: 20_999 } as const;

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
    logs: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxBytes: { type: 'integer', minimum: 1024, default: LOG_ROTATION_DEFAULTS.maxBytes },
        keep: { type: 'integer', minimum: 1, maximum: 100, default: LOG_ROTATION_DEFAULTS.keep },
        checkIntervalMs: { type: 'integer', minimum: 100, maximum: 3_600_000, default: LOG_ROTATION_DEFAULTS.checkIntervalMs },
      },
    },
    backups: backupsSchema,
    notifications: notificationsSchema,
    acme: acmeSchema,
    ports: {
      type: 'object',
      additionalProperties: false,
      default: { ...DEFAULT_PORT_RANGE },
      required: ['from', 'to'],
      properties: { from: { ...port, minimum: 1024 }, to: port },
    },
    apps: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: APP_NAME_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          listen: {
            type: 'object',
            additionalProperties: false,
            properties: {
              host: { type: 'string', pattern: LISTEN_HOST_PATTERN },
              ports: { type: 'array', uniqueItems: true, maxItems: 64, items: port },
            },
          },
          serverNames: { type: 'array', maxItems: 256, items: { type: 'string', pattern: POLICY_SERVER_NAME_PATTERN } },
          maxProcesses: { type: 'integer', minimum: 1, maximum: 32, default: 8 },
          maxInstances: { type: 'integer', minimum: 1, maximum: 1024, default: 16 },
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
              listenHost: { type: 'string', pattern: LISTEN_HOST_PATTERN, default: '127.0.0.1' },
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
          tls: appTlsSchema,
          // Legacy: the same watch window a spec declares (translated by agent/spec/legacy.ts).
          watch: watchSchema,
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
  const problems: string[] = [...notificationProblems(config.notifications)];
  const moves: string[] = [];
  for (const [app, appConfig] of Object.entries(config.apps)) {
    const given = ((raw as { apps?: Record<string, Record<string, unknown>> }).apps?.[app] ?? {});
    problems.push(...legacyProblems(app, given));
    moves.push(...legacyMoves(app, given));
    // Defaults of legacy fields mean nothing for an app configured by policy only.
    if (!appConfig.start) {
      for (const field of ['health', 'watch', 'requiredEnv'] as const) if (given[field] === undefined) delete appConfig[field];
    }
    if (appConfig.start && appConfig.slots && appConfig.public) {
      try {
        translateLegacy(appConfig);
      } catch (error) {
        problems.push(`apps/${app}: ${(error as Error).message}`);
      }
    }
  }
  if (moves.length > 0) config.legacyMoves = moves;
  if (config.ports.from > config.ports.to) problems.push(`ports: from (${config.ports.from}) must not be above to (${config.ports.to})`);
  problems.push(...(config.backups ? normalizeBackups(config.backups, config.home, config.apps) : orphanBackupBeforeDeploy(config.apps)));
  if (config.acme) {
    config.acme.dir ??= path.join(config.home, 'acme');
    config.acme.webroot ??= `${config.nginx.includeDir.replace(/\/+$/, '')}-acme`;
    if (!cron.validate(config.acme.schedule)) problems.push(`acme/schedule: "${config.acme.schedule}" is not a valid cron expression (e.g. "41 3,15 * * *")`);
  }
  for (const [app, appConfig] of Object.entries(config.apps)) {
    if (appConfig.tls) problems.push(...appTlsProblems(app, appConfig.tls, { acme: config.acme !== undefined, httpPorts: policyOf(appConfig).listen.ports }));
  }
  if (!cron.validate(config.retention.schedule)) {
    problems.push(`retention/schedule: "${config.retention.schedule}" is not a valid cron expression (e.g. "17 * * * *")`);
  }
  for (const [app, appConfig] of Object.entries(config.apps)) {
    if (appConfig.slots && appConfig.slots.blue.port === appConfig.slots.green.port) {
      problems.push(`apps/${app}/slots: blue and green must use different ports`);
    }
  }
  const portsInUse = new Map<number, string>();
  const inRange = (p: number) => p >= config.ports.from && p <= config.ports.to;
  for (const [app, appConfig] of Object.entries(config.apps)) {
    for (const slot of ['blue', 'green'] as const) {
      if (!appConfig.slots) continue;
      const p = appConfig.slots[slot].port;
      const owner = portsInUse.get(p);
      if (owner && owner !== `${app}/${slot}`) problems.push(`apps/${app}/slots/${slot}/port: ${p} is already used by ${owner}`);
      portsInUse.set(p, `${app}/${slot}`);
    }
    if (appConfig.public && portsInUse.has(appConfig.public.listenPort)) {
      problems.push(`apps/${app}/public/listenPort: ${appConfig.public.listenPort} is also a slot port`);
    }
    for (const [i, p] of (appConfig.listen?.ports ?? []).entries()) {
      if (portsInUse.has(p)) problems.push(`apps/${app}/listen/ports/${i}: ${p} is also a slot port`);
      else if (inRange(p)) problems.push(`apps/${app}/listen/ports/${i}: ${p} is inside the slot port range "ports" (${config.ports.from}-${config.ports.to})`);
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

/**
 * Pure: the legacy fields that only make sense together. `start` needs `slots` (its ports) and
 * `public` (its route); the fields that describe the started process mean nothing without it.
 */
function legacyProblems(app: string, given: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (given.start !== undefined) {
    for (const needed of ['slots', 'public']) {
      if (given[needed] === undefined) problems.push(`apps/${app}/start: needs apps.${app}.${needed} too (or move the app to deploy.spec.json and drop start)`);
    }
    return problems;
  }
  for (const field of ['slots', 'health', 'watch', 'requiredEnv']) {
    if (given[field] !== undefined) {
      problems.push(`apps/${app}/${field}: only applies to a legacy app with apps.${app}.start; put it in the app's deploy.spec.json instead`);
    }
  }
  return problems;
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
