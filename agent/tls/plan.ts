import type { RouteInput } from '../nginx/render-input.js';
import { uncoveredNames } from './certificate.js';

/**
 * Pure: the names a certificate for the app must cover: every exact server name of the live
 * release's routes on the port HTTPS mirrors, lower-cased and sorted. "_" names no host, and a
 * wildcard cannot be proven over HTTP-01 (ACME wants DNS-01 for it): both are listed apart, so
 * the run can say why they are not on an ACME certificate.
 */
export function certificateNames(routes: readonly RouteInput[], httpPort: number): { names: string[]; uncertifiable: string[] } {
  const names = new Set<string>();
  const uncertifiable = new Set<string>();
  for (const route of routes) {
    if (route.listenPort !== httpPort) continue;
    for (const name of route.serverNames) {
      const lower = name.toLowerCase();
      if (lower === '_' || lower.startsWith('*.')) uncertifiable.add(lower);
      else names.add(lower);
    }
  }
  return { names: [...names].sort(), uncertifiable: [...uncertifiable].sort() };
}

export interface AcmePlanInput {
  installed: { names: readonly string[]; notAfter: string } | null;
  wanted: readonly string[];
  now: Date;
  renewBeforeDays: number;
  /** Asked for by hand (deploy tls --renew --force): a new certificate whatever the installed one says. */
  force: boolean;
}

export type AcmePlan =
  | { obtain: false; reason: string }
  | { obtain: true; forceRenewal: boolean; reason: string };

const DAY_MS = 86_400_000;

/** Pure: whether the CA must be asked for a certificate now, and why. */
export function planAcme({ installed, wanted, now, renewBeforeDays, force }: AcmePlanInput): AcmePlan {
  // certbot keeps a lineage it still finds fresh unless told otherwise: a first issuance or new
  // names need no force (certbot issues for a changed name list), a due renewal does.
  if (force) return { obtain: true, forceRenewal: true, reason: 'renewal forced' };
  if (!installed) return { obtain: true, forceRenewal: false, reason: 'no certificate installed yet' };
  const missing = uncoveredNames(installed.names, wanted);
  if (missing.length > 0) return { obtain: true, forceRenewal: false, reason: `the installed certificate does not cover ${missing.join(', ')}` };
  const left = Date.parse(installed.notAfter) - now.getTime();
  if (left <= renewBeforeDays * DAY_MS) {
    return { obtain: true, forceRenewal: true, reason: `the installed certificate expires ${installed.notAfter} (within ${renewBeforeDays} days)` };
  }
  return { obtain: false, reason: `the installed certificate covers every name and is valid until ${installed.notAfter}` };
}
