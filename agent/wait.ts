/** Polls `condition` until it returns true or the deadline passes; never a fixed sleep. */
export async function waitFor(
  condition: () => Promise<boolean> | boolean,
  options: { timeoutMs: number; intervalMs?: number; onTimeout: () => Error },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 100;
  for (;;) {
    if (await condition()) return;
    if (Date.now() >= deadline) throw options.onTimeout();
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
  }
}
