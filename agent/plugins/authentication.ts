import { ACTOR_HEADER, ACTOR_PATTERN } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { tokenMatches } from '../auth.js';
import { appWide } from './app-wide.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who asked: the actor header of a caller that proved the token, else UNAUTHENTICATED. */
    actor: string;
  }
  interface FastifyContextConfig {
    /** Answers without a token (GET /health only). */
    public?: boolean;
  }
}

export const UNAUTHENTICATED = 'unauthenticated';
/** The actor of an authenticated caller that did not say (or said something malformed). */
export const UNKNOWN_ACTOR = 'unknown@api';

const actorPattern = new RegExp(ACTOR_PATTERN);

/** The actor header is the caller's claim, only worth taking once the token was right. */
export function claimedActor(header: string | string[] | undefined): string {
  return typeof header === 'string' && actorPattern.test(header) ? header : UNKNOWN_ACTOR;
}

/**
 * Every route but the public ones needs the bearer token; it is checked before the body is read,
 * and the request then carries its actor for the handler and the audit row.
 */
export const authentication = appWide('slipway-authentication', async (app, options: { token: string }) => {
  app.decorateRequest('actor', UNAUTHENTICATED);
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public === true) return;
    if (!tokenMatches(options.token, request.headers.authorization)) {
      throw new SlipwayError('unauthorized', 'missing or wrong bearer token', {
        status: 401, hint: 'the controller reads the token over SSH from the agent\'s api.tokenFile',
      });
    }
    request.actor = claimedActor(request.headers[ACTOR_HEADER]);
  });
});
