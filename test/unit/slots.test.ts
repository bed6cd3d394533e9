import { describe, expect, it } from 'vitest';
import { chooseTargetSlot } from '../../agent/rollout/slots.js';
import { SlipwayError } from '../../contract/errors.js';

describe('chooseTargetSlot', () => {
  it('starts with blue when nothing is live', () => {
    expect(chooseTargetSlot('shop', null, undefined)).toBe('blue');
  });
  it('defaults to the slot that is not live', () => {
    expect(chooseTargetSlot('shop', 'blue', undefined)).toBe('green');
    expect(chooseTargetSlot('shop', 'green', undefined)).toBe('blue');
  });
  it('honours an explicit standby slot', () => {
    expect(chooseTargetSlot('shop', 'blue', 'green')).toBe('green');
    expect(chooseTargetSlot('shop', null, 'green')).toBe('green');
  });
  it('refuses the live slot and names the command to use instead', () => {
    try {
      chooseTargetSlot('shop', 'green', 'green');
      throw new Error('expected a refusal');
    } catch (error) {
      expect(error).toBeInstanceOf(SlipwayError);
      expect((error as SlipwayError).code).toBe('slot_is_live');
      expect((error as SlipwayError).status).toBe(409);
      expect((error as SlipwayError).hint).toContain('deploy push --slot blue');
    }
  });
});
