import type { AgentConfig } from '../config.js';
import type { Slot } from '../../contract/names.js';

/** Where nginx serves the app on this box, for probes through nginx. */
export function publicUrlOf(config: AgentConfig, app: string): string {
  const pub = config.apps[app]!.public;
  const host = pub.listenHost === '*' || pub.listenHost === '0.0.0.0' ? '127.0.0.1' : pub.listenHost;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${pub.listenPort}`;
}

/** The Host header that makes nginx pick the app's server block when probing through it. */
export function probeHostOf(config: AgentConfig, app: string): string {
  const name = config.apps[app]!.public.serverNames[0] ?? '_';
  if (name === '_') return 'localhost';
  return name.startsWith('*') ? `probe${name.slice(1)}` : name;
}

/** The health URL of a slot's own port, bypassing nginx. */
export function slotHealthUrlOf(config: AgentConfig, app: string, slot: Slot): string {
  const appConfig = config.apps[app]!;
  return `http://127.0.0.1:${appConfig.slots[slot].port}${appConfig.health.path}`;
}
