import path from 'node:path';
import type { OffsiteConfig } from './config.js';
import { expandPlaceholders, redactSecrets } from './commands.js';
import { describeFailure, runGroup, succeeded } from './process.js';

// The offsite copy runs commands from the job's config (rclone, aws s3, scp, ...). With `list`
// and `delete` the remote copies are pruned by the same GFS policy as the local ones; with only
// `copy` it is copy-only, and every status view says that remote copies are never pruned.

export type { OffsiteMode } from '../../contract/backups.js';
import type { OffsiteMode } from '../../contract/backups.js';

export function offsiteMode(offsite: OffsiteConfig | undefined): OffsiteMode {
  if (!offsite) return 'none';
  return offsite.list && offsite.delete ? 'gfs' : 'copy-only';
}

export interface OffsiteVars { job: string; app: string }
export interface OffsiteOutcome { ok: boolean; detail: string }

export async function offsiteCopy(offsite: OffsiteConfig, file: string, vars: OffsiteVars, env: NodeJS.ProcessEnv): Promise<OffsiteOutcome> {
  const argv = expandPlaceholders(offsite.copy, { ...vars, file, name: path.basename(file) });
  const run = await runGroup(argv, { env, timeoutMs: offsite.timeoutMs });
  return succeeded(run) ? { ok: true, detail: `copied as ${path.basename(file)}` } : { ok: false, detail: redactSecrets(describeFailure(run)) };
}

/** Names of the remote copies (the last path segment of each listed line). */
export async function offsiteList(offsite: OffsiteConfig, vars: OffsiteVars, env: NodeJS.ProcessEnv): Promise<{ ok: boolean; names: string[]; detail: string }> {
  const argv = expandPlaceholders(offsite.list!, { ...vars, file: '', name: '' });
  const run = await runGroup(argv, { env, timeoutMs: offsite.timeoutMs, tailBytes: 4 * 1024 * 1024 });
  if (!succeeded(run)) return { ok: false, names: [], detail: redactSecrets(describeFailure(run)) };
  const names = run.stdoutTail.split('\n').map((l) => l.trim().replace(/\/+$/, '')).filter(Boolean).map((l) => l.split('/').pop()!);
  return { ok: true, names, detail: `${names.length} remote file(s)` };
}

export async function offsiteDelete(offsite: OffsiteConfig, name: string, vars: OffsiteVars, env: NodeJS.ProcessEnv): Promise<OffsiteOutcome> {
  const argv = expandPlaceholders(offsite.delete!, { ...vars, file: '', name });
  const run = await runGroup(argv, { env, timeoutMs: offsite.timeoutMs });
  return succeeded(run) ? { ok: true, detail: `deleted ${name}` } : { ok: false, detail: redactSecrets(describeFailure(run)) };
}
