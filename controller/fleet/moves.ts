import type { DeploymentEvent } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { settleBounded } from '../../lib/bounded.js';
import { followDeployment } from '../commands/follow.js';
import type { Output } from '../output.js';
import type { FleetMember } from './session.js';

/** One host asked to serve `to` (it serves `from` now): a request to its agent that ends in a result. */
export interface HostRequest {
  host: string;
  from: string | null;
  to: string;
  /** e.g. /apps/shop/rollback or /apps/shop/switch */
  path: string;
  body: Record<string, unknown>;
}

/** Where one host ended: moved, left, or how it failed. */
export type MoveOutcome = 'succeeded' | 'failed' | 'swapped_back' | 'failed_after_switch' | 'in_doubt';

export interface HostMove {
  host: string;
  from: string | null;
  to: string;
  outcome: MoveOutcome;
  deploymentId: number | null;
  /** What went wrong (null when it moved). */
  detail: string | null;
}

/** The Output a host's progress goes through: each event one line, named by host. */
export function hostOutput(out: Output, host: string): Output {
  return {
    info: (message, data) => out.info(`  [${host}] ${message}`, { host, ...data }),
    progress: () => undefined,
    event: (e: DeploymentEvent) => {
      if (e.status === 'started') return;
      out.info(`  [${host}] ${e.status === 'ok' ? '✓' : e.status === 'failed' ? '✗' : '·'} ${e.step}${e.message ? `  ${e.message}` : ''}`, { host, step: e.step, status: e.status });
    },
    result: () => undefined,
    data: (value) => out.data(value),
    error: (error) => out.error(error),
  };
}

/**
 * Runs each request on its host, at most `concurrency` at once, and waits for every result: one
 * host's failure neither stops nor hides another's (the caller decides what to revert).
 */
export async function moveHosts(members: readonly FleetMember[], requests: readonly HostRequest[], concurrency: number, out: Output): Promise<HostMove[]> {
  const settled = await settleBounded(requests, concurrency, async (request): Promise<HostMove> => {
    const member = members.find((m) => m.name === request.host);
    if (!member) throw new SlipwayError('fleet_unreachable', `${request.host} is not connected`, { hint: 'bring it back and run the command again' });
    const followed = await followDeployment(member.session.agent, request.path, request.body, hostOutput(out, request.host));
    if (followed.kind !== 'result') throw new Error('a fleet move never detaches');
    const { result } = followed;
    const outcome: MoveOutcome = result.outcome === 'succeeded' ? 'succeeded' : result.outcome === 'rolled_back' ? 'swapped_back'
      : result.phase === 'after_switch' ? 'failed_after_switch' : 'failed';
    return { host: request.host, from: request.from, to: request.to, outcome, deploymentId: result.deploymentId, detail: result.reason };
  });
  return settled.map((s, i) => {
    if (s.status === 'fulfilled') return s.value;
    const request = requests[i]!;
    const error = s.reason;
    // A link lost while the host's rollout ran: it finishes or swaps back there, on its own.
    const inDoubt = error instanceof SlipwayError && error.kind === 'in_doubt';
    return { host: request.host, from: request.from, to: request.to, outcome: inDoubt ? 'in_doubt' : 'failed', deploymentId: null, detail: errorMessage(error) };
  });
}

/** Pure: the moves whose host now serves the new release and must go back when the fleet does not follow. */
export function movedHosts(moves: readonly HostMove[]): HostMove[] {
  return moves.filter((m) => m.outcome === 'succeeded' || m.outcome === 'failed_after_switch');
}

/** Pure: one line per host of what happened, for the per-host table of a fleet command. */
export function formatMoves(moves: readonly HostMove[], reverts: readonly HostMove[] = []): string[] {
  return moves.map((m) => {
    const back = reverts.find((r) => r.host === m.host);
    const revert = back ? (back.outcome === 'succeeded' ? `, reverted to ${m.from ? shortSha(m.from) : '-'}` : `, revert ${back.outcome}: ${back.detail ?? ''}`) : '';
    return `  ${m.host.padEnd(16)} ${(m.from ? shortSha(m.from) : '-').padEnd(13)} → ${shortSha(m.to).padEnd(13)} ${m.outcome}${m.deploymentId ? ` (#${m.deploymentId})` : ''}${revert}${m.outcome !== 'succeeded' && m.detail ? `: ${m.detail}` : ''}`;
  });
}
