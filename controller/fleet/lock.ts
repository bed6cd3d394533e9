import { setTimeout as delay } from 'node:timers/promises';
import type { LockInfo } from '../../contract/api.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { Output } from '../output.js';
import type { FleetMember } from './session.js';

/** The fleet lock: each member's app lock, reserved under one holder; lockId by host name. */
export type FleetLock = Map<string, string>;

/**
 * Takes every member's app lock, in host-name order, all or none: on a refusal the locks taken so
 * far are given back and fleet_locked names the host and its holder. Each lock is an ordinary
 * reservation of the host's agent (same holder: this controller's actor), so it expires by the
 * host lock's rules when the controller dies, and each agent still guards itself.
 */
export async function takeFleetLock(members: readonly FleetMember[], app: string, releaseId: string, rolloutId: string, options: { wait: boolean; waitTimeoutMs: number }, out: Output): Promise<FleetLock> {
  const deadline = Date.now() + options.waitTimeoutMs;
  let announced = false;
  for (;;) {
    try {
      return await takeOnce(members, app, releaseId, rolloutId);
    } catch (error) {
      if (!(error instanceof SlipwayError) || error.code !== 'fleet_locked' || !options.wait || Date.now() > deadline) throw error;
      if (!announced) out.info(`  waiting: ${error.message}`);
      announced = true;
      await delay(1000);
    }
  }
}

async function takeOnce(members: readonly FleetMember[], app: string, releaseId: string, rolloutId: string): Promise<FleetLock> {
  const taken: FleetLock = new Map();
  const sorted = [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const member of sorted) {
    try {
      const { lock } = await member.session.agent.json<{ lock: LockInfo }>('POST', `/apps/${app}/lock`, { releaseId, rolloutId });
      taken.set(member.name, lock.lockId);
    } catch (error) {
      await releaseFleetLock(members, app, taken);
      if (error instanceof SlipwayError && error.code === 'app_locked') {
        throw new SlipwayError('fleet_locked', `the fleet is locked: ${member.name}: ${error.message}`, {
          hint: 'another rollout runs on this environment: wait for it (deploy push --wait), or see deploy lock status; a crashed controller\'s lock expires by itself',
          details: [`${member.name}: ${error.message}`],
        });
      }
      throw error;
    }
  }
  return taken;
}

/** Gives back every lock of the fleet lock still held (in parallel); returns the hosts where that failed. */
export async function releaseFleetLock(members: readonly FleetMember[], app: string, lock: FleetLock): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(members.filter((m) => lock.has(m.name)).map(async (m) => {
    try {
      await m.session.agent.delete(`/apps/${app}/lock?lockId=${lock.get(m.name)!}`);
    } catch (error) {
      failed.push(`${m.name}: ${errorMessage(error)}`);
    }
  }));
  return failed;
}
