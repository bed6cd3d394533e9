import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SlipwayError } from '../../contract/errors.js';
import type { ExtractLimits, ExtractOptions, ExtractResult, Extraction } from './extract.js';
import { decodeError, type FromWorker, type ToWorker } from './extract-wire.js';

/**
 * startExtraction (extract.ts), run in the agent's unpacking thread instead of on the main one:
 * same contract, same checks (the thread runs extract.ts itself), same errors. The main thread
 * keeps the socket, the .part file and the tarball's sha256; the thread reads the .part as it
 * grows. Should the thread die, every extraction in it fails with `extract_failed` (the caller
 * removes the staging dir as after any failed unpack) and the next one starts a fresh thread.
 */
export function startExtractionInWorker(file: string, destDir: string, limits: ExtractLimits, options: ExtractOptions = {}): Extraction {
  return new ThreadExtraction(sharedThread(), path.resolve(file), path.resolve(destDir), limits, options);
}

/**
 * An unused unpacking thread is stopped after this long: it costs ~13 MB of RSS, which the idle
 * agent should not carry (its footprint goal is 80 MB). Starting it again (loading its modules)
 * took ~1 s at load 14, far less on a quiet box; it hides behind the first megabytes of the next
 * large upload, which the extraction follows.
 */
const IDLE_MS = 30_000;

type Pending = { resolve(value: unknown): void; reject(error: Error): void };

/** One worker shared by every extraction of the process; requests are told apart by id. */
class UnpackThread {
  private readonly worker: Worker;
  private readonly pending = new Map<string, Pending>();
  /** Extractions started and not yet closed. */
  private readonly open = new Set<number>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;
  dead = false;
  /** Why the thread stopped, for requests made after it did. */
  private deathReason = '';

  constructor() {
    this.worker = new Worker(workerScript());
    this.worker.on('message', (message: FromWorker) => this.answered(message));
    this.worker.on('error', (error) => this.died(error));
    this.worker.on('exit', (code) => this.died(new Error(`it exited with code ${code}`)));
    this.worker.unref();
  }

  begin(): number {
    const id = this.nextId++;
    this.open.add(id);
    clearTimeout(this.idleTimer);
    // Keeps the process alive only while an extraction runs (as its file and socket would).
    this.worker.ref();
    return id;
  }

  end(id: number): void {
    if (!this.open.delete(id) || this.open.size > 0 || this.dead) return;
    this.worker.unref();
    this.idleTimer = setTimeout(() => { if (this.open.size === 0) void this.stop(); }, IDLE_MS);
    this.idleTimer.unref();
  }

  async stop(): Promise<void> {
    // Dead at once, not once terminated: an upload starting meanwhile must get a fresh thread.
    this.died(new Error('it was stopped'));
    await this.worker.terminate();
  }

  send(message: ToWorker): void {
    if (!this.dead) this.worker.postMessage(message);
  }

  request<T>(message: ToWorker & { op: 'finish' | 'sync' | 'abort' }): Promise<T> {
    if (this.dead) return Promise.reject(threadGone(this.deathReason));
    return new Promise<T>((resolve, reject) => {
      this.pending.set(`${message.op}:${message.id}`, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage(message);
    });
  }

  private answered(message: FromWorker): void {
    const key = `${message.op}:${message.id}`;
    const waiter = this.pending.get(key);
    if (!waiter) return;
    this.pending.delete(key);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(decodeError(message.error));
  }

  private died(error: Error): void {
    if (this.dead) return;
    this.dead = true;
    this.deathReason = error.message;
    clearTimeout(this.idleTimer);
    if (shared === this) shared = undefined;
    for (const waiter of this.pending.values()) waiter.reject(threadGone(error.message));
    this.pending.clear();
    // After an uncaught error the thread may still be running: nothing more of it is wanted.
    void this.worker.terminate();
  }
}

let shared: UnpackThread | undefined;

/**
 * Stops the unpacking thread now (agent shutdown): extractions in it fail with `extract_failed`,
 * their callers remove the staging dirs, and the next upload starts a fresh thread.
 */
export async function stopUnpackThread(): Promise<void> {
  const thread = shared;
  shared = undefined;
  await thread?.stop();
}

function sharedThread(): UnpackThread {
  if (!shared || shared.dead) shared = new UnpackThread();
  return shared;
}

class ThreadExtraction implements Extraction {
  private readonly id: number;
  private posted = 0;
  private closed = false;

  constructor(private readonly thread: UnpackThread, file: string, dest: string, limits: ExtractLimits, options: ExtractOptions) {
    this.id = thread.begin();
    thread.send({
      op: 'start', id: this.id, file, dest, limits: { ...limits },
      ...(options.flushFromBytes === undefined ? {} : { flushFromBytes: options.flushFromBytes }),
    });
  }

  grew(bytes: number): void {
    if (bytes <= this.posted || this.closed) return;
    this.posted = bytes;
    this.thread.send({ op: 'grew', id: this.id, bytes });
  }

  async finish(bytes: number): Promise<ExtractResult> {
    try {
      return await this.thread.request<ExtractResult>({ op: 'finish', id: this.id, bytes });
    } catch (error) {
      // The thread removed the tree of a failed extraction (or died: the caller removes it).
      this.close();
      throw error;
    }
  }

  sync(maxFiles: number): Promise<boolean> {
    return this.thread.request<boolean>({ op: 'sync', id: this.id, maxFiles });
  }

  async abort(): Promise<void> {
    try {
      await this.thread.request<null>({ op: 'abort', id: this.id });
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.thread.send({ op: 'close', id: this.id });
    this.thread.end(this.id);
  }
}

function threadGone(reason: string): SlipwayError {
  return new SlipwayError('extract_failed', `the agent's unpacking thread stopped: ${reason}`, {
    status: 500, hint: 'check the agent log and push again; existing releases were not touched',
  });
}

/**
 * The worker's script beside this module. Run from TypeScript sources (the test runner transpiles
 * them in its own process only, not in a worker), the built copy under dist/ instead.
 */
function workerScript(): string {
  const here = fileURLToPath(new URL('./extract-worker.js', import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL('../../dist/agent/release/extract-worker.js', import.meta.url));
}
