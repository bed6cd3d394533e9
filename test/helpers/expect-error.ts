import { expect } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { SlipwayError } from '../../contract/errors.js';

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

/** The "field: problem" lines of an agent config that must be rejected. */
export function agentConfigProblems(raw: unknown): string[] {
  try {
    parseAgentConfig(raw, 'agent.json');
  } catch (error) {
    expect(error).toBeInstanceOf(SlipwayError);
    return (error as SlipwayError).details ?? [];
  }
  throw new Error('expected the config to be rejected');
}
