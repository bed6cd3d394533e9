/**
 * The one polling loop with a deadline: calls `condition` every `intervalMs` until it returns a
 * value other than false, null or undefined (which it returns), the deadline passes, or
 * `cancelled` says stop; then throws `onTimeout()`. Never a fixed sleep: the last wait is cut to
 * the deadline.
 */
export async function waitFor<T>(
  condition: () => Promise<T | false | null | undefined> | T | false | null | undefined,
  options: { timeoutMs: number; intervalMs?: number; cancelled?: () => boolean; onTimeout: () => Error },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 100;
  for (;;) {
    const value = await condition();
    if (value !== false && value !== null && value !== undefined) return value;
    if (options.cancelled?.() || Date.now() >= deadline) throw options.onTimeout();
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
  }
}
