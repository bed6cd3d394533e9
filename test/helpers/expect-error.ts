import { expect } from 'vitest';
import { SlipwayError } from '../../agent/shared/errors.js';

/** Awaits a call that must fail with a SlipwayError of `code`, and returns that error. */
export async function expectSlipwayError(promise: Promise<unknown>, code: string): Promise<SlipwayError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe(code);
    return error as SlipwayError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}
