import path from 'node:path';
import type { AcmeSettings } from './config.js';

// certbot as commands (argv arrays, never a shell line): the agent runs `certonly` per app with
// the webroot plugin, in its own config/work/logs dirs, so the box's own certbot (its timer, its
// /etc/letsencrypt) is neither used nor disturbed. certbot decides nothing here: the agent picks
// when a certificate is due (plan.ts) and installs the result itself (service.ts), so certbot's
// renewal hooks and its `renew` subcommand are not used.

export interface CertbotDirs { config: string; work: string; logs: string }

export function certbotDirs(acme: Pick<AcmeSettings, 'dir'>): CertbotDirs {
  return { config: path.join(acme.dir, 'config'), work: path.join(acme.dir, 'work'), logs: path.join(acme.dir, 'logs') };
}

/** Where certbot leaves the lineage `certName`'s current chain and key. */
export function lineageFiles(acme: Pick<AcmeSettings, 'dir'>, certName: string): { chain: string; key: string } {
  const live = path.join(certbotDirs(acme).config, 'live', certName);
  return { chain: path.join(live, 'fullchain.pem'), key: path.join(live, 'privkey.pem') };
}

export interface CertonlyRequest {
  /** The lineage name: the app's name (one certificate per app). */
  certName: string;
  names: readonly string[];
  /** A new certificate even if certbot finds the current one far from expiry (renewal due by our rules, or forced). */
  forceRenewal: boolean;
}

/** Pure: `certbot certonly` for one app over HTTP-01 through the webroot nginx serves. */
export function certonlyArgv(acme: AcmeSettings, request: CertonlyRequest): string[] {
  const dirs = certbotDirs(acme);
  return [
    ...acme.command,
    'certonly',
    '--non-interactive', '--agree-tos',
    '--webroot', '--webroot-path', acme.webroot,
    '--cert-name', request.certName,
    ...request.names.flatMap((name) => ['-d', name]),
    '--server', acme.directoryUrl,
    '--config-dir', dirs.config, '--work-dir', dirs.work, '--logs-dir', dirs.logs,
    ...(acme.email ? ['-m', acme.email, '--no-eff-email'] : ['--register-unsafely-without-email']),
    request.forceRenewal ? '--force-renewal' : '--keep-until-expiring',
  ];
}

/** The environment of a certbot run: the ACME server's CA bundle, when one is configured. */
export function certbotEnv(acme: Pick<AcmeSettings, 'caBundle'>, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return acme.caBundle ? { ...base, REQUESTS_CA_BUNDLE: acme.caBundle } : { ...base };
}
