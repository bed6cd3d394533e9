import { SlipwayError, isErrorCode } from '../../contract/errors.js';
import type { ExtractLimits, ExtractResult } from './extract.js';

/**
 * The messages between the agent and its unpacking thread (extract-thread.ts ↔ extract-worker.ts),
 * and how an error crosses between them: a SlipwayError keeps its code, status, hint and details;
 * any other error keeps its message and errno code (so a full disk is still recognised as one).
 */
export type ToWorker =
  | { op: 'start'; id: number; file: string; dest: string; limits: ExtractLimits; flushFromBytes?: number }
  | { op: 'grew'; id: number; bytes: number }
  | { op: 'finish'; id: number; bytes: number }
  | { op: 'sync'; id: number; maxFiles: number }
  | { op: 'abort'; id: number }
  | { op: 'close'; id: number };

/** The answer to one finish, sync or abort. */
export type FromWorker =
  | { id: number; op: 'finish'; ok: true; value: ExtractResult }
  | { id: number; op: 'sync'; ok: true; value: boolean }
  | { id: number; op: 'abort'; ok: true; value: null }
  | { id: number; op: 'finish' | 'sync' | 'abort'; ok: false; error: WireError };

export type WireError =
  | { kind: 'slipway'; code: string; message: string; status: number; hint?: string; details?: string[] }
  | { kind: 'plain'; message: string; errno?: string };

export function encodeError(error: unknown): WireError {
  if (error instanceof SlipwayError) {
    return {
      kind: 'slipway', code: error.code, message: error.message, status: error.status,
      ...(error.hint === undefined ? {} : { hint: error.hint }),
      ...(error.details === undefined ? {} : { details: [...error.details] }),
    };
  }
  const errno = (error as NodeJS.ErrnoException | null)?.code;
  return {
    kind: 'plain',
    message: error instanceof Error ? error.message : String(error),
    ...(typeof errno === 'string' ? { errno } : {}),
  };
}

export function decodeError(wire: WireError): Error {
  if (wire.kind === 'slipway' && isErrorCode(wire.code)) {
    return new SlipwayError(wire.code, wire.message, {
      status: wire.status,
      ...(wire.hint === undefined ? {} : { hint: wire.hint }),
      ...(wire.details === undefined ? {} : { details: wire.details }),
    });
  }
  const error: NodeJS.ErrnoException = new Error(wire.message);
  if (wire.kind === 'plain' && wire.errno !== undefined) error.code = wire.errno;
  return error;
}
