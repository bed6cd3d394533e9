/**
 * Every failure Slipway reports on purpose is a SlipwayError: a stable code for scripts,
 * a message saying what went wrong (with app, slot, sha, step where known), and a hint saying
 * what to do next. Anything else reaching an error boundary is a bug and is reported as such.
 */
export interface ErrorBody {
  error: string;
  message: string;
  hint?: string;
  details?: string[];
}

export interface SlipwayErrorOptions {
  hint?: string;
  details?: string[];
  cause?: unknown;
  /** HTTP status when the error crosses the agent API. */
  status?: number;
}

export class SlipwayError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly details: string[] | undefined;
  readonly status: number;

  constructor(code: string, message: string, options: SlipwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SlipwayError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
    this.status = options.status ?? 500;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: this.code, message: this.message };
    if (this.hint) body.hint = this.hint;
    if (this.details?.length) body.details = this.details;
    return body;
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  return typeof value === 'object' && value !== null
    && typeof (value as ErrorBody).error === 'string' && typeof (value as ErrorBody).message === 'string';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
