import type { Verification, VerifyCheck } from './store.js';

// The checks of one verification as they are made: each passes, fails or is skipped with its
// reason, in order. Details are scrubbed of secrets on the way in, so nothing recorded or
// notified can carry one.

export interface VerifyReport {
  /** Every check passed: the run is `verified`. */
  verified: boolean;
  /** The file is not a whole archive (truncated, wrong format): the run failed and the file goes. */
  broken: boolean;
  verification: Verification;
  /** The first failed check, in words. */
  problem: string | null;
}

export class CheckList {
  private readonly checks: VerifyCheck[] = [];
  private level = 'none';
  /** Rows or documents per table or collection, where a check counted them. */
  counts: Record<string, number> | null = null;
  broken = false;

  constructor(private readonly scrub: (text: string) => string) {}

  /** A check passed; `reached` is the verification level it proves, when it proves one. */
  pass(name: string, detail: string, reached?: string): void {
    this.checks.push({ name, ok: true, detail: this.scrub(detail) });
    if (reached) this.level = reached;
  }

  /** A check failed; `broken` when it proves the file is not a whole archive. */
  fail(name: string, detail: string, broken = false): void {
    this.checks.push({ name, ok: false, detail: this.scrub(detail) });
    if (broken) this.broken = true;
  }

  skip(name: string, detail: string): void {
    this.checks.push({ name, ok: true, skipped: true, detail: this.scrub(detail) });
  }

  allPassed(): boolean {
    return this.checks.every((c) => c.ok);
  }

  report(): VerifyReport {
    const firstFailure = this.checks.find((c) => !c.ok);
    return {
      verified: !firstFailure,
      broken: this.broken,
      verification: { level: this.level, checks: this.checks, counts: this.counts },
      problem: firstFailure ? `${firstFailure.name}: ${firstFailure.detail}` : null,
    };
  }
}
