import { SlipwayError } from '../../contract/errors.js';
import type { Slot } from '../../contract/names.js';

// Slot ports come from the host's range (agent.json "ports"). An assignment is sticky per
// (app, slot, process): the same process in the same slot keeps its port across releases, so an
// app's nginx include does not change with every push. Pure: the caller loads and stores the
// assignments (SQLite, agent/state/store.ts).

export interface PortKey { app: string; slot: Slot; process: string }
export interface PortAssignment extends PortKey { port: number }
export interface PortRange { from: number; to: number }

export interface AssignPortsInput {
  range: PortRange;
  /** Every assignment on record, all apps. */
  existing: readonly PortAssignment[];
  /** Ports pinned by legacy config (apps.<app>.slots.<slot>.port), all apps; they win. */
  pinned: readonly PortAssignment[];
  /** Ports nothing may be assigned (nginx listen ports, the agent's API). */
  reserved?: readonly number[];
  /** The processes of one slot that need a port, in the order ports are handed out. */
  wanted: readonly PortKey[];
}

export interface AssignPortsResult {
  /** One per wanted process, in order. */
  ports: PortAssignment[];
  /** Assignments not on record yet (to store). */
  added: PortAssignment[];
}

const keyOf = (k: PortKey) => `${k.app}/${k.slot}/${k.process}`;

/**
 * Pure: ports for `wanted`. A pinned port is used as pinned; an assignment on record is kept
 * unless a pinned port of someone else now claims it; otherwise the lowest free port of the
 * range. A port never goes to two (app, slot, process) keys. Throws `ports_exhausted`, naming the
 * setting, when the range has no free port left.
 */
export function assignPorts(input: AssignPortsInput): AssignPortsResult {
  const owner = new Map<number, string>();
  const pinnedOf = new Map<string, number>();
  for (const p of input.pinned) {
    owner.set(p.port, keyOf(p));
    pinnedOf.set(keyOf(p), p.port);
  }
  for (const port of input.reserved ?? []) if (!owner.has(port)) owner.set(port, '(reserved)');
  const recorded = new Map<string, number>();
  for (const a of input.existing) {
    const key = keyOf(a);
    if (pinnedOf.has(key)) continue;
    const holder = owner.get(a.port);
    if (holder !== undefined && holder !== key) continue;
    owner.set(a.port, key);
    recorded.set(key, a.port);
  }
  const ports: PortAssignment[] = [];
  const added: PortAssignment[] = [];
  let next = input.range.from;
  for (const want of input.wanted) {
    const key = keyOf(want);
    const fixed = pinnedOf.get(key) ?? recorded.get(key);
    if (fixed !== undefined) {
      ports.push({ ...want, port: fixed });
      continue;
    }
    while (next <= input.range.to && owner.has(next)) next++;
    if (next > input.range.to) {
      const { from, to } = input.range;
      throw new SlipwayError('ports_exhausted', `no free port left for ${key} in the slot port range ${from}-${to}`, {
        status: 409,
        details: [`agent.json ports: { "from": ${from}, "to": ${to} } holds ${to - from + 1} ports, all assigned or reserved`],
        hint: 'widen the range in agent.json "ports" (and restart the agent)',
      });
    }
    owner.set(next, key);
    const assignment = { ...want, port: next };
    ports.push(assignment);
    added.push(assignment);
  }
  return { ports, added };
}
