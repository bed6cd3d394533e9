import type { DeploymentEvent, DeploymentResult } from '../contract/api.js';
import type { SlipwayError } from '../contract/errors.js';
import { shortSha } from '../contract/names.js';

/** The only module of the controller that writes to the terminal. */
export interface Output {
  info(message: string, data?: Record<string, unknown>): void;
  progress(phase: string, done: number, total: number, startedAt: number): void;
  event(event: DeploymentEvent): void;
  result(result: DeploymentResult, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): void;
  data(value: unknown): void;
  error(error: SlipwayError | Error): void;
}

export interface Streams { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; isTTY: boolean }

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

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

const MARK: Record<DeploymentEvent['status'], string> = { started: '…', ok: '✓', failed: '✗', info: '·' };

export class HumanOutput implements Output {
  private lastProgressAt = 0;
  constructor(private readonly io: Streams) {}

  info(message: string): void {
    this.io.stderr.write(`${message}\n`);
  }

  progress(phase: string, done: number, total: number, startedAt: number): void {
    const now = Date.now();
    const finished = done >= total;
    if (!finished && now - this.lastProgressAt < 200) return;
    this.lastProgressAt = now;
    const line = progressLine(phase, done, total, now - startedAt);
    if (this.io.isTTY) this.io.stderr.write(`\r${line}${finished ? '\n' : ''}`);
    else if (finished) this.io.stderr.write(`${line}\n`);
  }

  event(event: DeploymentEvent): void {
    if (event.status === 'started') return;
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
      this.io.stdout.write(`✗ ${result.app} ${release} failed ${result.phase === 'before_switch' ? 'before the switch (live slot untouched)' : 'after the switch'}: ${result.reason ?? ''}\n`);
      if (result.error?.hint) this.io.stdout.write(`  hint: ${result.error.hint}\n`);
    }
    const live = result.liveSlot ? `${result.liveSlot} (${result.liveReleaseId?.slice(0, 12) ?? '-'})` : 'none';
    this.io.stdout.write(`  live: ${live}   total ${formatMs(extra.totalMs)}: ${steps.join(', ')}\n`);
  }

  data(value: unknown): void {
    this.io.stdout.write(typeof value === 'string' ? `${value}\n` : `${JSON.stringify(value, null, 2)}\n`);
  }

  error(error: SlipwayError | Error): void {
    const e = error as SlipwayError;
    this.io.stderr.write(`deploy: ${e.message}\n`);
    for (const detail of e.details ?? []) this.io.stderr.write(`  - ${detail}\n`);
    if (e.hint) this.io.stderr.write(`hint: ${e.hint}\n`);
  }
}

/** --json: one JSON object per line on stdout, for scripts. */
export class JsonOutput implements Output {
  private lastProgressAt = 0;
  constructor(private readonly io: Streams) {}
  private line(value: unknown): void { this.io.stdout.write(`${JSON.stringify(value)}\n`); }

  info(message: string, data: Record<string, unknown> = {}): void { this.line({ type: 'info', message, ...data }); }
  progress(phase: string, done: number, total: number): void {
    const now = Date.now();
    if (done < total && now - this.lastProgressAt < 500) return;
    this.lastProgressAt = now;
    this.line({ type: 'progress', phase, done, total });
  }
  event(event: DeploymentEvent): void { this.line(event); }
  result(result: DeploymentResult, extra: { uploadMs: number | null; uploadedBytes: number; totalMs: number }): void {
    this.line({ ...result, ...extra });
  }
  data(value: unknown): void { this.line(value); }
  error(error: SlipwayError | Error): void {
    const e = error as SlipwayError;
    this.line({ type: 'error', error: e.code ?? 'internal_error', message: e.message, hint: e.hint, details: e.details });
  }
}
