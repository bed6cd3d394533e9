import { besideUpload, isDeltaBaseFailure } from '../delta-upload.js';

/**
 * Pure: how a release reaches the hosts of a fleet that lack it: directly from the controller, or
 * once to one host of a group (the uploader) and from there to the others over the hosts' private
 * network (the upload-once relay, controller/fleet/relay.ts does it).
 *
 * Hosts are grouped by what they lack: `key` is the delta bundle's key (the same manifest and the
 * same set of missing contents: they would be sent the same bytes) or 'full' (the whole tarball).
 * A group of two or more hosts is relayed when one of its hosts can serve the others: the primary
 * if it is in the group and has a `relay` address, else the first host of the group (in fleet
 * order) that has one. Every other host of the group fetches from it. A host alone in its group,
 * or a group none of whose hosts has a relay address, is uploaded to directly.
 */

export interface RelayCandidate {
  name: string;
  /** The address the other hosts reach this host at (its config's `relay`), or null. */
  relay: string | null;
  /** What the host lacks: the bundle key, or 'full'. Hosts with equal keys are sent equal bytes. */
  key: string;
}

export interface RelayGroup {
  key: string;
  /** Uploaded to directly (keeping the bytes for the relay), then serves the peers. */
  uploader: string;
  /** Where the peers connect: the uploader's relay address. */
  address: string;
  /** Fetch from the uploader, in fleet order; each falls back to a direct upload on a relay failure. */
  peers: string[];
}

export interface UploadPlan {
  relayed: RelayGroup[];
  /** Uploaded to directly, in fleet order. */
  direct: string[];
}

export function planUploads(hosts: readonly RelayCandidate[], primary: string): UploadPlan {
  const groups = new Map<string, RelayCandidate[]>();
  for (const host of hosts) {
    const group = groups.get(host.key);
    if (group) group.push(host);
    else groups.set(host.key, [host]);
  }
  const relayed: RelayGroup[] = [];
  const viaRelay = new Set<string>();
  for (const [key, group] of groups) {
    if (group.length < 2) continue;
    const uploader = group.find((h) => h.name === primary && h.relay !== null) ?? group.find((h) => h.relay !== null);
    if (!uploader) continue;
    const peers = group.filter((h) => h !== uploader).map((h) => h.name);
    relayed.push({ key, uploader: uploader.name, address: uploader.relay!, peers });
    for (const h of group) viaRelay.add(h.name);
  }
  return { relayed, direct: hosts.filter((h) => !viaRelay.has(h.name)).map((h) => h.name) };
}

/** Failures of a peer's fetch after which a direct upload to that peer is worth it (any relay_* code, or a delta base gone). */
export function fallsBackToDirect(code: string): boolean {
  return code.startsWith('relay_') || isDeltaBaseFailure(code);
}

/** Pure: the peer-fetch route beside an upload's path (`…/releases/<id>/fetch`, same query). */
export function fetchPath(uploadPath: string): string {
  return besideUpload(uploadPath, 'fetch');
}
