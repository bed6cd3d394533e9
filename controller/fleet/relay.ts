import { randomBytes } from 'node:crypto';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { RelayFetchRequest, RelaySession, RelaySessionRequest } from '../../contract/relay.js';
import { settleBounded } from '../../lib/bounded.js';
import { shipRelease, type Missing, type Sending, type Shipped } from '../delta-upload.js';
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

/** How long the session open waits on the uploader for the upload to start arriving (contract: ≤ 30 s). */
const OPEN_WAIT_MS = 15_000;

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };
const settle = <T>(promise: Promise<T>): Promise<Outcome<T>> => promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));

/**
 * Runs one group, pipelined: as the upload to its uploader (keeping the bytes) starts, the session
 * is opened (it waits on the uploader for those bytes to start arriving) and the peers fetch in
 * parallel (rollout.concurrency at a time) while the uploader still receives: they get the bytes
 * as they arrive there, and verify them themselves. A peer whose fetch fails gets a direct upload,
 * once the uploader's upload went well (when it failed the fleet will not switch: nothing more is
 * sent). Resolves to the failures by host name (a host not in it has the release, verified).
 */
export async function relayGroup(group: RelayGroup, members: ReadonlyMap<string, FleetMember>, ctx: RelayContext): Promise<Map<string, unknown>> {
  const { fleet, release, out } = ctx;
  const failures = new Map<string, unknown>();
  const uploader = members.get(group.uploader)!;
  const peers = group.peers.map((name) => members.get(name)!);
  const identity = `relay-${randomBytes(12).toString('hex')}`;
  const key = randomBytes(32).toString('hex');
  const port = fleet.rollout.relayPort;
  const agent = uploader.session.agent;
  // Set as the first bytes go out: the session and the peers' fetches run beside the upload.
  let relaying: { sha256: string; opened: Promise<Outcome<RelaySession>>; fetched: Promise<PromiseSettledResult<void>[] | null> } | undefined;
  let uploaded: Promise<Outcome<Shipped>>;

  const notUploaded = (): SlipwayError => new SlipwayError('upload_failed', `not uploaded: the upload to ${uploader.name}, which was to relay it, failed`, { hint: `fix ${uploader.name} and push again` });
  const fetchFrom = async (peer: FleetMember, sending: Sending): Promise<void> => {
    const started = Date.now();
    try {
      const request: RelayFetchRequest = { from: { address: group.address, port }, identity, key, sha256: sending.sha256, bytes: sending.bytes, kind: sending.how };
      await peer.session.agent.json('POST', fetchPath(uploadPath(peer.target, release.manifest.releaseId, release.tag)), request, uploadHeaders(peer.target.specOverrides));
    } catch (error) {
      if (!(error instanceof SlipwayError) || !fallsBackToDirect(error.code)) throw error;
      // A failed upload to the uploader cuts its peers' fetches off: they then get nothing either.
      if (!(await uploaded).ok) throw notUploaded();
      await ctx.direct(peer, `the relay fetch from ${uploader.name} failed (${error.code}: ${error.message})`);
      return;
    }
    const fetchMs = Date.now() - started;
    out.info(`  [${peer.name}] fetched from ${uploader.name} over the relay: ${formatBytes(sending.bytes)} verified in ${formatMs(fetchMs)}`,
      { host: peer.name, upload: 'relay', from: uploader.name, uploadMs: fetchMs, uploadedBytes: 0, relayedBytes: sending.bytes });
  };
  const startRelay = (sending: Sending): void => {
    // A refused delta followed by the full upload (not kept): the session serves the delta. A peer that got it whole
    // (its last byte is sent once the uploader verified the bytes, before assembling) assembles it from its own base;
    // one whose GET came after the uploader's ingest ended is cut off and falls back to a direct upload.
    if (relaying) return;
    const request: RelaySessionRequest = {
      sha256: sending.sha256, bytes: sending.bytes, address: group.address, port, identity, key, fetches: peers.length, ttlMs: SESSION_TTL_MS, waitMs: OPEN_WAIT_MS,
    };
    const opened = settle(agent.json<RelaySession>('POST', `/apps/${fleet.app}/relay`, request));
    const fetched = opened.then((open) => (open.ok ? settleBounded(peers, fleet.rollout.concurrency, (peer) => fetchFrom(peer, sending)) : null));
    relaying = { sha256: sending.sha256, opened, fetched };
  };

  uploaded = settle(shipRelease({
    agent, app: fleet.app, uploadPath: uploadPath(uploader.target, release.manifest.releaseId, release.tag), prepared: release.prepared,
    manifest: release.manifest, headers: uploadHeaders(uploader.target.specOverrides), prepareMs: release.prepareMs, out: ctx.hostOutput(uploader.name),
    missing: ctx.missing.get(uploader.name) ?? null, keep: true, onSending: startRelay,
  }));
  const shipped = await uploaded;
  try {
    if (!shipped.ok) {
      failures.set(uploader.name, shipped.error);
      const fetched = await relaying?.fetched;
      // The fleet will not switch: peers whose fetch did not finish are not sent 100 MB for nothing.
      peers.forEach((peer, i) => { if (fetched?.[i]?.status !== 'fulfilled') failures.set(peer.name, notUploaded()); });
      return failures;
    }
    // After a refused delta the full upload is not kept: the session serves the delta sent first.
    const kept = relaying?.sha256 === shipped.value.sha256 ? 'kept to relay to' : 'not kept (the relay serves the delta sent first) for';
    out.info(`  [${uploader.name}] ${shipped.value.how === 'delta' ? 'delta' : 'full'} upload of ${formatBytes(shipped.value.uploadedBytes)} verified in ${formatMs(shipped.value.uploadMs)}, ${kept} ${group.peers.join(', ')}`,
      { host: uploader.name, uploadMs: shipped.value.uploadMs, uploadedBytes: shipped.value.uploadedBytes, upload: shipped.value.how, relayTo: group.peers });
    const open = await relaying!.opened;
    if (!open.ok) {
      const why = `${uploader.name} could not open the relay on ${group.address}:${port}: ${errorMessage(open.error)}`;
      const settled = await settleBounded(peers, fleet.rollout.concurrency, (peer) => ctx.direct(peer, why));
      settled.forEach((result, i) => { if (result.status === 'rejected') failures.set(peers[i]!.name, result.reason); });
      return failures;
    }
    const settled = (await relaying!.fetched)!;
    settled.forEach((result, i) => { if (result.status === 'rejected') failures.set(peers[i]!.name, result.reason); });
    return failures;
  } finally {
    // Closed by the agent after the last fetch or at its ttl anyway; closed here at once (idempotent).
    const open = await relaying?.opened;
    if (open?.ok) {
      await agent.delete(`/apps/${fleet.app}/relay/${identity}`).catch((error: unknown) => {
        out.info(`  [${uploader.name}] could not close the relay session (${errorMessage(error)}): it closes itself within ${formatMs(SESSION_TTL_MS)}`);
      });
    }
  }
}
