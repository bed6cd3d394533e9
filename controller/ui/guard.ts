// Who may use the page `deploy ui` serves, judged before any route runs. The page holds no token:
// the local server adds it on the way to the agent, so anyone who can make the server act acts
// with the operator's rights. Four checks, each for a way in:
// - Host: the page answers only requests addressed to the address it is bound to (127.0.0.1 or
//   localhost with its port). A web page that rebinds its own name to 127.0.0.1 (DNS rebinding)
//   sends its own name as Host and is refused, so it can neither read the page nor its answers.
// - Session: every /api request needs the per-run session cookie, set when the URL deploy ui
//   printed (with its ?key=) is opened. Other local users and other programs on the machine
//   reach 127.0.0.1 too; without the key they get nothing.
// - Origin: an action (every method but GET/HEAD) must come from a page of this very origin.
//   Cookies are shared between ports of one host, and SameSite counts 127.0.0.1:3000 as the same
//   site as 127.0.0.1:<ours>: SameSite=Strict keeps other sites' pages out, Origin the rest.
// - CSRF token: actions also carry a second per-run secret in a header, which only a page that
//   could read /api/session (same origin, with the session cookie) knows.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { SlipwayError } from '../../contract/errors.js';

/** The header an action carries the CSRF token in. */
export const CSRF_HEADER = 'x-slipway-csrf';
/** The query parameter of the printed URL that opens a session. */
export const KEY_PARAM = 'key';
/** The names the page answers to; the URL printed uses the first. */
export const PAGE_HOSTS = ['127.0.0.1', 'localhost'] as const;

export interface PageSecrets {
  /** In the printed URL, then in the session cookie (HttpOnly: no script reads it). */
  sessionKey: string;
  /** Given to the page by GET /api/session; actions send it back in CSRF_HEADER. */
  csrfToken: string;
}

export function newSecrets(): PageSecrets {
  return { sessionKey: randomBytes(32).toString('base64url'), csrfToken: randomBytes(32).toString('base64url') };
}

/** Cookies are not kept apart by port: two `deploy ui` runs on one machine need names of their own. */
export function sessionCookieName(port: number): string {
  return `slipway_ui_${port}`;
}

/** The Set-Cookie value of a session: for this page only, never sent along by another site's page or read by a script. */
export function sessionCookie(port: number, key: string): string {
  return `${sessionCookieName(port)}=${key}; Path=/; HttpOnly; SameSite=Strict`;
}

/** Pure: the value of one cookie of a Cookie header (the first of that name), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** Constant-time comparison of a secret with what a request presented (hashed first: any length, no throw). */
export function secretMatches(expected: string, presented: string | undefined): boolean {
  return presented !== undefined && presented.length > 0 && timingSafeEqual(digest(expected), digest(presented));
}

const MAX_ECHO = 100;
const echo = (value: string) => JSON.stringify(value.length > MAX_ECHO ? `${value.slice(0, MAX_ECHO)}…` : value);

/** The Host values the page answers to on `port`. */
export function pageHosts(port: number): string[] {
  return PAGE_HOSTS.map((name) => `${name}:${port}`);
}

export interface RequestFacts {
  method: string;
  /** The path without the query. */
  path: string;
  host: string | undefined;
  origin: string | undefined;
  cookie: string | undefined;
  csrf: string | undefined;
  /** The port the request arrived on: the page's own. */
  port: number;
}

/** Pure: throws the refusal for a request the page must not answer; returns for one it may. */
export function checkRequest(facts: RequestFacts, secrets: PageSecrets): void {
  const hosts = pageHosts(facts.port);
  const host = facts.host?.toLowerCase();
  if (host === undefined || !hosts.includes(host)) {
    throw new SlipwayError('host_not_allowed', `this page answers only requests addressed to ${hosts.join(' or ')}; this one names ${facts.host === undefined ? 'no Host' : `Host ${echo(facts.host)}`}`, {
      status: 421, hint: `open the URL deploy ui printed (http://${hosts[0]}/…); a request naming another host is another site reaching this page, and is refused`,
    });
  }
  const action = facts.method !== 'GET' && facts.method !== 'HEAD';
  if (action && facts.origin !== `http://${host}`) {
    throw new SlipwayError('origin_not_allowed', `actions are taken only from this page (Origin http://${host}); this request carries ${facts.origin === undefined ? 'no Origin' : `Origin ${echo(facts.origin)}`}`, {
      status: 403, hint: 'use the buttons of the page deploy ui printed the URL of',
    });
  }
  if (!facts.path.startsWith('/api/')) return;
  if (!secretMatches(secrets.sessionKey, cookieValue(facts.cookie, sessionCookieName(facts.port)))) {
    throw new SlipwayError('ui_session_required', 'no session of this page: open the URL deploy ui printed (with its ?key=)', {
      status: 401, hint: 'the key changes with every run of deploy ui: use the URL of the run that serves this port',
    });
  }
  if (action && !secretMatches(secrets.csrfToken, facts.csrf)) {
    throw new SlipwayError('csrf_token_invalid', `the action carries ${facts.csrf === undefined ? 'no' : 'a wrong'} ${CSRF_HEADER} token`, {
      status: 403, hint: 'reload the page (the token changes with every run of deploy ui) and try again',
    });
  }
}
