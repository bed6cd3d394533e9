import { randomBytes } from 'node:crypto';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { RelayFetchRequest, RelaySession, RelaySessionRequest } from '../../contract/relay.js';
import { settleBounded } from '../../lib/bounded.js';
import { shipRelease, type Missing, type Shipped } from '../delta-upload.js';
import { uploadHeaders, uploadPath, type PushRelease } from '../commands/push.js';
import { formatBytes, formatMs, type Output } from '../output.js';
import { fallsBackToDirect, fetchPath, type RelayGroup } from './relay-plan.js';
import type { FleetMember } from './session.js';
import type { FleetTarget } from './target.js';

/**
 * The upload-once relay (the agent side: agent/relay): one host of a group (the uploader) gets the
 * release from the controller and keeps the verified bytes; its agent then serves them, for this
 * push only, on its relay address to the other hosts of the group, which fetch them over the hosts'
 * private network and store them exactly as an upload (the sha256 the controller declared is
 * checked by each of them). The listener is TLS 1.2 with a pre-shared key: a fresh random 32-byte
 * key and identity per session, given to the uploader and the peers over their SSH-tunnelled agent
 * API. The key is never printed, logged or put in --json. Any relay failure of a peer gets that
 * peer a direct upload (one line why); the session is closed in any case.
 */

/** How long a session may serve its fetches: the peers' transfers and ingest, at most 15 min (the agent's sweep). */
const SESSION_TTL_MS = 600_000;

export interface RelayContext {
  fleet: FleetTarget;
  release: PushRelease;
  out: Output;
  /** What each member lacks, asked once (the grouping used it). */
  missing: ReadonlyMap<string, Missing>;
  /** A direct upload to one host (the fallback). */
  direct: (member: FleetMember, why: string | null) => Promise<Shipped>;
  /** Prints a host's upload line, as for any upload. */
  hostOutput: (name: string) => Output;
}

/**
 * Runs one group: uploads to its uploader (keeping the bytes), opens the session, the peers fetch
 * in parallel (rollout.concurrency at a time), each falling back to a direct upload. Resolves to
 * the failures by host name (a host not in it has the release, verified).
 */
export async function relayGroup(group: RelayGroup, members: ReadonlyMap<string, FleetMember>, ctx: RelayContext): Promise<Map<string, unknown>> {
  const { fleet, release, out } = ctx;
  const failures = new Map<string, unknown>();
  const uploader = members.get(group.uploader)!;
  const peers = group.peers.map((name) => members.get(name)!);
  let shipped: Shipped;
  try {
    shipped = await shipRelease({
      agent: uploader.session.agent, app: fleet.app, uploadPath: uploadPath(uploader.target, release.manifest.releaseId, release.tag), prepared: release.prepared,
      manifest: release.manifest, headers: uploadHeaders(uploader.target.specOverrides), prepareMs: release.prepareMs, out: ctx.hostOutput(uploader.name),
      missing: ctx.missing.get(uploader.name) ?? null, keep: true,
    });
  } catch (error) {
    failures.set(uploader.name, error);
    // The fleet will not switch: the peers are not sent 100 MB for nothing.
    for (const peer of peers) failures.set(peer.name, new SlipwayError('upload_failed', `not uploaded: the upload to ${uploader.name}, which was to relay it, failed`, { hint: `fix ${uploader.name} and push again` }));
    return failures;
  }
  out.info(`  [${uploader.name}] ${shipped.how === 'delta' ? 'delta' : 'full'} upload of ${formatBytes(shipped.uploadedBytes)} verified in ${formatMs(shipped.uploadMs)}, kept to relay to ${group.peers.join(', ')}`,
    { host: uploader.name, uploadMs: shipped.uploadMs, uploadedBytes: shipped.uploadedBytes, upload: shipped.how, relayTo: group.peers });

  const identity = `relay-${randomBytes(12).toString('hex')}`;
  const key = randomBytes(32).toString('hex');
  const port = fleet.rollout.relayPort;
  let opened = false;
  try {
    try {
      const request: RelaySessionRequest = {
        sha256: shipped.sha256, bytes: shipped.uploadedBytes, address: group.address, port, identity, key, fetches: peers.length, ttlMs: SESSION_TTL_MS,
      };
      await uploader.session.agent.json<RelaySession>('POST', `/apps/${fleet.app}/relay`, request);
      opened = true;
    } catch (error) {
      const why = `${uploader.name} could not open the relay on ${group.address}:${port}: ${errorMessage(error)}`;
      const settled = await settleBounded(peers, fleet.rollout.concurrency, (peer) => ctx.direct(peer, why));
      settled.forEach((result, i) => { if (result.status === 'rejected') failures.set(peers[i]!.name, result.reason); });
      return failures;
    }
    const settled = await settleBounded(peers, fleet.rollout.concurrency, async (peer) => {
      const started = Date.now();
      try {
        const request: RelayFetchRequest = {
          from: { address: group.address, port }, identity, key, sha256: shipped.sha256, bytes: shipped.uploadedBytes, kind: shipped.how,
        };
        await peer.session.agent.json('POST', fetchPath(uploadPath(peer.target, release.manifest.releaseId, release.tag)), request, uploadHeaders(peer.target.specOverrides));
      } catch (error) {
        if (!(error instanceof SlipwayError) || !fallsBackToDirect(error.code)) throw error;
        await ctx.direct(peer, `the relay fetch from ${uploader.name} failed (${error.code}: ${error.message})`);
        return;
      }
      const fetchMs = Date.now() - started;
      out.info(`  [${peer.name}] fetched from ${uploader.name} over the relay: ${formatBytes(shipped.uploadedBytes)} verified in ${formatMs(fetchMs)}`,
        { host: peer.name, upload: 'relay', from: uploader.name, uploadMs: fetchMs, uploadedBytes: 0, relayedBytes: shipped.uploadedBytes });
    });
    settled.forEach((result, i) => { if (result.status === 'rejected') failures.set(peers[i]!.name, result.reason); });
    return failures;
  } finally {
    // Closed by the agent after the last fetch or at its ttl anyway; closed here at once (idempotent).
    if (opened) {
      await uploader.session.agent.delete(`/apps/${fleet.app}/relay/${identity}`).catch((error: unknown) => {
        out.info(`  [${uploader.name}] could not close the relay session (${errorMessage(error)}): it closes itself within ${formatMs(SESSION_TTL_MS)}`);
      });
    }
  }
}
