// agent.json's TLS settings: per app `apps.<app>.tls` (where the certificate comes from and how
// HTTPS is served) and the top-level `acme` section (the ACME account and client shared by every
// app of the box). They live in the host policy, not in the release's spec: the private key, the
// ACME account and which CA to trust are the box owner's, a staging box without public DNS cannot
// get a certificate for production's names, and the same artifact is promoted across both. The
// names a certificate covers come from the spec's routes (already held to the policy's
// serverNames), so a release that adds a name gets it on the next certificate run.

/** Absolute, plain characters only: the paths are written into nginx config (see SWITCH_DIR_PATTERN). */
export const TLS_PATH_PATTERN = '^(/(?!\\.{1,2}(/|$))[A-Za-z0-9._-]+)+$';

export interface HstsPolicy {
  maxAgeSeconds: number;
  includeSubDomains: boolean;
}

export interface AppTlsPolicy {
  /** "acme": certbot obtains and renews the certificate; "files": the box owner's certificate and key. */
  source: 'acme' | 'files';
  /** PEM certificate chain (leaf first) and its key, for source "files". */
  certificate?: string;
  key?: string;
  /** The port nginx serves HTTPS on (default 443). */
  httpsPort: number;
  /** Answer plain HTTP with a 301 to HTTPS once a certificate is installed (ACME challenges excepted). */
  redirect: boolean;
  /** Strict-Transport-Security on HTTPS answers; absent: none. */
  hsts?: HstsPolicy;
}

export interface AcmeSettings {
  /** The ACME directory (default Let's Encrypt's production one). */
  directoryUrl: string;
  /** The account's contact; without one the account is registered without an email. */
  email?: string;
  /** A CA bundle certbot trusts for the ACME server's own HTTPS (a private CA, pebble in tests). */
  caBundle?: string;
  /** How certbot is invoked. */
  command: string[];
  /** certbot's config, work and logs dirs live here (default <home>/acme). */
  dir: string;
  /** Served at /.well-known/acme-challenge/ of every app with ACME; nginx's workers must be able to read it (default "<includeDir>-acme"). */
  webroot: string;
  /** When certificates are checked and renewed (cron, default twice a day like certbot's own timer). */
  schedule: string;
  /** Renew when the installed certificate expires within this many days. */
  renewBeforeDays: number;
  /** Deadline of one certbot run. */
  timeoutMs: number;
}

export const ACME_DEFAULTS = {
  directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
  command: ['certbot'],
  schedule: '41 3,15 * * *',
  renewBeforeDays: 30,
  timeoutMs: 300_000,
} as const;

const tlsPath = { type: 'string', pattern: TLS_PATH_PATTERN } as const;

export const appTlsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['source'],
  properties: {
    source: { enum: ['acme', 'files'] },
    certificate: tlsPath,
    key: tlsPath,
    httpsPort: { type: 'integer', minimum: 1, maximum: 65535, default: 443 },
    redirect: { type: 'boolean', default: true },
    hsts: {
      type: 'object',
      additionalProperties: false,
      required: ['maxAgeSeconds'],
      properties: {
        maxAgeSeconds: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 },
        includeSubDomains: { type: 'boolean', default: false },
      },
    },
  },
} as const;

export const acmeSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    directoryUrl: { type: 'string', pattern: '^https://[^\\s]+$', default: ACME_DEFAULTS.directoryUrl },
    email: { type: 'string', pattern: '^[^\\s@]+@[^\\s@]+$' },
    caBundle: { type: 'string', pattern: '^/[^\\u0000]*$' },
    command: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, pattern: '^[^\\u0000]*$' }, default: ACME_DEFAULTS.command },
    dir: { type: 'string', pattern: '^/[^\\u0000]*$' },
    webroot: tlsPath,
    schedule: { type: 'string', minLength: 9, default: ACME_DEFAULTS.schedule },
    renewBeforeDays: { type: 'integer', minimum: 1, maximum: 89, default: ACME_DEFAULTS.renewBeforeDays },
    timeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: ACME_DEFAULTS.timeoutMs },
  },
} as const;

/** Pure: what the schemas cannot say about one app's TLS policy. */
export function appTlsProblems(app: string, tls: AppTlsPolicy, context: { acme: boolean; httpPorts: readonly number[] }): string[] {
  const at = `apps/${app}/tls`;
  const problems: string[] = [];
  if (tls.source === 'files') {
    if (tls.certificate === undefined || tls.key === undefined) problems.push(`${at}: source "files" needs both "certificate" and "key" (absolute paths of PEM files)`);
  } else {
    if (tls.certificate !== undefined || tls.key !== undefined) problems.push(`${at}: "certificate" and "key" are for source "files"; with "acme" certbot provides them`);
    if (!context.acme) problems.push(`${at}: source "acme" needs the top-level "acme" section (at least {}; directoryUrl, email)`);
  }
  if (context.httpPorts.length === 0) problems.push(`${at}: needs apps.${app}.listen.ports (HTTPS mirrors the routes on its first port)`);
  if (context.httpPorts.includes(tls.httpsPort)) problems.push(`${at}/httpsPort: ${tls.httpsPort} is also an HTTP listen port of the app`);
  return problems;
}
