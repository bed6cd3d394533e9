// The box's own build platform and the refusal of a release whose native addons were built for
// another one (contract/platform.ts decides compatibility).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../../contract/errors.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { platformMismatches, type BuildPlatform } from '../../contract/platform.js';
import { shortSha } from '../../contract/names.js';

interface ReportHeader { glibcVersionRuntime?: string }
interface Report { header?: ReportHeader; sharedObjects?: string[] }

let cached: BuildPlatform | undefined;

/**
 * The platform of this agent's Node: os, arch, libc (glibc with its version from process.report,
 * musl when the loaded objects name it), Node ABI. Builds on the box run under this same Node.
 */
export function hostPlatform(): BuildPlatform {
  if (cached) return cached;
  const report = (process.report?.getReport() ?? {}) as Report;
  const glibc = report.header?.glibcVersionRuntime;
  const musl = !glibc && process.platform === 'linux' && (report.sharedObjects ?? []).some((o) => o.includes('musl'));
  cached = {
    os: process.platform,
    arch: process.arch,
    libc: glibc ? 'glibc' : musl ? 'musl' : 'unknown',
    libcVersion: glibc ?? null,
    nodeAbi: process.versions.modules,
    nodeVersion: process.version,
  };
  return cached;
}

/** Pure: whether a release path is a native addon. */
export function isNativeAddon(relativePath: string): boolean {
  return relativePath.endsWith('.node');
}

/** Native addons under a release dir (relative paths), at most `limit` of them. */
export function nativeAddonsIn(dir: string, limit = 5): string[] {
  const found: string[] = [];
  const walk = (rel: string): void => {
    let entries;
    try {
      entries = readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (found.length >= limit) return;
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile() && isNativeAddon(entry.name)) found.push(child);
    }
  };
  walk('');
  return found;
}

/**
 * Refuses a release with native addons built for a platform the box cannot load. `built` is the
 * platform its dependencies were built on (the manifest's, or the box's own after a host build);
 * a release that records none is let through, as releases packed before platforms were recorded
 * are. `addons` lists the release's `*.node` files; it is only asked when the platforms differ.
 */
export function checkNativePlatform(input: {
  app: string; releaseId: string; addons: () => string[]; built: BuildPlatform | null; host: BuildPlatform;
  /** The release was built on this box (a host build), before the box changed. */
  builtHere?: boolean;
}): void {
  const { app, releaseId, built, host } = input;
  if (!built) return;
  const problems = platformMismatches(built, host);
  if (problems.length === 0) return;
  const addons = input.addons();
  if (addons.length === 0) return;
  throw new SlipwayError('platform_mismatch', `release ${shortSha(releaseId)} of ${app} has native addons built for another platform: ${problems.join('; ')}`, {
    status: 422,
    details: [...problems, `native addons, e.g.: ${addons.slice(0, 3).join(', ')}`, `host: ${host.os}/${host.arch} ${host.libc} ${host.libcVersion ?? ''} Node ${host.nodeVersion} (ABI ${host.nodeAbi})`],
    hint: input.builtHere
      ? 'it was built on this host before the host changed (a Node upgrade?): deploy a new release, which is built for the host as it is now; nothing was started'
      : 'build on the host instead ("build": {"on": "host"} in deploy.spec.json), or build on a CI image that matches the host (same OS, CPU, libc and Node major); nothing was started',
  });
}

/** The platform a release's dependencies were built on, as its manifest records it. */
export function manifestBuildPlatform(manifest: ReleaseManifest): BuildPlatform | null {
  return manifest.build?.platform ?? null;
}
