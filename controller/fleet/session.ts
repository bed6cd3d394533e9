import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { settleBounded } from '../../lib/bounded.js';
import type { Target } from '../environments.js';
import { openAgentSession, type AgentSession } from '../session.js';
import { hostName, type FleetTarget } from './target.js';

/** A host of the fleet reached: its own SSH connection and agent client. */
export interface FleetMember { name: string; target: Target; session: AgentSession }

/** A host of the fleet not reached, and why. */
export interface FleetMiss { name: string; target: Target; error: Error }

export interface FleetSession {
  /** Reached hosts, in fleet order. */
  members: FleetMember[];
  /** Hosts that could not be reached (connect, token, version check), in fleet order. */
  unreachable: FleetMiss[];
  /** The member named so, if it was reached. */
  member(name: string): FleetMember | undefined;
  /** Closes every member's connection (in parallel; never throws). */
  close(): Promise<void>;
}

export interface OpenFleetOptions {
  /** Connections opened at once (default: the fleet's rollout.concurrency). */
  concurrency?: number;
  /** How one host is opened (default: openAgentSession); tests and benches pass their own. */
  open?: (target: Target) => Promise<AgentSession>;
}

/**
 * Opens one agent session per host of the fleet, at most `concurrency` at a time, and waits for
 * every attempt: a host that fails lands in `unreachable` with its error, the others stay open.
 * The caller decides what a miss means (push refuses by default; status reports it).
 */
export async function openFleet(fleet: Pick<FleetTarget, 'hosts' | 'rollout'>, options: OpenFleetOptions = {}): Promise<FleetSession> {
  const open = options.open ?? openAgentSession;
  const settled = await settleBounded(fleet.hosts, options.concurrency ?? fleet.rollout.concurrency, (target) => open(target));
  const members: FleetMember[] = [];
  const unreachable: FleetMiss[] = [];
  settled.forEach((result, i) => {
    const target = fleet.hosts[i]!;
    const name = hostName(target);
    if (result.status === 'fulfilled') members.push({ name, target, session: result.value });
    else unreachable.push({ name, target, error: result.reason instanceof Error ? result.reason : new Error(String(result.reason)) });
  });
  return {
    members,
    unreachable,
    member: (name) => members.find((m) => m.name === name),
    close: async () => { await Promise.all(members.map((m) => m.session.close().catch(() => undefined))); },
  };
}

/** Pure: the error for hosts not reached: which, and why each; the hint says what it means for the command. */
export function unreachableError(
  misses: readonly FleetMiss[], what: string,
  hint = 'nothing was changed on any host; bring the host back, or pass --skip-unreachable to go on without it (recorded as drift)',
): SlipwayError {
  return new SlipwayError('fleet_unreachable', `${what}: ${misses.length} host(s) could not be reached: ${misses.map((m) => m.name).join(', ')}`, {
    details: misses.map((m) => `${m.name}: ${errorMessage(m.error)}`), hint,
  });
}

/**
 * Runs `fn` on every member at most `concurrency` at a time and returns each host's outcome, in
 * member order. Used for the parallel steps of a fleet command (upload, lock, revert, status).
 */
export async function eachMember<R>(members: readonly FleetMember[], concurrency: number, fn: (member: FleetMember) => Promise<R>):
  Promise<Array<{ member: FleetMember; result: PromiseSettledResult<R> }>> {
  const settled = await settleBounded(members, concurrency, fn);
  return settled.map((result, i) => ({ member: members[i]!, result }));
}
