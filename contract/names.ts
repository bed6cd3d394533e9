// Names that end up in paths, PM2 process names and nginx config. Anything outside these
// patterns is refused at every boundary (API, config, manifest), so no later step needs quoting.

export const SLOTS = ['blue', 'green'] as const;
export type Slot = (typeof SLOTS)[number];

export const APP_NAME_PATTERN = '^[a-z][a-z0-9-]{0,39}$';
/** The marker nginx serves for a slot that has no release yet. */
export const NO_RELEASE = 'none';
/**
 * The id of every new release: `<first 12 hex of the commit sha>-<first 12 hex of its content
 * digest>` (contract/release-content.ts), so one commit with other files is another release.
 */
export const CONTENT_RELEASE_ID_PATTERN = '^[0-9a-f]{12}-[0-9a-f]{12}$';
/**
 * Any release id a box may hold: a content id, or the full commit SHA (with `-dirty-<12 hex>` for
 * a dirty work tree) that named releases published before content ids. Those stay valid names
 * (switch, rollback, nginx, history) on a box that has them; an upload must use a content id.
 */
export const RELEASE_ID_PATTERN = '^([0-9a-f]{12}-[0-9a-f]{12}|[0-9a-f]{40}(-dirty-[0-9a-f]{12})?)$';
export const SHA256_PATTERN = '^[0-9a-f]{64}$';
/**
 * nginx server_name values: hostnames, a leading wildcard on a dot border ("*.example.com"; nginx
 * refuses "*example.com"), or "_" ; never whitespace, ';', '{', '}'.
 */
export const SERVER_NAME_PATTERN = '^(_|(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$';

export function isSlot(value: unknown): value is Slot {
  return value === 'blue' || value === 'green';
}

export function otherSlot(slot: Slot): Slot {
  return slot === 'blue' ? 'green' : 'blue';
}

export function isAppName(value: unknown): value is string {
  return typeof value === 'string' && new RegExp(APP_NAME_PATTERN).test(value);
}

export function isReleaseId(value: unknown): value is string {
  return typeof value === 'string' && new RegExp(RELEASE_ID_PATTERN).test(value);
}

export function isContentReleaseId(value: string): boolean {
  return new RegExp(CONTENT_RELEASE_ID_PATTERN).test(value);
}

/**
 * A release id as shown to people: a content id whole (its commit and content prefixes, so two
 * releases of one commit stay apart), an older commit-SHA id cut to 12 characters.
 */
export function shortSha(releaseId: string): string {
  return isContentReleaseId(releaseId) ? releaseId : releaseId.slice(0, 12);
}

/** The PM2 process name of an app's slot, e.g. "shop-green". */
export function pm2ProcessName(app: string, slot: Slot): string {
  return `${app}-${slot}`;
}
