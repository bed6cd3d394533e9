import type { BuildPlatform } from '../../contract/platform.js';

/** The parts of a Node diagnostic report (process.report.getReport()) that tell the libc apart. */
export interface ReportFacts {
  header?: { glibcVersionRuntime?: string };
  sharedObjects?: string[];
}

/**
 * Pure: the platform a build ran on, from the running Node and its diagnostic report. glibc
 * reports its runtime version in the header; musl has no version there, but its loader
 * (ld-musl-*.so.1) is among the shared objects.
 */
export function platformFrom(node: { platform: string; arch: string; modules: string; version: string }, report: ReportFacts): BuildPlatform {
  const glibc = report.header?.glibcVersionRuntime;
  const musl = (report.sharedObjects ?? []).some((file) => /(^|\/)(ld-)?musl[^/]*\.so/.test(file));
  return {
    os: node.platform,
    arch: node.arch,
    libc: glibc ? 'glibc' : musl ? 'musl' : 'unknown',
    libcVersion: glibc && /^[0-9][0-9.]{0,31}$/.test(glibc) ? glibc : null,
    nodeAbi: node.modules,
    nodeVersion: node.version,
  };
}

/** The platform of this controller: what a controller-side build's native addons were built for. */
export function detectBuildPlatform(): BuildPlatform {
  const report = process.report.getReport() as unknown as ReportFacts;
  return platformFrom({ platform: process.platform, arch: process.arch, modules: process.versions.modules, version: process.version }, report);
}

/** Pure: "linux x64, glibc 2.36, Node v20.20.2 (ABI 115)". */
export function describePlatform(p: BuildPlatform): string {
  const libc = p.libc === 'unknown' ? 'libc unknown' : `${p.libc}${p.libcVersion ? ` ${p.libcVersion}` : ''}`;
  return `${p.os} ${p.arch}, ${libc}, Node ${p.nodeVersion} (ABI ${p.nodeAbi})`;
}
