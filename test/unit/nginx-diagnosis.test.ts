import { describe, expect, it } from 'vitest';
import { blamedFile, logReasons, notAppliedError, testFailureHint, type NotAppliedInput } from '../../agent/nginx/diagnosis.js';

const INCLUDE = '/etc/nginx/slipway/shop.conf';

/** What nginx 1.22 writes to its error log when a reload cannot bind a port another program holds. */
const BIND_LOG = [
  '2024/05/01 10:00:00 [notice] 811#811: signal process started',
  '2024/05/01 10:00:00 [notice] 700#700: signal 1 (SIGHUP) received from 811, reconfiguring',
  '2024/05/01 10:00:00 [notice] 700#700: reconfiguring',
  '2024/05/01 10:00:00 [emerg] 700#700: bind() to 127.0.0.1:8080 failed (98: Address already in use)',
  '2024/05/01 10:00:00 [notice] 700#700: try again to bind() after 500ms',
  '2024/05/01 10:00:01 [emerg] 700#700: bind() to 127.0.0.1:8080 failed (98: Address already in use)',
  '2024/05/01 10:00:01 [notice] 700#700: try again to bind() after 500ms',
  '2024/05/01 10:00:02 [emerg] 700#700: still could not bind()',
];

describe('nginx diagnosis', () => {
  it('quotes each serious log line once, without timestamp and pid', () => {
    expect(logReasons(BIND_LOG)).toEqual([
      '[emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use)',
      '[emerg] still could not bind()',
    ]);
    expect(logReasons(['2024/05/01 10:00:00 [crit] 9#9: *12 open() "/x" failed (13: Permission denied)']))
      .toEqual(['[crit] open() "/x" failed (13: Permission denied)']);
    expect(logReasons(BIND_LOG.filter((line) => line.includes('[notice]')))).toEqual([]);
  });

  describe('blames the file nginx names, and Slipway\'s include when it names none', () => {
    it.each([
      ['an error in the include', `nginx: [emerg] unknown directive "bogus" in ${INCLUDE}:12`, INCLUDE, true],
      ['an error in another file', 'nginx: [emerg] unknown directive "x" in /etc/nginx/conf.d/hand edited.conf:1', '/etc/nginx/conf.d/hand edited.conf', false],
      ['a bind error (no file)', 'nginx: [emerg] bind() to 192.0.2.1:80 failed (99: Cannot assign requested address)', INCLUDE, true],
      ['a certificate error (no file)', 'nginx: [emerg] cannot load certificate "/etc/ssl/x.pem": BIO_new_file() failed', INCLUDE, true],
    ])('%s', (_label, diagnosis, file, ours) => {
      expect(blamedFile(diagnosis, INCLUDE)).toEqual({ file, ours });
    });
  });

  it('points a bind error nginx -t reports at the include and the setting that made it', () => {
    const hint = testFailureHint('shop', 'nginx: [emerg] bind() to 192.0.2.1:80 failed (99: Cannot assign requested address)', INCLUDE);
    expect(hint).toContain(INCLUDE);
    expect(hint).toContain('192.0.2.1:80');
    expect(hint).toContain('apps.shop.public.listenHost');
    expect(hint).not.toContain('did not write');
    expect(testFailureHint('shop', 'nginx: [emerg] unknown directive "x" in /etc/nginx/other.conf:1', INCLUDE))
      .toMatch(/^the error is in \/etc\/nginx\/other\.conf, a file Slipway did not write/);
  });

  describe('a reload nginx did not apply', () => {
    const input = (patch: Partial<NotAppliedInput>): NotAppliedInput => ({
      app: 'shop', proveTimeoutMs: 5000, log: { path: '/var/log/nginx/error.log', lines: BIND_LOG },
      expected: 'expected x-slipway-generation: 4 from http://127.0.0.1:8080/health (Host: shop.test)',
      observed: 'status 200, x-slipway-generation: (absent)', reloadAgainFailure: null, ...patch,
    });

    it('a taken port: nginx\'s words in the message, the port holder in the hint', () => {
      const error = notAppliedError(input({}));
      expect(error.message).toBe('nginx did not apply the new config for app shop; /var/log/nginx/error.log says: '
        + '[emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use); [emerg] still could not bind()');
      expect(error.hint).toContain("ss -ltnp 'sport = :8080'");
      expect(error.hint).toContain('apps.shop.public.listenPort');
      expect(error.details).toContain('the previous config was restored and nginx reloaded again');
      expect(error.details).toContain(BIND_LOG[3]);
    });

    it('another reason: quoted, with a generic next step', () => {
      const error = notAppliedError(input({ log: { path: '/l', lines: ['2024/05/01 10:00:00 [alert] 7#7: worker process exited on signal 9'] } }));
      expect(error.message).toContain('[alert] worker process exited on signal 9');
      expect(error.hint).toContain('fix what it logged');
    });

    it('an unreadable or silent log: says so, and which setting to check', () => {
      const unreadable = notAppliedError(input({ log: { path: '/l', unreadable: 'EACCES: permission denied' } }));
      expect(unreadable.message).toContain('/l could not be read (EACCES: permission denied)');
      expect(unreadable.message).toContain('last observed: status 200');
      expect(unreadable.hint).toContain('nginx.errorLogPath');
      const silent = notAppliedError(input({ log: { path: '/l', lines: [] }, reloadAgainFailure: 'nginx: [error] kill(7, 1) failed' }));
      expect(silent.message).toContain('logged nothing serious in /l');
      expect(silent.hint).toContain('nginx.errorLogPath');
      expect(silent.details).toContain('/l: nothing logged since the reload');
      expect(silent.details).toContain('reloading the restored config failed too: nginx: [error] kill(7, 1) failed');
    });
  });
});
