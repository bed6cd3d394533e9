import { describe, expect, it } from 'vitest';
import { evaluatePointer, jsonEquals, parsePointer } from '../../agent/rollout/json-pointer.js';
import { judgeSmoke, probeName, smokeHost, smokeUrl } from '../../agent/rollout/smoke.js';
import type { SmokeCheck } from '../../contract/spec.js';

describe('JSON pointer (RFC 6901)', () => {
  // The example document and pointers of RFC 6901 section 5.
  const doc = { foo: ['bar', 'baz'], '': 0, 'a/b': 1, 'c%d': 2, 'e^f': 3, 'g|h': 4, 'i\\j': 5, 'k"l': 6, ' ': 7, 'm~n': 8 };

  it('evaluates the RFC examples', () => {
    const cases: [string, unknown][] = [
      ['', doc], ['/foo', ['bar', 'baz']], ['/foo/0', 'bar'], ['/', 0], ['/a~1b', 1], ['/c%d', 2], ['/e^f', 3],
      ['/g|h', 4], ['/i\\j', 5], ['/k"l', 6], ['/ ', 7], ['/m~0n', 8],
    ];
    for (const [pointer, value] of cases) expect(evaluatePointer(doc, pointer), pointer).toEqual({ found: true, value });
  });

  it('unescapes ~1 before ~0', () => {
    expect(parsePointer('/~01')).toEqual(['~1']);
    expect(evaluatePointer({ '~1': 'x', '/': 'y' }, '/~01')).toEqual({ found: true, value: 'x' });
  });

  it('says why a pointer finds nothing', () => {
    expect(evaluatePointer(doc, 'foo')).toMatchObject({ found: false, reason: expect.stringContaining('not a JSON pointer') });
    expect(evaluatePointer(doc, '/foo/2')).toMatchObject({ found: false, reason: '/foo has 2 element(s), no index 2' });
    expect(evaluatePointer(doc, '/foo/-')).toMatchObject({ found: false });
    expect(evaluatePointer(doc, '/foo/01')).toMatchObject({ found: false, reason: expect.stringContaining('not an index') });
    expect(evaluatePointer(doc, '/nope')).toMatchObject({ found: false, reason: '(root) has no member "nope"' });
    expect(evaluatePointer(doc, '/foo/0/x')).toMatchObject({ found: false, reason: '/foo/0 is string, not an object or array' });
    expect(evaluatePointer({ a: null }, '/a/b')).toMatchObject({ found: false, reason: '/a is null, not an object or array' });
    expect(evaluatePointer({}, '/toString')).toMatchObject({ found: false });
  });

  it('compares JSON values deeply, member order aside', () => {
    expect(jsonEquals({ a: [1, { b: null }], c: 'x' }, { c: 'x', a: [1, { b: null }] })).toBe(true);
    expect(jsonEquals([1, 2], [2, 1])).toBe(false);
    expect(jsonEquals({ a: 1 }, { a: 1, b: undefined })).toBe(false);
    expect(jsonEquals(1, '1')).toBe(false);
    expect(jsonEquals(null, {})).toBe(false);
  });
});

describe('smoke checks', () => {
  const check = (over: Partial<SmokeCheck> = {}): SmokeCheck => ({ name: 'home', method: 'GET', path: '/', expectStatus: 200, timeoutMs: 1000, ...over });
  const spec = { routes: [{ serverNames: ['shop.test', 'www.shop.test'], path: '/', process: 'web', websocket: true }] };

  it('sends Host: the check\'s own, else the first server name of the first route', () => {
    expect(smokeHost(spec, {})).toBe('shop.test');
    expect(smokeHost(spec, { host: 'api.shop.test' })).toBe('api.shop.test');
    expect(smokeHost({ routes: [] }, {})).toBe('localhost');
    expect(probeName('*.shop.test')).toBe('smoke.shop.test');
    expect(probeName('_')).toBe('localhost');
  });

  it('goes to the public address, on the first route\'s listen port when it has one', () => {
    expect(smokeUrl('http://127.0.0.1:8080', spec, { path: '/api/health?x=1' })).toBe('http://127.0.0.1:8080/api/health?x=1');
    expect(smokeUrl('http://127.0.0.1:8080', { routes: [{ ...spec.routes[0]!, listenPort: 9090 }] }, { path: '/' })).toBe('http://127.0.0.1:9090/');
  });

  it('passes on the expected status, body and JSON value', () => {
    expect(judgeSmoke(check({ bodyContains: 'hello' }), { status: 200, body: 'oh hello' })).toEqual({ name: 'smoke', ok: true, detail: 'smoke "home" ok' });
    expect(judgeSmoke(check({ json: { pointer: '/db/ok', equals: true } }), { status: 200, body: '{"db":{"ok":true}}' }).ok).toBe(true);
    expect(judgeSmoke(check({ expectStatus: 404 }), { status: 404, body: '' }).ok).toBe(true);
  });

  it('names the check and what it saw when it fails, with at most 200 bytes of the body', () => {
    const long = 'x'.repeat(500);
    const failed = judgeSmoke(check(), { status: 500, body: long });
    expect(failed.ok).toBe(false);
    expect(failed.detail).toBe(`smoke "home" (GET /): expected HTTP 200, saw HTTP 500, body "${'x'.repeat(200)}…"`);
    expect(judgeSmoke(check({ bodyContains: 'hello' }), { status: 200, body: 'bye' }).detail).toBe('smoke "home" (GET /): body does not contain "hello"; saw HTTP 200, body "bye"');
    expect(judgeSmoke(check({ json: { pointer: '/v', equals: 2 } }), { status: 200, body: '{"v":1}' }).detail)
      .toBe('smoke "home" (GET /): JSON pointer "/v" is 1, expected 2; saw HTTP 200, body "{\\"v\\":1}"');
    expect(judgeSmoke(check({ json: { pointer: '/v', equals: 2 } }), { status: 200, body: '<html>' }).detail).toContain('body is not JSON');
    expect(judgeSmoke(check({ json: { pointer: '/w', equals: 2 } }), { status: 200, body: '{}' }).detail).toContain('(root) has no member "w"');
    expect(judgeSmoke(check(), { error: 'connect ECONNREFUSED' }).detail).toBe('smoke "home" (GET /): no answer: connect ECONNREFUSED');
  });
});
