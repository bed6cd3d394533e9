// Which requests the agent answers at all, judged before anything else: the Host they are
// addressed to and whether a browser page sent them. The agent listens on loopback, but a web
// page the operator opens can still reach loopback (DNS rebinding: a name that resolves to
// 127.0.0.1); the page's request names the page's host, or carries an Origin. Defence in depth
// behind the bearer token.
import { AGENT_HOST } from '../../contract/api.js';
import { SlipwayError } from '../../contract/errors.js';
import { appWide } from './app-wide.js';

/** The loopback names the agent answers to, and the fixed name the controller sends. */
export const HOST_NAMES: readonly string[] = ['127.0.0.1', 'localhost', '[::1]', AGENT_HOST];

/**
 * Origins whose pages may call the agent. The agent serves no page yet, so none: a request that
 * carries an Origin comes from a browser. The agent's own page, when it has one, goes here.
 */
export const ALLOWED_ORIGINS: readonly string[] = [];

const MAX_ECHO = 100;
const echo = (value: string) => JSON.stringify(value.length > MAX_ECHO ? `${value.slice(0, MAX_ECHO)}…` : value);

/** A Host header naming the agent: one of HOST_NAMES, with the port the request arrived on or none. */
export function hostAllowed(host: string | undefined, port: number | undefined): boolean {
  if (host === undefined) return false;
  const name = host.toLowerCase();
  return HOST_NAMES.some((allowed) => name === allowed || (port !== undefined && name === `${allowed}:${port}`));
}

export function originAllowed(origin: string | undefined): boolean {
  return origin === undefined || ALLOWED_ORIGINS.includes(origin);
}

/** Throws the refusal for a request not addressed to the agent, or sent by a web page. */
export function checkAddressing(headers: { host?: string | undefined; origin?: string | undefined }, port: number | undefined): void {
  if (!hostAllowed(headers.host, port)) {
    const named = headers.host === undefined ? 'no Host' : `Host ${echo(headers.host)}`;
    const names = `${HOST_NAMES.slice(0, -1).join(', ')} or ${HOST_NAMES.at(-1)!}${port === undefined ? '' : ` (with port ${port} or none)`}`;
    throw new SlipwayError('host_not_allowed', `the agent answers only requests addressed to ${names}; this one names ${named}`, {
      status: 421,
      hint: `call the agent through the deploy CLI (it sends Host: ${AGENT_HOST}) or at http://127.0.0.1:<port>; a request naming another host is a web page or a proxy reaching the agent, and is refused`,
    });
  }
  if (!originAllowed(headers.origin)) {
    throw new SlipwayError('origin_not_allowed', `the agent refuses requests sent by web pages; this one carries Origin ${echo(headers.origin ?? '')}`, {
      status: 403, hint: 'call the agent API from the deploy CLI or a script on the host, which send no Origin header',
    });
  }
}

/** Refuses, first of all hooks, every request not addressed to the agent (/health included). */
export const hostGuard = appWide('slipway-host-guard', async (app) => {
  app.addHook('onRequest', async (request) => {
    checkAddressing({ host: request.headers.host, origin: request.headers.origin }, request.socket.localPort);
  });
});
