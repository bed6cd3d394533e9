import { SlipwayError } from '../contract/errors.js';

/**
 * The name of an app configured on this host, or a 404 naming the ones that are. Every
 * configured app has its rows from the agent's start on (startAgent), and the config cannot
 * change under a running agent, so this reads the config only.
 */
export function requireApp(apps: Readonly<Record<string, unknown>>, name: string): string {
  if (!Object.hasOwn(apps, name)) {
    throw new SlipwayError('app_not_found', `app ${name} is not configured on this host`, {
      status: 404, hint: `configured apps: ${Object.keys(apps).join(', ') || 'none'}`,
    });
  }
  return name;
}
