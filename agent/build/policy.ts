// What the box owner allows an app's host builds (agent.json apps.<app>.build). Kept as its own
// schema block so the host policy (spec vs policy checks) can take it over as it is.

export interface HostBuildPolicy {
  /** Whether a release may ask for `build.on: "host"` at all. */
  allowHost: boolean;
  /** A build does not start when /proc/meminfo's MemAvailable is below this. */
  minFreeMemoryBytes: number;
  /** Upper bound on the spec's build.timeoutMs (a spec asking for more is refused, agent/spec/policy.ts). */
  timeoutMs: number;
  /** CPU niceness of build steps (0 = unchanged); I/O runs in the idle class when ionice exists. */
  nice: number;
  /** Extra environment for build steps, e.g. npm_config_cache, npm_config_registry. */
  env: Record<string, string>;
  /** Time limit of each release-phase command (agent/rollout/release-phase.ts). */
  releaseTimeoutMs?: number;
}

export const DEFAULT_BUILD_POLICY: HostBuildPolicy = { allowHost: true, minFreeMemoryBytes: 512 * 1024 * 1024, timeoutMs: 3_600_000, nice: 10, env: {} };

export const buildPolicySchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    allowHost: { type: 'boolean', default: true },
    minFreeMemoryBytes: { type: 'integer', minimum: 0, default: 512 * 1024 * 1024 },
    timeoutMs: { type: 'integer', minimum: 1000, maximum: 7_200_000, default: DEFAULT_BUILD_POLICY.timeoutMs },
    nice: { type: 'integer', minimum: 0, maximum: 19, default: 10 },
    releaseTimeoutMs: { type: 'integer', minimum: 1000, maximum: 7_200_000 },
    env: {
      type: 'object',
      maxProperties: 64,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      additionalProperties: { type: 'string', pattern: '^[^\\u0000]*$' },
      default: {},
    },
  },
} as const;
