import { SlipwayError } from '../../contract/errors.js';
import { otherSlot, SLOTS, type Slot } from '../../contract/names.js';
import type { AppConfigInput, RoutedAppConfigInput } from './render-input.js';

/**
 * Pure, temporary: maps the multi-route input onto the single-route input today's template
 * renders (one server block, one upstream per slot): the first route of the render-time slot
 * (else of the other), each slot's upstream the port of that route's process. A slot without
 * that process gets `fallbackPort(slot)` (its legacy pinned port, or any port nothing listens on).
 * The template of DESIGN-12 renders RoutedAppConfigInput directly and makes this go away.
 */
export function singleRouteInput(input: RoutedAppConfigInput, fallbackPort: (slot: Slot) => number): AppConfigInput {
  const route = input.slots[input.slot].routes[0] ?? input.slots[otherSlot(input.slot)].routes[0];
  if (!route) {
    throw new SlipwayError('invalid_nginx_value', `refusing to render nginx config for app ${input.app}: no slot has a route`, {
      status: 400, hint: 'add a route to deploy.spec.json, or let the app run without nginx',
    });
  }
  const portOf = (slot: Slot) => input.slots[slot].ports[route.process] ?? fallbackPort(slot);
  const slots = Object.fromEntries(SLOTS.map((slot) => [slot, { port: portOf(slot), releaseId: input.slots[slot].releaseId }])) as AppConfigInput['slots'];
  return {
    app: input.app, slot: input.slot, slots, switchDir: input.switchDir, generation: input.generation,
    listen: { host: input.listenHost, port: route.listenPort },
    serverNames: [...route.serverNames],
    ...(route.clientMaxBodySize !== undefined ? { clientMaxBodySize: route.clientMaxBodySize } : {}),
    ...(route.readTimeoutSeconds !== undefined ? { proxyReadTimeoutSeconds: route.readTimeoutSeconds } : {}),
  };
}
