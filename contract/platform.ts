// The platform a release's native addons were built for, recorded by whoever built it (the
// controller, or the agent for `build.on: "host"`), and checked by the agent before a release
// with `*.node` files starts: a box cannot load an addon built for another OS, CPU, libc or Node ABI.

export interface BuildPlatform {
  /** process.platform, e.g. "linux". */
  os: string;
  /** process.arch, e.g. "x64", "arm64". */
  arch: string;
  libc: 'glibc' | 'musl' | 'unknown';
  /** e.g. "2.36"; null where unknown. */
  libcVersion: string | null;
  /** process.versions.modules, e.g. "115" for Node 20. */
  nodeAbi: string;
  nodeVersion: string;
}

export const buildPlatformSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['os', 'arch', 'libc', 'libcVersion', 'nodeAbi', 'nodeVersion'],
  properties: {
    os: { type: 'string', pattern: '^[a-z0-9_]{1,32}$' },
    arch: { type: 'string', pattern: '^[a-z0-9_]{1,32}$' },
    libc: { enum: ['glibc', 'musl', 'unknown'] },
    libcVersion: { type: ['string', 'null'], pattern: '^[0-9][0-9.]{0,31}$' },
    nodeAbi: { type: 'string', pattern: '^[0-9]{1,4}$' },
    nodeVersion: { type: 'string', pattern: '^v?[0-9][0-9A-Za-z.+-]{0,63}$' },
  },
} as const;

function versionParts(version: string): number[] {
  return version.split('.').map((part) => Number.parseInt(part, 10) || 0);
}

/** a >= b, comparing dotted numbers. */
function versionAtLeast(a: string, b: string): boolean {
  const [x, y] = [versionParts(a), versionParts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  }
  return true;
}

/**
 * Pure: why a box (`host`) cannot load native addons built on `built`, one line per reason; empty
 * when it can. glibc is backward compatible (an addon built against 2.31 loads on 2.36), not forward.
 */
export function platformMismatches(built: BuildPlatform, host: BuildPlatform): string[] {
  const problems: string[] = [];
  if (built.os !== host.os) problems.push(`built for OS ${built.os}, the host runs ${host.os}`);
  if (built.arch !== host.arch) problems.push(`built for CPU ${built.arch}, the host is ${host.arch}`);
  if (built.libc !== 'unknown' && host.libc !== 'unknown' && built.libc !== host.libc) {
    problems.push(`built against ${built.libc}, the host has ${host.libc}`);
  } else if (built.libc === 'glibc' && host.libc === 'glibc' && built.libcVersion && host.libcVersion && !versionAtLeast(host.libcVersion, built.libcVersion)) {
    problems.push(`built against glibc ${built.libcVersion}, the host has the older ${host.libcVersion}`);
  }
  if (built.nodeAbi !== host.nodeAbi) {
    problems.push(`built for Node ABI ${built.nodeAbi} (Node ${built.nodeVersion}), the host's Node ${host.nodeVersion} has ABI ${host.nodeAbi}`);
  }
  return problems;
}
