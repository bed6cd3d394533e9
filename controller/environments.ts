import { SlipwayError } from '../contract/errors.js';
import { isEmptyOverrides, type SpecOverrides } from '../contract/spec-overrides.js';
import type { ControllerConfig, DeployConfig, EnvironmentConfig, HostConfig } from './config.js';

/**
 * What a command deploys to: today's single-host config (`app` is the app's name on the box) plus
 * what the environment says. Without environments: env null, project = app, nothing overridden.
 */
export interface Target extends ControllerConfig {
  /** The environment's name; null when the config declares none. */
  env: string | null;
  /** The project's name (top-level app): manifest.app, the same in every environment. */
  project: string;
  specOverrides: SpecOverrides | null;
  requireApproval: boolean;
  promotion: { from: string; maxAgeMs: number } | null;
  /** Pattern of a git tag the controller makes after each deploy here (e.g. deploy/production/{date}-{shortSha}). */
  gitTag: string | null;
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Pure: "14d" → ms (h, d or w). */
export function durationMs(text: string): number {
  const match = /^([0-9]{1,4})([hdw])$/.exec(text);
  if (!match) throw new SlipwayError('config_invalid', `"${text}" is not a duration`, { hint: 'a number with h, d or w, e.g. 14d' });
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}

/** Pure: the environments a config declares, for messages. */
export function environmentNames(config: DeployConfig): string[] {
  return Object.keys(config.environments ?? {});
}

/** Pure: the environment a command names (--env, else defaultEnv) and its hosts; null env without environments. */
export function resolveEnvironmentHosts(config: DeployConfig, envName: string | undefined): { name: string | null; env: EnvironmentConfig | null; hosts: HostConfig[] } {
  const names = environmentNames(config);
  if (names.length === 0) {
    if (envName !== undefined) {
      throw new SlipwayError('env_required', `--env ${envName}: deploy.config.json declares no environments`, {
        hint: 'drop --env, or declare "environments" in deploy.config.json (see README "Environments")',
      });
    }
    if (!config.host) throw new SlipwayError('config_invalid', 'deploy.config.json has no "host"', { hint: 'add "host", or "environments" each with its "hosts"' });
    return { name: null, env: null, hosts: [config.host] };
  }
  const name = envName ?? config.defaultEnv;
  if (name === undefined) {
    throw new SlipwayError('env_required', `deploy.config.json declares environments: name one with --env (${names.join(', ')})`, {
      hint: `e.g. --env ${names[0]}, or set "defaultEnv" in deploy.config.json`,
    });
  }
  const env = config.environments![name];
  if (!env) {
    throw new SlipwayError('env_required', `no environment "${name}" in deploy.config.json (declared: ${names.join(', ')})`, {
      hint: `--env ${names.join(' | --env ')}`,
    });
  }
  const hosts = env.hosts ?? (config.host ? [config.host] : []);
  if (hosts.length === 0) throw new SlipwayError('config_invalid', `environments.${name} has no "hosts" and there is no top-level "host"`, { hint: 'add one' });
  return { name, env, hosts };
}

/** Pure: the single-host target of environment `envName` (null: no environments) on one of its hosts. */
export function targetOnHost(config: DeployConfig, envName: string | null, host: HostConfig): Target {
  const base = { project: config.app, include: config.include, requireApproval: false, promotion: null, gitTag: null, specOverrides: null };
  if (envName === null) return { ...base, env: null, app: config.app, host, agent: config.agent };
  const env = config.environments![envName]!;
  return {
    ...base,
    env: envName,
    app: env.app ?? config.app,
    host,
    agent: { ...config.agent, ...env.agent },
    specOverrides: isEmptyOverrides(env.spec) ? null : env.spec!,
    requireApproval: env.requireApproval,
    promotion: env.promotion ? { from: env.promotion.from, maxAgeMs: durationMs(env.promotion.maxAge) } : null,
    gitTag: env.gitTag ?? null,
  };
}

/**
 * Pure: the target of a single-host command. `envName` from --env (undefined: the config's defaultEnv).
 * A config without environments has one target (env null); naming an environment it does not
 * declare, or declaring some without a default and naming none, is env_required. An environment of
 * several hosts is a fleet (controller/fleet/target.ts resolveFleet): a command that acts on one
 * host only refuses it (fleet_unsupported) rather than silently acting on the first.
 */
export function resolveTarget(config: DeployConfig, envName: string | undefined): Target {
  const { name, hosts } = resolveEnvironmentHosts(config, envName);
  if (hosts.length > 1) {
    throw new SlipwayError('fleet_unsupported', `environment ${name} has ${hosts.length} hosts, and this command acts on one host only`, {
      hint: 'run it with a config (or an environment) that names one of those hosts',
    });
  }
  return targetOnHost(config, name, hosts[0]!);
}
