/**
 * The agent's unpacking thread: runs the extractions the main thread starts (extract-thread.ts),
 * each exactly as agent/release/extract.ts does in-process, following the upload's .part file.
 * Here the buffers of gunzip, the file reads and node-tar's parsing are garbage of this thread's
 * own small heap, not of the agent's, whose full collections the upload used to trigger 13-19
 * times per 100 MB; and this thread runs beside the one receiving the socket.
 */
import { parentPort } from 'node:worker_threads';
import { startExtraction, type Extraction } from './extract.js';
import { encodeError, type FromWorker, type ToWorker } from './extract-wire.js';

const port = parentPort;
if (!port) throw new Error('extract-worker.js runs only as a worker thread');

const running = new Map<number, Extraction>();

function answer(message: FromWorker): void {
  port!.postMessage(message);
}

function settle(id: number, op: 'finish' | 'sync' | 'abort', work: Promise<unknown>): void {
  work.then(
    (value) => answer({ id, op, ok: true, value } as FromWorker),
    (error: unknown) => answer({ id, op, ok: false, error: encodeError(error) }),
  );
}

port.on('message', (message: ToWorker) => {
  const { id } = message;
  switch (message.op) {
    case 'start':
      running.set(id, startExtraction(message.file, message.dest, message.limits, {
        ...(message.flushFromBytes === undefined ? {} : { flushFromBytes: message.flushFromBytes }),
      }));
      return;
    case 'grew':
      running.get(id)?.grew(message.bytes);
      return;
    case 'finish':
      settle(id, 'finish', known(id).finish(message.bytes).catch((error: unknown) => {
        // A failed extraction removed its tree; nothing more will be asked of it.
        running.delete(id);
        throw error;
      }));
      return;
    case 'sync':
      settle(id, 'sync', known(id).sync(message.maxFiles));
      return;
    case 'abort': {
      const extraction = running.get(id);
      running.delete(id);
      settle(id, 'abort', extraction ? extraction.abort().then(() => null) : Promise.resolve(null));
      return;
    }
    case 'close':
      running.delete(id);
      return;
  }
});

function known(id: number): Extraction {
  const extraction = running.get(id);
  // Reported to the caller like any failure (through settle's rejection), never thrown at the port.
  return extraction ?? {
    grew: () => undefined,
    finish: () => Promise.reject(new Error(`no extraction ${id} in the unpacking thread`)),
    sync: () => Promise.reject(new Error(`no extraction ${id} in the unpacking thread`)),
    abort: () => Promise.resolve(),
    close: () => undefined,
  };
}
