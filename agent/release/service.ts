import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import type { StateStore } from '../state/store.js';
import { requireApp } from '../apps.js';
import type { CleanupResult } from './cleanup.js';
import type { SpecOverrides } from '../../contract/spec-overrides.js';

/** What the service needs of the release store (store.ts). */
export interface ReleaseRepository {
  has(app: string, releaseId: string): boolean;
  ingest(input: {
    app: string; releaseId: string; sha256: string; source: Readable; expectedBytes?: number; accept?: (manifest: ReleaseManifest) => void;
    deployedBy?: string; project?: string; deployment?: { env: string | null; tag: string | null };
  }): Promise<{ dir: string; manifest: ReleaseManifest; bytes: number }>;
}

export interface ReleaseServiceDeps {
  apps: Readonly<Record<string, unknown>>;
  state: StateStore;
  releases: ReleaseRepository;
  /** Applies retention now (cleanup.ts), under the app's deploy lock. */
  cleanup(app: string, actor: string): Promise<CleanupResult>;
  /** Refuses a release whose manifest (its spec) this host will not run: checked before it is stored. */
  checkManifest?: (app: string, manifest: ReleaseManifest, overrides: SpecOverrides | null) => void;
  logger: Logger;
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
}

export interface StoredRelease { releaseId: string; bytes: number; dir: string }

/** Releases as the API changes them: an upload taken in and recorded, retention applied on request. */
export class ReleaseService {
  constructor(private readonly deps: ReleaseServiceDeps) {}

  /** Stores and records an upload; a release the host already has is refused (409), not replaced. */
  async receive(input: UploadInput): Promise<StoredRelease> {
    const { app, releaseId, sha256, source } = input;
    requireApp(this.deps.apps, app);
    if (this.deps.state.release(app, releaseId) && this.deps.releases.has(app, releaseId)) {
      throw new SlipwayError('release_exists', `release ${shortSha(releaseId)} of ${app} is already on this host`, { status: 409, hint: 'nothing to upload' });
    }
    if (!source) {
      throw new SlipwayError('upload_missing', 'upload body must be sent as application/gzip', { status: 415, hint: 'send the tarball bytes' });
    }
    const { checkManifest } = this.deps;
    const ingested = await this.deps.releases.ingest({
      app, releaseId, sha256, source, expectedBytes: input.expectedBytes,
      // The policy check applies the overrides sent with the upload, or without them the stored ones.
      ...(checkManifest ? { accept: (manifest: ReleaseManifest) => checkManifest(app, manifest, input.specOverrides ?? this.deps.state.appOverrides(app)?.overrides ?? null) } : {}),
      ...(input.actor ? { deployedBy: input.actor } : {}),
      ...(input.project ? { project: input.project } : {}),
      deployment: { env: input.env ?? null, tag: input.tag ?? null },
    });
    this.deps.state.recordRelease({ app, releaseId, sha256, bytes: ingested.bytes, manifest: ingested.manifest });
    this.deps.logger.info({ app, releaseId, bytes: ingested.bytes }, 'release stored');
    return { releaseId, bytes: ingested.bytes, dir: ingested.dir };
  }

  cleanup(app: string, actor: string): Promise<CleanupResult> {
    requireApp(this.deps.apps, app);
    return this.deps.cleanup(app, actor);
  }
}
