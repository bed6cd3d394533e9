// The TLS API (agent/routes/tls.ts): what `deploy tls` shows and asks for.

export interface TlsCertificateView {
  source: 'acme' | 'files';
  /** SHA-256 of the leaf certificate (hex). */
  fingerprint: string;
  names: string[];
  notBefore: string;
  notAfter: string;
  issuer: string;
  installedAt: string;
}

export interface TlsRunView {
  id: number;
  /** schedule | start | api */
  trigger: string;
  actor: string;
  /** installed: a new certificate is served; unchanged: nothing to do (no reload); skipped: nothing to certify or the app was locked; failed: see reason (nothing changed). */
  outcome: 'installed' | 'unchanged' | 'skipped' | 'failed';
  fingerprint: string | null;
  notAfter: string | null;
  reason: string | null;
  durationMs: number;
  at: string;
}

export interface TlsStatus {
  app: string;
  source: 'acme' | 'files';
  httpsPort: number;
  redirect: boolean;
  hstsMaxAgeSeconds: number | null;
  /** The certificate nginx serves, or null before the first one is installed. */
  certificate: TlsCertificateView | null;
  /** Newest first. */
  runs: TlsRunView[];
  /** When the scheduled run fires next. */
  nextRunAt: string | null;
}

/** POST /apps/:app/tls/runs */
export interface TlsRunRequestBody {
  /** A new certificate from the CA even when the installed one is fresh. */
  force?: boolean;
}

export interface TlsRunAnswer {
  run: TlsRunView;
  status: TlsStatus;
}

/** The TLS line of `deploy status` (AppStatus.tls): the certificate served and the last run. */
export interface TlsSummary {
  httpsPort: number;
  /** The certificate served (null: none yet, plain HTTP). */
  fingerprint: string | null;
  notAfter: string | null;
  names: string[];
  lastRun: { outcome: TlsRunView['outcome']; at: string; reason: string | null } | null;
}
