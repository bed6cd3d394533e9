import { describe, expect, it } from 'vitest';
import { auditArgs, loggedUrl, redactValue } from '../../agent/audit.js';

describe('auditArgs', () => {
  it('keeps a validated body, its params and query', () => {
    expect(auditArgs({ params: { app: 'shop' }, query: { force: 'true' }, body: { releaseId: 'a'.repeat(40) }, validated: true })).toEqual({
      params: { app: 'shop' }, query: { force: 'true' }, body: { releaseId: 'a'.repeat(40) },
    });
  });

  it('keeps only the field names of a body that failed its schema', () => {
    expect(auditArgs({ params: { app: 'shop' }, query: {}, body: { releaseId: 'x', password: 'hunter2' }, validated: false })).toEqual({
      params: { app: 'shop' }, bodyFields: ['releaseId', 'password'],
    });
    expect(auditArgs({ params: {}, query: undefined, body: ['hunter2'], validated: false })).toEqual({ params: {}, bodyType: 'array' });
  });

  it('removes URI credentials and fields named like secrets even from a valid body', () => {
    expect(auditArgs({
      params: {}, query: {}, validated: true,
      body: { confirm: true, to: 'mongodb://admin:hunter2@db/x', nested: { token: 'abc', list: ['postgres://u:p@h/d'] } },
    })).toEqual({ params: {}, body: { confirm: true, to: 'mongodb://admin:[REDACTED]@db/x', nested: { token: '[REDACTED]', list: ['postgres://u:[REDACTED]@h/d'] } } });
  });

  it('bounds what it keeps: long strings, many keys, deep nesting', () => {
    const value = redactValue({ long: 'x'.repeat(5000), deep: { a: { b: { c: { d: 1 } } } } }) as { long: string; deep: unknown };
    expect(value.long.length).toBeLessThan(300);
    expect(JSON.stringify(value.deep)).toContain('[nested]');
    expect(Object.keys(redactValue(Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]))) as object)).toHaveLength(50);
  });
});

describe('loggedUrl', () => {
  it('drops query values, keeps the path and the parameter names', () => {
    expect(loggedUrl('/apps/shop/lock?lockId=abc&force=true')).toBe('/apps/shop/lock?lockId=…&force=…');
    expect(loggedUrl('/apps/shop?token=s3cret')).not.toContain('s3cret');
    expect(loggedUrl('/apps/shop')).toBe('/apps/shop');
  });
});
