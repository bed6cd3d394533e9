import { SlipwayError } from '../contract/errors.js';
import { bytesOf, contentHashes } from '../contract/file-manifest.js';
import type { ReleaseManifest } from '../contract/manifest.js';
import type { AgentClient } from './agent-client.js';
import { formatBytes, formatMs, type Output } from './output.js';
import type { PreparedRelease } from './pack.js';
import { RELAY_KEEP_QUERY } from '../contract/relay.js';

export interface Shipped {
  how: 'delta' | 'full';
  uploadMs: number;
  /** Bytes sent over the wire (the bundle or the tarball). */
  uploadedBytes: number;
  /** The sha256 of those bytes (what a relay session serves and its peers verify). */
  sha256: string;
}

/** The bytes an upload is about to send (what a pipelined relay session serves as they arrive). */
export interface Sending { how: 'delta' | 'full'; sha256: string; bytes: number }

/** What a host lacks: the contents it asked for (null: it cannot say, an agent without delta uploads). */
export type Missing = Set<string> | null;

/** Failures of a delta upload that a full upload of the same release does not have. */
const FALL_BACK_ON = new Set(['delta_base_missing', 'delta_base_mismatch']);

/** Pure: whether an error code is a delta refused for its base (a base file gone or changed on the host). */
export function isDeltaBaseFailure(code: string): boolean {
  return FALL_BACK_ON.has(code);
}

/**
 * Sends a release the host does not have: asks which of its file contents the host lacks, and
 * sends only those with the file manifest (a delta upload, contract/file-manifest.ts); the full
 * tarball when the host shares none of them, has no index (an older agent: 404), or finds a base
 * file gone or changed while assembling (the host stores nothing then, so the full upload is the
 * same release, verified the same way).
 */
export async function shipRelease(input: {
  agent: AgentClient; app: string; uploadPath: string; prepared: PreparedRelease; manifest: ReleaseManifest;
  headers: Record<string, string>; prepareMs: number; out: Output;
  /** What the host lacks, when already asked (missingContents); asked here otherwise. */
  missing?: Missing;
  /**
   * Upload with `relay=1`: the agent keeps the verified bytes for a relay session (controller/fleet/relay.ts).
   * Only the first bytes sent are kept: the session serves those (onSending); the full upload after a refused
   * delta is not kept, as no session would serve it and it would stay on the host until the agent's sweep.
   */
  keep?: boolean;
  /** Told just before the bytes go out (twice when a refused delta is followed by the full upload). */
  onSending?: (sending: Sending) => void;
}): Promise<Shipped> {
  const { agent, prepared, manifest, out } = input;
  const hashes = contentHashes(prepared.files);
  const missing = input.missing !== undefined ? input.missing : await missingContents(agent, input.app, prepared);
  let keep = input.keep === true;
  const kept = (path: string) => (keep ? keepForRelay(path) : path);
  if (useDelta(prepared, missing)) {
    const started = Date.now();
    const bundle = await prepared.bundle(manifest, missing!);
    // Cut once for every host that lacks the same contents: the first one asking waits for it.
    const bundleMs = Date.now() - started;
    const total = bytesOf(prepared.files, new Set(hashes));
    out.info(`  the host has ${hashes.length - missing!.size} of ${hashes.length} file contents: sending ${missing!.size} (${formatBytes(bundle.objectBytes)} of ${formatBytes(total)}), ${formatBytes(bundle.bytes)} with the file manifest`,
      { delta: { contents: hashes.length, missing: missing!.size, objectBytes: bundle.objectBytes, releaseBytes: total, bundleBytes: bundle.bytes, bundleMs } });
    try {
      const sending = Date.now();
      input.onSending?.({ how: 'delta', sha256: bundle.sha256, bytes: bundle.bytes });
      await agent.upload(kept(deltaPath(input.uploadPath)), bundle.file, bundle.bytes, bundle.sha256,
        ({ sent, total: all, stalledMs }) => out.progress('upload', sent, all, started, stalledMs), input.headers);
      const uploadMs = Date.now() - started;
      out.info(`  sent, assembled and verified in ${formatMs(uploadMs)}`, { uploadMs, sendMs: Date.now() - sending, uploadedBytes: bundle.bytes, upload: 'delta' });
      return { how: 'delta', uploadMs, uploadedBytes: bundle.bytes, sha256: bundle.sha256 };
    } catch (error) {
      if (!(error instanceof SlipwayError) || !isDeltaBaseFailure(error.code)) throw error;
      out.info(`  delta upload refused (${error.message}): sending the whole release`, { upload: 'fallback', reason: error.code });
      keep = false;
    }
  }
  return fullUpload({ ...input, uploadPath: kept(input.uploadPath) });
}

/** The contents the host lacks, asked once; null when it cannot say, or the release has no file manifest. */
export async function missingContents(agent: AgentClient, app: string, prepared: Pick<PreparedRelease, 'files'>): Promise<Missing> {
  const hashes = contentHashes(prepared.files);
  return hashes.length === 0 ? null : askMissing(agent, app, hashes);
}

/** Pure: whether a host lacking `missing` gets a delta upload (it has some of the contents), not the whole tarball. */
export function useDelta(prepared: Pick<PreparedRelease, 'files'>, missing: Missing): boolean {
  return missing !== null && missing.size < contentHashes(prepared.files).length;
}

/** The contents the host lacks; null when it cannot say (an agent without delta uploads). */
async function askMissing(agent: AgentClient, app: string, hashes: string[]): Promise<Set<string> | null> {
  try {
    const answer = await agent.json<{ missing: string[] }>('POST', `/apps/${app}/files/missing`, { sha256: hashes });
    return new Set(answer.missing);
  } catch (error) {
    if (error instanceof SlipwayError && error.status === 404 && error.code === 'not_found') return null;
    throw error;
  }
}

async function fullUpload(input: {
  agent: AgentClient; uploadPath: string; prepared: PreparedRelease; manifest: ReleaseManifest; headers: Record<string, string>; prepareMs: number; out: Output;
  onSending?: (sending: Sending) => void;
}): Promise<Shipped> {
  const { out } = input;
  const sealStarted = Date.now();
  const packed = await input.prepared.seal(input.manifest);
  const packMs = input.prepareMs + Date.now() - sealStarted;
  out.info(input.prepared.sealedFrom === 'tarball'
    ? `  sending the verified tarball: ${formatBytes(packed.bytes)} (sha256 ${packed.sha256.slice(0, 16)}…)`
    : `  packed ${formatBytes(packed.bytes)} in ${formatMs(packMs)} (sha256 ${packed.sha256.slice(0, 16)}…)`);
  const started = Date.now();
  input.onSending?.({ how: 'full', sha256: packed.sha256, bytes: packed.bytes });
  await input.agent.upload(input.uploadPath, packed.file, packed.bytes, packed.sha256,
    ({ sent, total, stalledMs }) => out.progress('upload', sent, total, started, stalledMs), input.headers);
  const uploadMs = Date.now() - started;
  out.info(`  uploaded and verified in ${formatMs(uploadMs)}`, { uploadMs, sendMs: uploadMs, sealMs: started - sealStarted, uploadedBytes: packed.bytes, upload: 'full' });
  return { how: 'full', uploadMs, uploadedBytes: packed.bytes, sha256: packed.sha256 };
}

/** Pure: a route beside a full upload's path (`…/releases/<id>/<leaf>`, same query). */
export function besideUpload(uploadPath: string, leaf: string): string {
  const at = uploadPath.indexOf('?');
  return at === -1 ? `${uploadPath}/${leaf}` : `${uploadPath.slice(0, at)}/${leaf}${uploadPath.slice(at)}`;
}

/** Pure: the delta upload's path beside a full upload's (`…/releases/<id>/delta`, same query). */
export function deltaPath(uploadPath: string): string {
  return besideUpload(uploadPath, 'delta');
}

/** Pure: an upload path (full or delta) with `relay=1`: the agent keeps the verified bytes for a relay session. */
export function keepForRelay(path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}${RELAY_KEEP_QUERY}=1`;
}
