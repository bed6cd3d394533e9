import { checkAppSpec, type AppSpec } from '../../contract/spec.js';
import type { Slot } from '../../contract/names.js';
import type { AppConfig } from '../config.js';

// The legacy per-app fields of agent.json (start, slots, health, public, watch, requiredEnv)
// described what an app is on the box itself. They keep working: this pure translation turns them
// into the spec a release without its own deploy.spec.json runs with (the "legacy spec"), the
// host policy entries `public` implies, and the slot ports they pinned. It is computed from the
// config fields each time it is needed, so it always says what the config says.

/** The process name of the legacy spec's only process. Its PM2 name stays `<app>-<slot>`. */
export const LEGACY_PROCESS = 'web';

export interface LegacyTranslation {
  spec: AppSpec;
  /** The ports `slots.blue/green.port` pinned: the legacy process keeps them in each slot. */
  pinnedPorts: Record<Slot, Record<string, number>>;
}

/** The legacy fields an app config may still carry. */
export type LegacyFields = Pick<AppConfig, 'start' | 'slots' | 'health' | 'public' | 'watch' | 'requiredEnv'>;

/**
 * Pure: the legacy spec and pinned ports of an app configured with `start` (and so `slots` and
 * `public`), or null for an app configured by policy only (every release must carry a spec).
 * Throws only on a translation that checkAppSpec refuses, which the config schema rules out.
 */
export function translateLegacy(app: LegacyFields): LegacyTranslation | null {
  if (!app.start || !app.slots || !app.public) return null;
  const raw = {
    processes: {
      [LEGACY_PROCESS]: {
        script: app.start.script,
        args: app.start.args,
        nodeArgs: app.start.nodeArgs,
        port: true,
        ...(app.health ? { health: app.health } : {}),
      },
    },
    routes: [{ serverNames: app.public.serverNames, path: '/', process: LEGACY_PROCESS, listenPort: app.public.listenPort }],
    ...(app.watch ? { watch: app.watch } : {}),
    requiredEnv: app.requiredEnv ?? [],
  };
  const checked = checkAppSpec(raw);
  if (!checked.ok) {
    throw new Error(`the legacy fields do not translate into a spec: ${checked.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
  }
  return {
    spec: checked.spec,
    pinnedPorts: { blue: { [LEGACY_PROCESS]: app.slots.blue.port }, green: { [LEGACY_PROCESS]: app.slots.green.port } },
  };
}

/**
 * Pure: one line per legacy field an app config uses, saying where it belongs now (logged once
 * when the agent starts). Empty for an app that uses none.
 */
export function legacyMoves(appName: string, raw: Record<string, unknown>): string[] {
  const at = (field: string) => `apps.${appName}.${field}`;
  const moves: string[] = [];
  if (raw.start !== undefined) moves.push(`${at('start')} → deploy.spec.json processes.${LEGACY_PROCESS} (script, args, nodeArgs)`);
  if (raw.slots !== undefined) moves.push(`${at('slots')} → drop it: slot ports are assigned from the top-level "ports" range (the pinned ones are kept until then)`);
  if (raw.health !== undefined) moves.push(`${at('health')} → deploy.spec.json processes.${LEGACY_PROCESS}.health`);
  if (raw.public !== undefined) {
    moves.push(`${at('public')} → deploy.spec.json routes[0] (serverNames, listenPort) and, in agent.json, ${at('listen')} { host, ports } and ${at('serverNames')} (what the app may claim)`);
  }
  if (raw.watch !== undefined) moves.push(`${at('watch')} → deploy.spec.json watch`);
  if (raw.requiredEnv !== undefined) moves.push(`${at('requiredEnv')} → deploy.spec.json requiredEnv`);
  return moves;
}
