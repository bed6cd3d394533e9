import { portVariable, type AppSpec, type ProcessSpec } from '../../contract/spec.js';
import type { Slot } from '../../contract/names.js';
import type { SlotProcessRow } from '../state/store.js';
import { LEGACY_PROCESS } from './legacy.js';

// Pure parts of running a spec in a slot: the PM2 name of each process, the slot's layout (what
// is recorded in SQLite when the slot starts), the env each process gets, and the $PORT tokens
// in a command's argv.

/** `<app>-<slot>-<process>`; the legacy spec's process keeps the `<app>-<slot>` it always had. */
export function pm2NameOf(app: string, slot: Slot, process: string, source: 'release' | 'legacy'): string {
  return source === 'legacy' && process === LEGACY_PROCESS ? `${app}-${slot}` : `${app}-${slot}-${process}`;
}

/** Pure: the layout of `spec` in a slot, given the ports of its listening processes. */
export function slotLayoutOf(input: {
  app: string; slot: Slot; releaseId: string; spec: AppSpec; source: 'release' | 'legacy'; ports: Record<string, number>;
}): SlotProcessRow[] {
  return Object.keys(input.spec.processes).sort().map((process) => {
    const proc = input.spec.processes[process]!;
    const port = proc.port ? input.ports[process] : undefined;
    if (proc.port && port === undefined) throw new Error(`no port assigned to listening process ${process}`);
    return {
      process, releaseId: input.releaseId, pm2Name: pm2NameOf(input.app, input.slot, process, input.source),
      port: port ?? null, instances: proc.instances, singleton: proc.singleton,
    };
  });
}

/** The PORT_<NAME> variables of a slot: one per listening process. */
export function portVariables(layout: readonly SlotProcessRow[]): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const p of layout) if (p.port !== null) vars[portVariable(p.process)] = String(p.port);
  return vars;
}

/**
 * Pure: a process's environment, later entries winning: PATH, NODE_ENV=production, the app's env
 * file, the spec's env additions, then what Slipway sets (PORT, PORT_<NAME> of every listening
 * process of the slot, SLIPWAY_APP/SLOT/RELEASE/PROCESS).
 */
export function processEnv(input: {
  app: string; slot: Slot; releaseId: string; process: string; proc: ProcessSpec; layout: readonly SlotProcessRow[];
  appEnv: Record<string, string>; path: string;
}): Record<string, string> {
  const own = input.layout.find((p) => p.process === input.process);
  return {
    PATH: input.path,
    NODE_ENV: 'production',
    ...input.appEnv,
    ...input.proc.env,
    ...(own?.port != null ? { PORT: String(own.port) } : {}),
    ...portVariables(input.layout),
    SLIPWAY_APP: input.app,
    SLIPWAY_SLOT: input.slot,
    SLIPWAY_RELEASE: input.releaseId,
    SLIPWAY_PROCESS: input.process,
  };
}

const PORT_TOKEN = /\$\{(PORT(?:_[A-Z0-9]+)?)\}|\$(PORT(?:_[A-Z0-9]+)?)(?![A-Za-z0-9_])/g;

/**
 * Pure: replaces the tokens $PORT, ${PORT}, $PORT_<NAME> and ${PORT_<NAME>} inside argv items
 * with the slot's ports (`vars`: PORT and PORT_<NAME>). Nothing else is expanded; a token naming
 * no port is left as it is.
 */
export function substitutePorts(argv: readonly string[], vars: Record<string, string>): string[] {
  return argv.map((item) => item.replace(PORT_TOKEN, (match, braced: string | undefined, bare: string | undefined) => vars[(braced ?? bare)!] ?? match));
}
