import { describe, expect, it } from 'vitest';
import { SlipwayError } from '../../contract/errors.js';
import { isDiskFull } from '../../lib/durable.js';
import { decodeError, encodeError } from '../../agent/release/extract-wire.js';

/** Errors crossing from the unpacking thread to the agent's main thread (agent/release/extract-wire.ts). */
describe('extract-wire', () => {
  it('a SlipwayError keeps its code, status, hint and details', () => {
    const original = new SlipwayError('release_limit_exceeded', 'too many entries', {
      status: 413, hint: 'raise limits.maxEntries', details: ['entry: "a"', 'limit: limits.maxEntries'],
    });
    const back = decodeError(structuredClone(encodeError(original)));
    expect(back).toBeInstanceOf(SlipwayError);
    const error = back as SlipwayError;
    expect({ code: error.code, message: error.message, status: error.status, hint: error.hint, details: error.details })
      .toEqual({ code: 'release_limit_exceeded', message: 'too many entries', status: 413, hint: 'raise limits.maxEntries', details: ['entry: "a"', 'limit: limits.maxEntries'] });
  });

  it('a SlipwayError without hint or details comes back without them', () => {
    const back = decodeError(structuredClone(encodeError(new SlipwayError('bad_tarball', 'refused', { status: 400 })))) as SlipwayError;
    expect({ hint: back.hint, details: back.details, status: back.status }).toEqual({ hint: undefined, details: undefined, status: 400 });
  });

  it('a file system error keeps its errno code, so a full disk is still one', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const back = decodeError(structuredClone(encodeError(enospc)));
    expect(back).not.toBeInstanceOf(SlipwayError);
    expect(back.message).toBe('ENOSPC: no space left on device, write');
    expect(isDiskFull(back)).toBe(true);
  });

  it('anything else keeps its message only; an unknown error code does not become a SlipwayError', () => {
    expect(decodeError(encodeError('a string')).message).toBe('a string');
    const back = decodeError({ kind: 'slipway', code: 'no_such_code', message: 'odd', status: 500 });
    expect(back).not.toBeInstanceOf(SlipwayError);
    expect(back.message).toBe('odd');
    expect(isDiskFull(back)).toBe(false);
  });
});
