/**
 * Uploads still arriving that a relay session may already serve (DESIGN-S10, pipelined relay): an
 * upload with `?relay=1` registers its .part here, for its sha256, from its first written byte
 * until its ingest ends (after the verified bytes were kept, relay-keep.ts). A session then streams
 * the .part to its peers as it grows (relay-serve.ts), from one open descriptor, so the .part being
 * renamed or removed once the upload is done breaks no GET in progress. An upload that fails ends
 * its arrival as failed: the GETs that follow it are cut off.
 *
 * In memory only; one arrival per sha256 (upload.ts refuses a second upload of the same bytes
 * while one runs). Waiting is on notifications, never on a timer loop.
 */

/** What an ingest reports of its upload (store.ts calls these; none throws). */
export interface ArrivalHooks {
  /** More bytes are in the .part (`bytes` in all); the first call registers the arrival. */
  written(partFile: string, bytes: number): void;
  /** The whole upload is in the .part and hashes to its declared sha256. */
  received(): void;
  /** The ingest is over (its .part moved or removed); failed unless `received` came first. */
  ended(): void;
}

/** One upload as the sessions see it. */
export interface Arrival {
  readonly sha256: string;
  /** The length its sender declared. */
  readonly bytes: number;
  readonly partFile: string;
  /** Bytes in the .part so far. */
  readonly written: number;
  readonly received: boolean;
  readonly ended: boolean;
  /** Ended before it was received: what was served of it must be cut off. */
  readonly failed: boolean;
  /** Resolves at the next change (more bytes, received, ended); at once when it has ended. */
  changed(): Promise<void>;
}

class Tracked implements Arrival {
  written = 0;
  received = false;
  ended = false;
  private wake: (() => void)[] = [];

  constructor(readonly sha256: string, readonly bytes: number, readonly partFile: string) {}

  get failed(): boolean {
    return this.ended && !this.received;
  }

  changed(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => this.wake.push(resolve));
  }

  notify(): void {
    const wake = this.wake;
    this.wake = [];
    for (const resolve of wake) resolve();
  }
}

export class RelayArrivals {
  private readonly arriving = new Map<string, Tracked>();
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly afterEnd = new Map<Tracked, (() => void)[]>();

  /** The hooks for one upload of `sha256` declared `bytes` long (handed to the ingest). */
  track(sha256: string, bytes: number): ArrivalHooks {
    let mine: Tracked | undefined;
    return {
      written: (partFile, written) => {
        if (!mine) {
          // Another upload's arrival of the same bytes is left alone (upload.ts refuses this one anyway).
          if (this.arriving.has(sha256)) return;
          mine = new Tracked(sha256, bytes, partFile);
          this.arriving.set(sha256, mine);
          for (const wake of this.waiting.get(sha256) ?? []) wake();
          this.waiting.delete(sha256);
        }
        mine.written = written;
        mine.notify();
      },
      received: () => {
        if (!mine || mine.ended) return;
        mine.received = true;
        mine.notify();
      },
      ended: () => {
        if (!mine || mine.ended) return;
        mine.ended = true;
        if (this.arriving.get(sha256) === mine) this.arriving.delete(sha256);
        mine.notify();
        const after = this.afterEnd.get(mine) ?? [];
        this.afterEnd.delete(mine);
        for (const run of after) run();
      },
    };
  }

  /** The upload of `sha256` arriving now, if any. */
  get(sha256: string): Arrival | undefined {
    return this.arriving.get(sha256);
  }

  /** The arrival of `sha256`, waiting up to `waitMs` for one to start; undefined when none did. */
  async waitFor(sha256: string, waitMs: number): Promise<Arrival | undefined> {
    const now = this.arriving.get(sha256);
    if (now || waitMs <= 0) return now;
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.waiting.get(sha256)?.delete(wake);
        if (this.waiting.get(sha256)?.size === 0) this.waiting.delete(sha256);
        resolve();
      };
      const timer = setTimeout(wake, waitMs);
      timer.unref();
      const set = this.waiting.get(sha256) ?? new Set<() => void>();
      set.add(wake);
      this.waiting.set(sha256, set);
    });
    return this.arriving.get(sha256);
  }

  /** Runs `run` once the arrival of `sha256` has ended (its bytes kept or not), or now when none arrives. */
  whenSettled(sha256: string, run: () => void): void {
    const tracked = this.arriving.get(sha256);
    if (!tracked) return run();
    const list = this.afterEnd.get(tracked) ?? [];
    list.push(run);
    this.afterEnd.set(tracked, list);
  }
}
