import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { StateStore } from '../state/store.js';
import { requireApp } from '../apps.js';
import type { CleanupResult } from './cleanup.js';
import type { PromotionRecord, PromotionRecordRequest, PromotionVerdict } from '../../contract/api.js';
import { judgePromotion } from './promotion-gate.js';
import type { SpecOverrides } from '../../contract/spec-overrides.js';
import type { DeltaStats, IngestTimings } from './store.js';
import type { ArrivalHooks } from './relay-arrivals.js';

interface IngestRequest {
  app: string; releaseId: string; sha256: string; source: Readable; expectedBytes?: number; accept?: (manifest: ReleaseManifest) => void;
  deployedBy?: string; project?: string; deployment?: { env: string | null; tag: string | null };
  keep?: (partFile: string) => Promise<void>;
  arriving?: ArrivalHooks;
}

/** What the service needs of the release store (store.ts). */
export interface ReleaseRepository {
  has(app: string, releaseId: string): boolean;
  ingest(input: IngestRequest): Promise<{ dir: string; manifest: ReleaseManifest; bytes: number; timings?: IngestTimings }>;
  /** A delta upload (store.ts ingestDelta): the release assembled from its file manifest. */
  ingestDelta(input: IngestRequest): Promise<{ dir: string; manifest: ReleaseManifest; bytes: number; delta?: DeltaStats }>;
  /** Of these file contents, the ones no kept release holds. */
  missingContents(app: string, hashes: readonly string[]): Promise<string[]>;
  /** Where the release's kept tarball is (store.ts), and its size when there is one. */
  artifactPath(app: string, releaseId: string): string;
  artifactSize(app: string, releaseId: string): Promise<number | null>;
  /** Packs the kept tarball of a release stored by a delta upload from its files; null when it cannot (store.ts). */
  repackArtifact(app: string, releaseId: string): Promise<{ bytes: number; sha256: string } | null>;
}

export interface ReleaseServiceDeps {
  apps: Readonly<Record<string, unknown>>;
  state: StateStore;
  releases: ReleaseRepository;
  /** Applies retention now (cleanup.ts), under the app's deploy lock. */
  cleanup(app: string, actor: string): Promise<CleanupResult>;
  /** Refuses a release whose manifest (its spec) this host will not run: checked before it is stored. */
  checkManifest?: (app: string, manifest: ReleaseManifest, overrides: SpecOverrides | null) => void;
  /** Queues a promotion notification (agent/notify/notices.ts). */
  notifyPromotion?: (event: 'promotion_refused' | 'promotion_forced', input: { app: string; env: string | null; releaseId: string; actor: string; reason: string; sha: string | null }) => void;
  logger: Logger;
  now?: () => Date;
  /** Keeps a verified upload for a relay session (relay-keep.ts); uploads with `relay` need it. */
  keepForRelay?: (partFile: string, sha256: string) => Promise<void>;
  /** Registers an upload kept for the relay as arriving, so a session may serve it as it grows (relay-arrivals.ts). */
  trackArrival?: (sha256: string, bytes: number) => ArrivalHooks;
}

export interface UploadInput {
  app: string;
  releaseId: string;
  /** sha256 of the tarball, as declared by the sender. */
  sha256: string;
  /** The tarball's bytes as they arrive; undefined when the request had no body. */
  source: Readable | undefined;
  /** The length the sender declared. */
  expectedBytes: number;
  /** Who uploads it (recorded in the release's DEPLOYMENT_INFO.json). */
  actor?: string;
  /** The project the manifest names (?project=), when it is not the box app's name. */
  project?: string;
  /** The environment and tag it is uploaded for (?env=, ?tag=): DEPLOYMENT_INFO.json records them. */
  env?: string;
  tag?: string;
  /** The overrides sent with the upload (null: none sent; the stored ones apply). */
  specOverrides?: SpecOverrides | null;
  /** ?relay=1: also keep the verified bytes for a relay session (relay-keep.ts). */
  relay?: boolean;
}

export interface StoredRelease { releaseId: string; bytes: number; dir: string }

/** A release stored from a delta upload: how its files were made. */
export interface StoredDelta extends StoredRelease { delta: DeltaStats }

/** Releases as the API changes them: an upload taken in and recorded, retention applied on request. */
export class ReleaseService {
  constructor(private readonly deps: ReleaseServiceDeps) {}

  /** Stores and records an upload; a release the host already has is refused (409), not replaced. */
  async receive(input: UploadInput): Promise<StoredRelease> {
    return this.store(input, (request) => this.deps.releases.ingest(request));
  }

  /** Stores and records a delta upload (a bundle of the contents the host lacks and the file manifest). */
  async receiveDelta(input: UploadInput): Promise<StoredDelta> {
    let delta: DeltaStats = { received: 0, linked: 0, copied: 0 };
    const stored = await this.store(input, async (request) => {
      const ingested = await this.deps.releases.ingestDelta(request);
      if (ingested.delta) delta = ingested.delta;
      return ingested;
    });
    return { ...stored, delta };
  }

  /** Refuses an upload before a byte is read: an unknown app, or a release already on the host (409). */
  requireReceivable(app: string, releaseId: string): void {
    requireApp(this.deps.apps, app);
    if (this.deps.state.release(app, releaseId) && this.deps.releases.has(app, releaseId)) {
      throw new SlipwayError('release_exists', `release ${shortSha(releaseId)} of ${app} is already on this host`, { status: 409, hint: 'nothing to upload' });
    }
  }

  /** Which of these file contents the host lacks: what a delta upload must carry. */
  async missingContents(app: string, hashes: readonly string[]): Promise<{ missing: string[] }> {
    requireApp(this.deps.apps, app);
    return { missing: await this.deps.releases.missingContents(app, hashes) };
  }

  private async store(
    input: UploadInput, ingest: (request: IngestRequest) => Promise<{ dir: string; manifest: ReleaseManifest; bytes: number; timings?: IngestTimings }>,
  ): Promise<StoredRelease> {
    const { app, releaseId, sha256, source } = input;
    this.requireReceivable(app, releaseId);
    if (!source) {
      throw new SlipwayError('upload_missing', 'upload body must be sent as application/gzip', { status: 415, hint: 'send the tarball bytes' });
    }
    const { checkManifest } = this.deps;
    const ingested = await ingest({
      app, releaseId, sha256, source, expectedBytes: input.expectedBytes,
      // The policy check applies the overrides sent with the upload, or without them the stored ones.
      ...(checkManifest ? { accept: (manifest: ReleaseManifest) => checkManifest(app, manifest, input.specOverrides ?? this.deps.state.appOverrides(app)?.overrides ?? null) } : {}),
      ...(input.actor ? { deployedBy: input.actor } : {}),
      ...(input.project ? { project: input.project } : {}),
      deployment: { env: input.env ?? null, tag: input.tag ?? null },
      ...(input.relay ? { keep: (partFile: string) => this.keepForRelay(partFile, app, releaseId, sha256) } : {}),
      ...(input.relay && this.deps.trackArrival ? { arriving: this.deps.trackArrival(sha256, input.expectedBytes) } : {}),
    });
    this.deps.state.recordRelease({ app, releaseId, sha256, bytes: ingested.bytes, manifest: ingested.manifest });
    this.deps.logger.info({ app, releaseId, bytes: ingested.bytes, ...(ingested.timings ? { ms: ingested.timings } : {}) }, 'release stored');
    return { releaseId, bytes: ingested.bytes, dir: ingested.dir };
  }

  /**
   * Keeps an upload for the relay; a failure is logged, not the upload's: the release is stored,
   * and the controller, finding nothing kept (relay_artifact_missing), uploads to the peers itself.
   */
  private async keepForRelay(partFile: string, app: string, releaseId: string, sha256: string): Promise<void> {
    try {
      if (!this.deps.keepForRelay) throw new Error('this agent keeps no uploads for the relay');
      await this.deps.keepForRelay(partFile, sha256);
      this.deps.logger.info({ app, releaseId, sha256 }, 'upload kept for the relay');
    } catch (error) {
      this.deps.logger.warn({ app, releaseId, err: error }, 'could not keep the upload for the relay');
    }
  }

  /** The release's kept tarball: where it is, its size, and the sha256 it was verified against on upload. */
  async artifact(app: string, releaseId: string): Promise<{ file: string; bytes: number; sha256: string }> {
    requireApp(this.deps.apps, app);
    const { row, bytes } = await this.keptTarball(app, this.requireRelease(app, releaseId));
    if (bytes === null || bytes !== row.bytes) {
      throw new SlipwayError('artifact_missing', `release ${shortSha(releaseId)} of ${app} has no kept tarball on this host (it was stored before the agent kept them)`, {
        status: 404, hint: 'deploy it again from its commit on this environment (deploy push --sha <commit>), or promote with a controller that packs it to the same bytes',
      });
    }
    return { file: this.deps.releases.artifactPath(app, releaseId), bytes, sha256: row.sha256 };
  }

  /** The gate of this environment for a release (promotion-gate.ts), with what the promoting controller needs to fetch it. */
  async promotion(app: string, releaseId: string, maxAgeMs: number | null): Promise<PromotionVerdict> {
    requireApp(this.deps.apps, app);
    const stored = this.deps.state.release(app, releaseId);
    const verdict = judgePromotion({
      releaseId, release: stored, deployments: this.deps.state.deploymentsOfRelease(app, releaseId), now: this.now(), maxAgeMs,
    });
    const { row, bytes: artifactBytes } = stored ? await this.keptTarball(app, stored) : { row: stored, bytes: null };
    return { app, releaseId, ...verdict, sha256: row?.sha256 ?? null, artifactBytes: artifactBytes === row?.bytes ? artifactBytes : null };
  }

  /**
   * Records a promotion on this side; a refusal is notified on the target, a forced promotion on
   * both sides.
   */
  recordPromotion(app: string, input: PromotionRecordRequest, actor: string): PromotionRecord {
    requireApp(this.deps.apps, app);
    const record = this.deps.state.recordPromotion({ ...input, app, actor });
    const event = input.event === 'forced' ? 'promotion_forced' : input.event === 'refused' && input.side === 'target' ? 'promotion_refused' : null;
    if (event) {
      const envs = `${input.fromEnv ?? 'source'} → ${input.toEnv ?? 'target'}`;
      const reason = input.event === 'forced' ? `${envs} forced${input.reason ? `: ${input.reason}` : ''} (gate: ${input.gate})` : `${envs}: ${input.gate}`;
      try {
        const env = (input.side === 'target' ? input.toEnv : input.fromEnv) ?? null;
        this.deps.notifyPromotion?.(event, { app, env, releaseId: input.releaseId, actor, reason, sha: input.sha });
      } catch (error) {
        this.deps.logger.error({ err: error }, 'could not queue a promotion notification');
      }
    }
    this.deps.logger.info({ app, promotion: record }, 'promotion recorded');
    return record;
  }

  promotions(app: string, limit: number): PromotionRecord[] {
    requireApp(this.deps.apps, app);
    return this.deps.state.promotions(app, limit);
  }

  /**
   * The release's kept tarball: the upload it was stored from, or for one stored by a delta
   * upload, packed now from its files (once; the row then names the tarball's sha256 and size).
   */
  private async keptTarball<R extends { releaseId: string; sha256: string; bytes: number }>(app: string, row: R): Promise<{ row: R; bytes: number | null }> {
    const bytes = await this.deps.releases.artifactSize(app, row.releaseId);
    if (bytes !== null) return { row, bytes };
    if (!this.deps.releases.has(app, row.releaseId)) return { row, bytes: null };
    const packed = await this.deps.releases.repackArtifact(app, row.releaseId);
    if (!packed) return { row, bytes: null };
    this.deps.state.setReleaseTarball(app, row.releaseId, packed.sha256, packed.bytes);
    this.deps.logger.info({ app, releaseId: row.releaseId, bytes: packed.bytes }, 'release tarball packed from its files');
    return { row: { ...row, sha256: packed.sha256, bytes: packed.bytes }, bytes: packed.bytes };
  }

  private requireRelease(app: string, releaseId: string) {
    const row = this.deps.state.release(app, releaseId);
    if (!row) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${app} is not on this host`, {
        status: 404, hint: 'list the releases with: deploy releases',
      });
    }
    return row;
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  cleanup(app: string, actor: string): Promise<CleanupResult> {
    requireApp(this.deps.apps, app);
    return this.deps.cleanup(app, actor);
  }
}
