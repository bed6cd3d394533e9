import { inspect } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is being waited for, as it should read in "timed out waiting for ...". */
  description: string;
}

function describe(value: unknown): string {
  return inspect(value, { depth: 3, breakLength: Infinity, maxStringLength: 500 });
}

/**
 * Polls `condition` until it returns a truthy value (which is returned) or the deadline passes.
 * A throwing condition counts as "not yet": the last error is reported if time runs out, so a
 * failing test says what it waited for and what it last saw instead of only "timeout".
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 50, description }: WaitOptions,
): Promise<NonNullable<T>> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let attempts = 0;
  let lastValue: unknown;
  let lastError: unknown;
  let sawValue = false;
  for (;;) {
    attempts += 1;
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
      lastValue = value;
      sawValue = true;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  const observed = lastError !== undefined
    ? `last error: ${lastError instanceof Error ? lastError.message : describe(lastError)}`
    : sawValue ? `last value: ${describe(lastValue)}` : 'condition never completed';
  throw new Error(`timed out after ${Date.now() - started} ms (${attempts} attempts) waiting for ${description}; ${observed}`);
}

/** Resolves or rejects like `promise`, but fails with a message naming `description` if it takes longer than `timeoutMs`. */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, description: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
