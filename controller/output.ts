import type { DeploymentEvent, DeploymentResult } from '../contract/api.js';
import { SlipwayError } from '../contract/errors.js';
import { formatBytes } from '../lib/format-bytes.js';
import { shortSha } from '../contract/names.js';

/** The only module of the controller that writes to the terminal. */
export interface Output {
  info(message: string, data?: Record<string, unknown>): void;
  /** `stalledMs`: how long no bytes have moved (0 while they flow). */
  progress(phase: string, done: number, total: number, startedAt: number, stalledMs?: number): void;
  event(event: DeploymentEvent): void;
  result(result: DeploymentResult, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): void;
  data(value: unknown): void;
  error(error: SlipwayError | Error): void;
  /** Fields every --json line carries from now on (the environment a command targets). */
  scope?(fields: Record<string, unknown>): void;
}

export interface Streams { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; isTTY: boolean }

export { formatBytes };

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Pure: one progress line: bar, bytes, rate, ETA. */
export function progressLine(phase: string, done: number, total: number, elapsedMs: number, width = 24): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * width);
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const eta = rate > 0 ? (total - done) / rate : 0;
  return `  ${phase} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% `
    + `${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${eta.toFixed(1)} s`;
}

/** Set to 1 to see the stack of an internal error. */
export const DEBUG_ENV = 'SLIPWAY_DEBUG';

/** Pure: the one line an error that is not a SlipwayError (a bug) gets, without the stack. */
export function internalErrorLine(error: unknown): string {
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] || 'unknown error';
  return `deploy: internal error: ${message} (a bug in Slipway: ${DEBUG_ENV}=1 shows where)`;
}

/** Pure: what a stalled transfer adds to its progress. */
export function stallNote(stalledMs: number): string {
  return `no progress for ${Math.floor(stalledMs / 1000)} s`;
}

/** Without a terminal to redraw on, a stall is written out once per this many ms of it. */
const STALL_NOTE_EVERY_MS = 5_000;

const MARK: Record<DeploymentEvent['status'], string> = { started: '…', ok: '✓', failed: '✗', info: '·' };

export class HumanOutput implements Output {
  private lastProgressAt = 0;
  private stallNotesWritten = 0;
  /** A progress line is drawn without its newline: whatever comes next starts on a line of its own. */
  private progressLineOpen = false;
  constructor(private readonly io: Streams) {}

  private endProgressLine(): void {
    if (!this.progressLineOpen) return;
    this.progressLineOpen = false;
    this.io.stderr.write('\n');
  }

  info(message: string): void {
    this.endProgressLine();
    this.io.stderr.write(`${message}\n`);
  }

  progress(phase: string, done: number, total: number, startedAt: number, stalledMs = 0): void {
    const now = Date.now();
    const finished = done >= total;
    if (!this.io.isTTY) {
      if (finished) this.io.stderr.write(`${progressLine(phase, done, total, now - startedAt)}\n`);
      const notes = Math.floor(stalledMs / STALL_NOTE_EVERY_MS);
      if (notes > this.stallNotesWritten) this.io.stderr.write(`  ${phase}: ${stallNote(stalledMs)} (${formatBytes(done)} of ${formatBytes(total)} sent)\n`);
      this.stallNotesWritten = notes;
      return;
    }
    if (!finished && stalledMs === 0 && now - this.lastProgressAt < 200) return;
    this.lastProgressAt = now;
    const line = progressLine(phase, done, total, now - startedAt) + (stalledMs > 0 ? `  ${stallNote(stalledMs)}` : '');
    // \x1b[K clears what a longer earlier line left behind (the stall note once bytes flow again).
    this.io.stderr.write(`\r${line}\x1b[K${finished ? '\n' : ''}`);
    this.progressLineOpen = !finished;
  }

  event(event: DeploymentEvent): void {
    if (event.status === 'started') return;
    this.endProgressLine();
    const timing = event.elapsedMs === null ? '' : formatMs(event.elapsedMs).padStart(9);
    this.io.stderr.write(`  ${MARK[event.status]} ${event.step.padEnd(10)}${timing}  ${event.message ?? ''}\n`);
  }

  result(result: DeploymentResult, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): void {
    const release = result.releaseId ? shortSha(result.releaseId) : '-';
    const steps = Object.entries(result.stepDurationsMs).map(([step, ms]) => `${step} ${formatMs(ms)}`);
    if (extra.uploadMs !== null) steps.unshift(`upload ${formatMs(extra.uploadMs)} (${formatBytes(extra.uploadedBytes)})`);
    if (result.outcome === 'succeeded') {
      this.io.stdout.write(`✓ ${result.app} ${release} is live on ${result.slot}: ${result.publicUrl}\n`);
    } else if (result.outcome === 'rolled_back') {
      this.io.stdout.write(`✗ ${result.app} ${release} was rolled back: ${result.reason ?? 'unknown reason'}\n`);
    } else {
      const where = result.phase === 'before_switch' ? 'before the switch (live slot untouched)'
        : 'after the switch, and it stays live (no healthy slot to go back to)';
      this.io.stdout.write(`✗ ${result.app} ${release} failed ${where}: ${result.reason ?? ''}\n`);
      if (result.error?.hint) this.io.stdout.write(`  hint: ${result.error.hint}\n`);
    }
    const live = result.liveSlot ? `${result.liveSlot} (${result.liveReleaseId ? shortSha(result.liveReleaseId) : '-'})` : 'none';
    this.io.stdout.write(`  live: ${live}   total ${formatMs(extra.totalMs)}: ${steps.join(', ')}\n`);
  }

  data(value: unknown): void {
    this.io.stdout.write(typeof value === 'string' ? `${value}\n` : `${JSON.stringify(value, null, 2)}\n`);
  }

  error(error: SlipwayError | Error): void {
    this.endProgressLine();
    if (!(error instanceof SlipwayError)) {
      this.io.stderr.write(`${internalErrorLine(error)}\n`);
      return;
    }
    this.io.stderr.write(`deploy: ${error.message}\n`);
    for (const detail of error.details ?? []) this.io.stderr.write(`  - ${detail}\n`);
    if (error.hint) this.io.stderr.write(`hint: ${error.hint}\n`);
  }
}

/** --json: one JSON object per line on stdout, for scripts. */
export class JsonOutput implements Output {
  private lastProgressAt = 0;
  private fields: Record<string, unknown> = {};
  constructor(private readonly io: Streams) {}
  scope(fields: Record<string, unknown>): void { this.fields = { ...this.fields, ...fields }; }
  private line(value: unknown): void {
    // The line's own fields win (a history row names its own deployment's env).
    const scoped = typeof value === 'object' && value !== null && !Array.isArray(value) ? { ...this.fields, ...value } : value;
    this.io.stdout.write(`${JSON.stringify(scoped)}\n`);
  }

  info(message: string, data: Record<string, unknown> = {}): void { this.line({ type: 'info', message, ...data }); }
  progress(phase: string, done: number, total: number, _startedAt: number, stalledMs = 0): void {
    const now = Date.now();
    if (done < total && now - this.lastProgressAt < 500) return;
    this.lastProgressAt = now;
    this.line({ type: 'progress', phase, done, total, stalledMs });
  }
  event(event: DeploymentEvent): void { this.line(event); }
  result(result: DeploymentResult, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): void {
    this.line({ ...result, ...extra });
  }
  data(value: unknown): void { this.line(value); }
  error(error: SlipwayError | Error): void {
    if (!(error instanceof SlipwayError)) {
      this.line({ type: 'error', error: 'internal_error', kind: 'internal', message: error.message });
      return;
    }
    this.line({ type: 'error', error: error.code, kind: error.kind, message: error.message, hint: error.hint, details: error.details });
  }
}
