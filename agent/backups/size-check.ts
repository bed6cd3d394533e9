import { formatBytes } from '../../lib/format-bytes.js';

// A raw dump has no structure Slipway can read, so its size is what can be checked: not empty,
// and close to the size of the job's previous good dumps (a dump cut short, or of the wrong
// thing, usually is not). Pure; the history comes from the job's verified runs.

export interface SizeBounds {
  /** Smallest size allowed, as a fraction of the reference (0 turns the lower bound off). */
  minSizeRatio: number;
  /** Largest size allowed, as a multiple of the reference. */
  maxSizeRatio: number;
}

export const DEFAULT_SIZE_BOUNDS: SizeBounds = { minSizeRatio: 0.5, maxSizeRatio: 4 };
/** How many previous verified dumps make the reference (their median, so one odd dump does not move it). */
export const SIZE_HISTORY = 5;

export interface SizeJudgement { ok: boolean; skipped?: boolean; detail: string }

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** "0.87×"; more digits when two would print the very bound the ratio is on the wrong side of. */
function ratioText(ratio: number, bound?: number): string {
  for (let digits = 2; digits < 6; digits++) {
    const shown = Number(ratio.toFixed(digits));
    if (shown !== bound) return `${shown}×`;
  }
  return `${ratio}×`;
}

/** `history`: sizes of the job's previous verified dumps, newest first (only the first SIZE_HISTORY count). */
export function judgeSizeRange(bytes: number, history: readonly number[], bounds: SizeBounds): SizeJudgement {
  const recent = history.slice(0, SIZE_HISTORY);
  if (!recent.length) {
    return { ok: true, skipped: true, detail: 'no earlier verified dump of this job to compare with: the size range is checked from the next run on' };
  }
  const reference = median(recent);
  const ratio = bytes / reference;
  const against = `the median ${formatBytes(reference)} of the last ${recent.length} verified dump(s)`;
  const allowed = `allowed ${ratioText(bounds.minSizeRatio)} to ${ratioText(bounds.maxSizeRatio)}`;
  if (ratio < bounds.minSizeRatio) {
    return { ok: false, detail: `${formatBytes(bytes)} is ${ratioText(ratio, bounds.minSizeRatio)} ${against}, below verify.minSizeRatio ${bounds.minSizeRatio} (cut short?)` };
  }
  if (ratio > bounds.maxSizeRatio) {
    return { ok: false, detail: `${formatBytes(bytes)} is ${ratioText(ratio, bounds.maxSizeRatio)} ${against}, above verify.maxSizeRatio ${bounds.maxSizeRatio}` };
  }
  return { ok: true, detail: `${formatBytes(bytes)} is ${ratioText(ratio)} ${against} (${allowed})` };
}
