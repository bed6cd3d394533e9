/**
 * The agent config's `nginx` section (agent/config.ts validates it and fills every default). The
 * section reaches the nginx controller and the renderer as a whole, so a field added here cannot
 * be forgotten on the way.
 */
export interface NginxSettings {
  /** How nginx is invoked, e.g. ['nginx'] or ['nginx', '-p', prefix, '-c', conf]. */
  command: readonly string[];
  testArgs: readonly string[];
  reloadArgs: readonly string[];
  /** The master's pid file (the "pid" directive of nginx.conf). */
  pidFile: string;
  /** Directory nginx includes from its http{} block as <includeDir>/*.conf; rendered <app>.conf files go here. */
  includeDir: string;
  /** Directory of nunjucks templates; default the package's nginx/ directory. */
  templateDir: string;
  /**
   * Root of the switch flags nginx reads per request (agent/nginx/slot-switch.ts); nginx's worker
   * user must be able to search every directory on the path. Default: "<includeDir>-switch".
   */
  switchDir: string;
  /** Deadline for each nginx command. */
  timeoutMs: number;
  /** How long to wait for the new config's markers to be served after a reload. */
  proveTimeoutMs: number;
  /**
   * nginx's error log (the "error_log" directive of nginx.conf): when a reload is not applied, the
   * lines nginx wrote there since the reload are its only account of why.
   */
  errorLogPath: string;
}

// Absolute, plain characters only, no "." or ".." segments: the path is written into an `if (-f …)`.
export const SWITCH_DIR_PATTERN = '^(/(?!\\.{1,2}(/|$))[A-Za-z0-9._-]+)+$';

/** Defaults for a distribution nginx (Debian, Ubuntu, Fedora: /var/log/nginx/error.log). */
export const NGINX_DEFAULTS = {
  command: ['nginx'],
  testArgs: ['-t'],
  reloadArgs: ['-s', 'reload'],
  timeoutMs: 10_000,
  proveTimeoutMs: 5_000,
  errorLogPath: '/var/log/nginx/error.log',
} as const satisfies Partial<NginxSettings>;
