import type { BackupJobConfig } from './config.js';
import type { DumpResult } from './dump-file.js';

// Pure: what a finished dump means for its run, before anything is verified.

/** Why a finished dump is not a backup, or null when it may be verified. */
export function dumpFailure(dump: Pick<DumpResult, 'error' | 'timedOut' | 'signal' | 'exitCode' | 'bytes'>, job: Pick<BackupJobConfig, 'timeoutMs' | 'minBytes'>): string | null {
  if (dump.error) return dump.error;
  if (dump.timedOut) return `timed out after ${job.timeoutMs} ms; its process group was killed`;
  if (dump.signal) return `the dump was killed by ${dump.signal}`;
  if (dump.exitCode !== 0) return `the dump exited with code ${dump.exitCode}`;
  if (dump.bytes === 0) return 'the dump wrote nothing';
  if (dump.bytes < job.minBytes) return `the dump wrote only ${dump.bytes} bytes (less than minBytes ${job.minBytes}): treated as empty`;
  return null;
}

export interface Rejection {
  reason: string;
  /** The disk was (nearly) full after the dump: the cause to name first, whatever the program said. */
  diskFull: boolean;
}

/**
 * Why the run fails, or null when its file may be published and verified. `lowSpace` is the
 * disk's state after the dump (lowSpaceReason): a dump that left the disk full is not kept even
 * when its program exited 0, since a program can lose its own write error.
 */
export function rejectDump(dump: Parameters<typeof dumpFailure>[0], job: Parameters<typeof dumpFailure>[1], lowSpace: string | null): Rejection | null {
  const failure = dumpFailure(dump, job);
  if (lowSpace) return { reason: `${lowSpace}; ${failure ?? 'the dump exited 0, but its output may be cut short, so it is not kept'}`, diskFull: true };
  return failure ? { reason: failure, diskFull: false } : null;
}
