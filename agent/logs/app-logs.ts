import { open } from 'node:fs/promises';
import type { AppLogs, LogEntry, LogFollowLine, LogStream } from '../../contract/api.js';
import type { Slot } from '../../contract/names.js';
import { systemClock } from '../rollout/deps.js';
import { FileFollower } from './follow.js';
import { entriesSince, mergeStreams, parseLogLines } from './log-line.js';

/** The PM2 log files of one process of a slot (SlotProcesses.logSources). */
export interface LogSource { name: string; pm2Name: string; outLog: string | null; errLog: string | null }

export interface AppLogDeps {
  /** The slot traffic goes to (null before the first deploy) and the release a slot runs. */
  liveSlot(app: string): Slot | null;
  releaseOf(app: string, slot: Slot): string | null;
  sources(app: string, slot: Slot, process?: string): Promise<LogSource[]>;
  /** Masks env file values in a line. */
  mask(app: string): Promise<(line: string) => string>;
  now?: () => number;
  /** How often a follow polls the files and the live slot. */
  pollMs?: number;
}

export interface TailOptions { process?: string; lines: number; sinceMs?: number }
export interface FollowOptions extends TailOptions { slot?: Slot }

/** Bytes read from the end of a file per line asked for (at least 16 KiB, at most 4 MiB). */
const BYTES_PER_LINE = 1024;
const MIN_TAIL_BYTES = 16 * 1024;
const MAX_TAIL_BYTES = 4 * 1024 * 1024;
const DEFAULT_POLL_MS = 250;

/** The complete lines of the end of a file, up to `end` (default: its size); none when it is missing. */
async function tailLines(file: string | null, lines: number, end?: number): Promise<string[]> {
  if (file === null) return [];
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return [];
  try {
    const size = Math.min(end ?? Infinity, (await handle.stat()).size);
    const length = Math.min(size, Math.max(MIN_TAIL_BYTES, Math.min(MAX_TAIL_BYTES, lines * BYTES_PER_LINE)));
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, size - length);
    const all = buffer.subarray(0, bytesRead).toString('utf8').split('\n');
    // The first line may start mid-line when the read began inside it; the last one is unfinished.
    if (length < size) all.shift();
    all.pop();
    return all.map((line) => line.replace(/\r$/, ''));
  } finally {
    await handle.close();
  }
}

/**
 * `deploy logs`: the last lines of a slot's processes, with their times, and following them as they
 * are written: across log rotation (agent/logs/follow.ts) and, when no slot was named, across a
 * switch (the follow moves to the new live slot and says so). Env file values are masked in every
 * line before it leaves the agent.
 */
export class AppLogReader {
  constructor(private readonly deps: AppLogDeps) {}

  private cutoff(sinceMs: number | undefined): number | null {
    return sinceMs === undefined ? null : (this.deps.now ?? Date.now)() - sinceMs;
  }

  /** The last `lines` entries of each process (within `sinceMs`), both streams merged in time order. */
  async tail(app: string, slot: Slot, options: TailOptions): Promise<AppLogs['processes']> {
    const sources = await this.deps.sources(app, slot, options.process);
    return this.tailOf(app, sources, options, this.cutoff(options.sinceMs));
  }

  private async tailOf(app: string, sources: LogSource[], options: TailOptions, cutoff: number | null, ends?: Map<string, number>): Promise<AppLogs['processes']> {
    const mask = await this.deps.mask(app);
    return Promise.all(sources.map(async (source) => {
      const read = async (file: string | null, stream: LogStream) => {
        const raw = (await tailLines(file, options.lines, file === null ? undefined : ends?.get(file))).map(mask);
        return { raw, entries: entriesSince(parseLogLines(raw, stream), cutoff) };
      };
      const out = await read(source.outLog, 'out');
      const err = await read(source.errLog, 'err');
      const keep = (raw: string[], entries: LogEntry[]) => raw.slice(raw.length - Math.min(raw.length, entries.length)).slice(-options.lines);
      return {
        name: source.name, pm2Name: source.pm2Name,
        out: keep(out.raw, out.entries), err: keep(err.raw, err.entries),
        entries: mergeStreams(out.entries, err.entries).slice(-options.lines),
      };
    }));
  }

  /**
   * Sends the last lines, then every new line, until `signal` aborts. With no slot named, a switch
   * moves the follow to the new live slot: a `switch` line, then that slot's lines written since
   * the follow began (its start, while the old slot still served), then its new lines.
   */
  async follow(app: string, options: FollowOptions, emit: (line: LogFollowLine) => void, signal: AbortSignal): Promise<void> {
    const pollMs = this.deps.pollMs ?? DEFAULT_POLL_MS;
    const now = this.deps.now ?? Date.now;
    const first = options.slot ?? this.deps.liveSlot(app);
    if (first === null) return;
    let slot: Slot = first;
    const followStarted = now();
    let followers = await this.followersOf(app, slot, options.process);
    await this.emitTail(app, slot, followers, options, this.cutoff(options.sinceMs), emit);
    while (!signal.aborted) {
      // Its abort listener goes when the poll's wait ends: a follow of days makes millions of polls.
      await systemClock.sleep(pollMs, signal);
      if (signal.aborted) break;
      await this.emitNew(app, slot, followers, emit);
      const live: Slot | null = options.slot === undefined ? this.deps.liveSlot(app) : slot;
      if (live !== null && live !== slot) {
        await closeAll(followers);
        emit({ type: 'switch', from: slot, to: live, releaseId: this.deps.releaseOf(app, live), at: new Date(now()).toISOString() });
        slot = live;
        followers = await this.followersOf(app, slot, options.process);
        // What the new slot wrote while the follow read the old one (its start, before the switch): not lost.
        await this.emitTail(app, slot, followers, { ...options, lines: 1000 }, followStarted, emit);
      }
    }
    await closeAll(followers);
  }

  private async followersOf(app: string, slot: Slot, process?: string): Promise<ProcessFollowers[]> {
    const sources = await this.deps.sources(app, slot, process);
    const followers = sources.map((source) => ({
      source,
      streams: ([['out', source.outLog], ['err', source.errLog]] as const)
        .filter((pair): pair is readonly [LogStream, string] => pair[1] !== null)
        .map(([stream, file]) => ({ stream, follower: new FileFollower(file), carry: null as string | null })),
    }));
    // The first poll fixes where each follow starts: the end of the file now.
    for (const f of followers) for (const s of f.streams) await s.follower.poll();
    return followers;
  }

  /** The tail up to where the followers start, so no line is sent twice or skipped. */
  private async emitTail(app: string, slot: Slot, followers: ProcessFollowers[], options: TailOptions, cutoff: number | null, emit: (line: LogFollowLine) => void): Promise<void> {
    const ends = new Map<string, number>();
    for (const f of followers) for (const s of f.streams) if (s.follower.startOffset !== null) ends.set(s.follower.path, s.follower.startOffset);
    const tails = await this.tailOf(app, followers.map((f) => f.source), options, cutoff, ends);
    const lines = tails.flatMap((p) => p.entries.map((entry) => ({ type: 'line' as const, slot, process: p.name, ...entry })));
    // Processes interleaved by time (stable within one).
    lines.sort((a, b) => (a.time === null || b.time === null ? 0 : Date.parse(a.time) - Date.parse(b.time)));
    for (const line of lines) emit(line);
    for (const f of followers) {
      for (const s of f.streams) s.carry = tails.find((p) => p.name === f.source.name)?.entries.filter((e) => e.stream === s.stream).at(-1)?.time ?? null;
    }
  }

  private async emitNew(app: string, slot: Slot, followers: ProcessFollowers[], emit: (line: LogFollowLine) => void): Promise<void> {
    const mask = await this.deps.mask(app);
    for (const f of followers) {
      for (const s of f.streams) {
        const read = await s.follower.poll();
        if (read.rotated) emit({ type: 'rotated', slot, process: f.source.name, stream: s.stream });
        const entries = parseLogLines(read.lines.map(mask), s.stream, s.carry);
        if (entries.length > 0) s.carry = entries.at(-1)!.time;
        for (const entry of entries) emit({ type: 'line', slot, process: f.source.name, ...entry });
      }
    }
  }
}

interface ProcessFollowers {
  source: LogSource;
  streams: { stream: LogStream; follower: FileFollower; carry: string | null }[];
}

async function closeAll(followers: ProcessFollowers[]): Promise<void> {
  for (const f of followers) for (const s of f.streams) await s.follower.close();
}

