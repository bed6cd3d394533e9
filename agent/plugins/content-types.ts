// What request bodies the API reads: JSON in UTF-8, and nothing else unless a route context says
// so (the release upload takes gzip bytes). Anything else is refused with 415 before a byte of it
// is parsed, so a handler never sees a stream, a string or bytes in another charset as its body.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SlipwayError } from '../../contract/errors.js';
import { appWide } from './app-wide.js';

export const JSON_TYPE = 'application/json';
const MAX_ECHO = 80;

/** The media type of a Content-Type header, lowercased, without its parameters. */
export function mediaTypeOf(contentType: string | undefined): string | null {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  return type ? type : null;
}

/** The charset parameter of a Content-Type header, lowercased and unquoted; null when there is none. */
export function charsetOf(contentType: string | undefined): string | null {
  const param = (contentType ?? '').split(';').slice(1).map((p) => p.trim().toLowerCase()).find((p) => p.startsWith('charset='));
  return param === undefined ? null : param.slice('charset='.length).replace(/^"(.*)"$/, '$1');
}

/** JSON is read as UTF-8 (RFC 8259 §8.1): a body declared in another charset would be misread. */
export function isUtf8(contentType: string | undefined): boolean {
  const charset = charsetOf(contentType);
  return charset === null || charset === 'utf-8' || charset === 'utf8';
}

const routeOf = (request: FastifyRequest) => `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`;

function unsupported(request: FastifyRequest, accepted: readonly string[], what: string): SlipwayError {
  return new SlipwayError('unsupported_media_type', `${routeOf(request)} takes ${accepted.join(' or ')} bodies, not ${what}`, {
    status: 415, hint: `send the body as ${accepted[0]!}${accepted[0] === JSON_TYPE ? ' (UTF-8)' : ''}`,
  });
}

const clip = (text: string) => (text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO)}…` : text);

function described(contentType: string | undefined): string {
  const type = mediaTypeOf(contentType);
  return type === null ? 'a body without a Content-Type' : clip(type);
}

/**
 * Makes `accepted` the only body types of `app`'s context: every other one is refused with 415
 * naming them. Call on a fresh context (a route plugin's) after adding its parsers.
 */
export function refuseOtherMediaTypes(app: FastifyInstance, accepted: readonly string[]): void {
  app.addContentTypeParser('*', (request, _payload, done) => {
    done(unsupported(request, accepted, described(request.headers['content-type'])), undefined);
  });
}

/** JSON bodies (UTF-8 only) for every route; the framework's text/plain parser is gone. */
export const contentTypes = appWide('slipway-content-types', async (app) => {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPE, { parseAs: 'string' }, (request, body, done) => {
    const contentType = request.headers['content-type'];
    if (!isUtf8(contentType)) {
      // The charset is not echoed: a Content-Type's parameters are whatever the caller put there.
      done(unsupported(request, [JSON_TYPE], `${JSON_TYPE} in a charset other than UTF-8`), undefined);
      return;
    }
    parseJson(request, typeof body === 'string' ? body : body.toString('utf8'), (error: Error | null, value?: unknown) => {
      // The framework's own messages say no more than this, and the body is never echoed.
      if (error) done(new SlipwayError('invalid_json', 'body is not valid JSON', { status: 400, hint: 'send a JSON object' }), undefined);
      else done(null, value);
    });
  });
  refuseOtherMediaTypes(app, [JSON_TYPE]);
  // A coded body (gzip, deflate) would be read as if it were plain: refused rather than misread.
  app.addHook('preParsing', async (request) => {
    const coding = request.headers['content-encoding']?.trim().toLowerCase();
    if (coding !== undefined && coding !== '' && coding !== 'identity') {
      throw new SlipwayError('unsupported_media_type', `${routeOf(request)}: a body with Content-Encoding ${JSON.stringify(clip(coding))} is not accepted`, {
        status: 415, hint: 'send the body as it is, without a Content-Encoding header',
      });
    }
  });
});
