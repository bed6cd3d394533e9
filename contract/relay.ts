/**
 * The upload-once relay's agent API (DESIGN-S10): a host that kept an upload (`?relay=1`) serves
 * it to its peers for one session over TLS 1.2 PSK, and a peer fetches it into the same ingest as
 * an upload of that kind. The key is a secret: it crosses the API only in these two requests.
 */
import { SHA256_PATTERN } from './names.js';

/** The query flag of a full or delta upload that keeps the verified bytes for a relay session. */
export const RELAY_KEEP_QUERY = 'relay';

/** Session identities (the TLS PSK identity): lowercase letters, digits, dashes. */
export const RELAY_IDENTITY_PATTERN = '^[a-z0-9-]{8,64}$';
/** The pre-shared key: 32 random bytes as 64 hex digits. */
export const RELAY_KEY_PATTERN = '^[0-9a-f]{64}$';
/** The port the controller asks for when rollout.relay names none. */
export const RELAY_DEFAULT_PORT = 7391;
export const RELAY_MAX_FETCHES = 64;
export const RELAY_MIN_TTL_MS = 1_000;
export const RELAY_MAX_TTL_MS = 900_000;
/** How long a session open may wait for the upload it serves to start arriving (pipelined relay). */
export const RELAY_MAX_WAIT_MS = 30_000;

/** POST /apps/:app/relay: serve the kept upload of `sha256` on address:port. */
export interface RelaySessionRequest {
  sha256: string;
  bytes: number;
  /** An address of one of the host's interfaces, never a wildcard. */
  address: string;
  port: number;
  identity: string;
  /** 64 hex digits. Secret. */
  key: string;
  /** Complete GETs after which the session closes itself. */
  fetches: number;
  ttlMs: number;
  /**
   * How long the open waits for an upload of `sha256` to start arriving when none is kept or
   * arriving yet (default 0). A session may serve an upload still arriving: the peers get its
   * bytes as they are written, and are cut off should that upload fail.
   */
  waitMs?: number;
}

/** 201 of POST /apps/:app/relay (never the key). */
export interface RelaySession { identity: string; address: string; port: number; expiresAt: string }

export type RelayFetchKind = 'full' | 'delta';

/** POST /apps/:app/releases/:releaseId/fetch (query and overrides header as an upload's). */
export interface RelayFetchRequest {
  from: { address: string; port: number };
  identity: string;
  /** 64 hex digits. Secret. */
  key: string;
  sha256: string;
  bytes: number;
  kind: RelayFetchKind;
}

export const relaySessionRequestSchema = {
  type: 'object', additionalProperties: false,
  required: ['sha256', 'bytes', 'address', 'port', 'identity', 'key', 'fetches', 'ttlMs'],
  properties: {
    sha256: { type: 'string', pattern: SHA256_PATTERN },
    bytes: { type: 'integer', minimum: 0 },
    address: { type: 'string', minLength: 1, maxLength: 64 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    identity: { type: 'string', pattern: RELAY_IDENTITY_PATTERN },
    key: { type: 'string', pattern: RELAY_KEY_PATTERN },
    fetches: { type: 'integer', minimum: 1, maximum: RELAY_MAX_FETCHES },
    ttlMs: { type: 'integer', minimum: RELAY_MIN_TTL_MS, maximum: RELAY_MAX_TTL_MS },
    waitMs: { type: 'integer', minimum: 0, maximum: RELAY_MAX_WAIT_MS },
  },
} as const;

export const relayFetchRequestSchema = {
  type: 'object', additionalProperties: false,
  required: ['from', 'identity', 'key', 'sha256', 'bytes', 'kind'],
  properties: {
    from: {
      type: 'object', additionalProperties: false, required: ['address', 'port'],
      properties: { address: { type: 'string', minLength: 1, maxLength: 255 }, port: { type: 'integer', minimum: 1, maximum: 65535 } },
    },
    identity: { type: 'string', pattern: RELAY_IDENTITY_PATTERN },
    key: { type: 'string', pattern: RELAY_KEY_PATTERN },
    sha256: { type: 'string', pattern: SHA256_PATTERN },
    bytes: { type: 'integer', minimum: 0 },
    kind: { type: 'string', enum: ['full', 'delta'] },
  },
} as const;
