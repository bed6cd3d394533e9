/**
 * The relay's key is a secret (DESIGN-S10): the audit row of a request that carries it, and the
 * agent's log, keep everything but its value.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { auditArgs } from '../../agent/audit.js';
import { createLogger } from '../../agent/logger.js';

const KEY = 'c'.repeat(64);

describe('the relay key stays out of the audit table and the log', () => {
  it('the audit row of a session or fetch request keeps the identity and the address, not the key', () => {
    const args = auditArgs({
      params: { app: 'shop' }, query: {}, validated: true,
      body: { from: { address: '10.0.0.2', port: 7391 }, identity: 'session-1234', key: KEY, sha256: 'a'.repeat(64), bytes: 1, kind: 'full' },
    });
    expect(JSON.stringify(args)).not.toContain(KEY);
    expect(args).toMatchObject({ body: { identity: 'session-1234', key: '[REDACTED]', from: { address: '10.0.0.2' } } });
  });

  it('the log replaces a key field at the top, one level down, and in a logged request body', () => {
    const lines: string[] = [];
    const destination = new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done(); } });
    const logger = createLogger({ level: 'info', destination });
    logger.info({ key: KEY }, 'top');
    logger.info({ session: { key: KEY, identity: 'session-1234' } }, 'nested');
    logger.info({ req: { body: { key: KEY } } }, 'request');
    expect(lines).toHaveLength(3);
    expect(lines.join('')).not.toContain(KEY);
    expect(lines[1]).toContain('session-1234');
  });
});
