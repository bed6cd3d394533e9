import { fsyncDir, isDiskFull } from '../../lib/durable.js';
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { runCommand, outputTail } from '../../lib/exec.js';
import { MANIFEST_FILE, manifestSchema, type ReleaseManifest } from '../../contract/manifest.js';
import { SHA256_PATTERN, isAppName, isContentReleaseId, isReleaseId, shortSha } from '../../contract/names.js';
import { compileValidator } from '../../lib/validate.js';
import { startExtraction, type ExtractResult, type Extraction } from './extract.js';
import { startExtractionInWorker } from './extract-thread.js';
import { verifyReleaseContent } from './release-identity.js';
import { partPath, receiveUpload } from './upload.js';
import type { ArrivalHooks } from './relay-arrivals.js';
import { requireRoomForUpload } from './disk-space.js';
import { setTreeWritable } from '../../lib/link-tree.js';
import { writeDeploymentInfo } from './deployment-info.js';
import { DEPLOYMENT_INFO_FILE } from '../../contract/deployment-info.js';
import type { ContentEntry } from '../../contract/release-content.js';
import { DELTA_BUNDLE, decodeFileManifest } from '../../contract/file-manifest.js';
import { assembleRelease } from './assemble.js';
import { FileIndex } from './file-index.js';
import { repackRelease } from './repack.js';
import { TrustTable } from './trust.js';
import { carryOverAll, noteRelease, trustedSurvivors } from './trust-upkeep.js';
import { syncAssembled } from './sync-assembled.js';

export interface ReleaseLimits {
  maxReleaseBytes: number;
  maxUnpackedBytes: number;
  maxEntries: number;
}

export interface ReleaseStoreOptions {
  /** SLIPWAY_HOME: holds `incoming/` and `releases/`. */
  home: string;
  limits: ReleaseLimits;
  /** A stalled upload is abandoned after this long without data (default 30 s). */
  uploadIdleTimeoutMs?: number;
  /** Deadline for flushing a new release to disk before it is published (default 120 s). */
  syncTimeoutMs?: number;
  /** Refuse an upload of a declared size that cannot fit on the disk before storing a byte (disk-space.ts). */
  requireRoom?: boolean;
  /** Refuses a verified release before it is published (e.g. native addons for another platform); throws. */
  admit?: (manifest: ReleaseManifest, contents: readonly ContentEntry[], label: string) => void;
  /**
   * Uploads of at least this many bytes (declared; an undeclared size counts as large) are
   * unpacked in the agent's unpacking thread, beside the main thread that receives them
   * (extract-thread.ts); smaller ones on the main thread, where no thread has to start first.
   * Default 8 MiB; 0 sends every upload to the thread, Infinity none.
   */
  threadFromBytes?: number;
}

export interface IngestInput {
  app: string;
  releaseId: string;
  /** sha256 of the tarball, as declared by the sender. */
  sha256: string;
  source: Readable;
  /** The length the sender declared, when known. */
  expectedBytes?: number;
  /** Refuses (throws) a verified manifest before the release is published (the spec against the host's policy). */
  accept?: (manifest: ReleaseManifest) => void;
  /** Who uploads it: the release gets a DEPLOYMENT_INFO.json naming them (the API always says). */
  deployedBy?: string;
  /** The project the manifest must name (manifest.app), when the box app is an environment's own name. */
  project?: string;
  /** The environment and tag DEPLOYMENT_INFO.json records. */
  deployment?: { env: string | null; tag: string | null };
  /**
   * Called with the verified upload (the .part, complete and checked against its sha256) once the
   * release is published, before the .part is moved or removed: the relay keeps it there
   * (relay-keep.ts). A failure is the caller's to report; the stored release stands.
   */
  keep?: (partFile: string) => Promise<void>;
  /** Told how the upload arrives (relay-arrivals.ts: a relay session may serve it while it grows). */
  arriving?: ArrivalHooks;
}

export interface IngestResult {
  /** Absolute path of the published release. */
  dir: string;
  manifest: ReleaseManifest;
  /** Bytes of the uploaded tarball. */
  bytes: number;
  /** Bytes of file content in the unpacked release. */
  unpackedBytes: number;
  entries: number;
  /** For a delta upload: files made from received contents, hardlinked from kept releases, copied from them. */
  delta?: DeltaStats;
  /** Where the ingest's time went (ms, one after the other), for the log and the bench. */
  timings: IngestTimings;
}

/**
 * An ingest's serial steps: `receive` until the last byte is in the .part and its sha256 checked
 * (the unpacking runs beside it), `unpackTail` the unpacking still left after that, `verify`
 * (a delta's assembly, manifest, content digest, policy, modes), `sync` (making the tree durable), `publish` (rename,
 * keeping the tarball, the file index).
 */
export interface IngestTimings { receive: number; unpackTail: number; verify: number; sync: number; publish: number }

export interface DeltaStats { received: number; linked: number; copied: number }

export interface OrphanCleanup {
  /** Absolute paths removed. */
  removed: string[];
}

const MAX_MANIFEST_BYTES = 64 * 1024;
const TMP_PREFIX = '.tmp-';
const PART_SUFFIX = '.part';
const ARTIFACT_SUFFIX = '.tar.gz';
/** Up to this many small files get an fsync each before publishing; beyond, one `sync -f` is cheaper. */
const MAX_FSYNC_FILES = 256;
/**
 * From this size on an upload is unpacked in the unpacking thread: there it cost 20-40% less of
 * the agent's CPU per 100 MB (its full collections mark a small heap) and runs beside the
 * receiving thread; below it the thread's start (its module load: ~1 s measured at load 14) would
 * not hide behind the transfer. test/bench/results/cold-upload-issue16.md has the figures.
 */
const DEFAULT_THREAD_FROM_BYTES = 8 * 1024 * 1024;
const validateManifest = compileValidator<ReleaseManifest>(manifestSchema);

/**
 * Releases on the box: `releases/<app>/<releaseId>/`, each the verified, unpacked tarball with
 * manifest.json at its root, and beside them `artifacts/<app>/<releaseId>.tar.gz`, the tarball
 * itself, kept so the release can be promoted to another host byte for byte. A release appears
 * only complete (it is unpacked in a private staging dir, `incoming/.tmp-*`, and renamed into
 * place; its tarball follows it), and a failed ingest leaves nothing
 * behind: no staging dir, no .part file, and every existing release untouched.
 */
export class ReleaseStore {
  private readonly home: string;
  private readonly limits: ReleaseLimits;
  private readonly uploadIdleTimeoutMs: number | undefined;
  private readonly syncTimeoutMs: number;
  private readonly requireRoom: boolean;
  private readonly admit: ReleaseStoreOptions['admit'];
  private readonly threadFromBytes: number;
  /** Temp dir -> .part file of every ingest running in this process; cleanupOrphans spares them. */
  private readonly active = new Map<string, string>();
  /** The file manifest of every release stored (file-index.ts): what delta uploads reuse. */
  private readonly index: FileIndex;
  /** Per app: what was verified of kept files, by inode (trust.ts), so delta uploads need not hash them again. */
  private readonly trustTables = new Map<string, TrustTable>();

  constructor(options: ReleaseStoreOptions) {
    this.home = path.resolve(options.home);
    this.limits = { ...options.limits };
    this.uploadIdleTimeoutMs = options.uploadIdleTimeoutMs;
    this.syncTimeoutMs = options.syncTimeoutMs ?? 120_000;
    this.requireRoom = options.requireRoom ?? false;
    this.admit = options.admit;
    this.index = new FileIndex(path.join(this.home, 'index'), this.limits.maxEntries);
    this.threadFromBytes = options.threadFromBytes ?? DEFAULT_THREAD_FROM_BYTES;
  }

  private trust(app: string): TrustTable {
    let table = this.trustTables.get(app);
    if (!table) {
      table = new TrustTable(path.join(this.home, 'index', app, 'trusted.json'), this.limits.maxEntries * 4);
      this.trustTables.set(app, table);
    }
    return table;
  }

  get incomingDir(): string {
    return path.join(this.home, 'incoming');
  }

  get releasesDir(): string {
    return path.join(this.home, 'releases');
  }

  releaseDir(app: string, releaseId: string): string {
    requireNames(app, releaseId);
    return path.join(this.releasesDir, app, releaseId);
  }

  has(app: string, releaseId: string): boolean {
    const dir = this.releaseDir(app, releaseId);
    try {
      return lstatSync(dir).isDirectory();
    } catch {
      return false;
    }
  }

  /** Release ids of an app on this box, sorted. */
  async list(app: string): Promise<string[]> {
    requireNames(app);
    let names: string[];
    try {
      names = await readdir(path.join(this.releasesDir, app));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const ids: string[] = [];
    for (const name of names) {
      if (!isReleaseId(name)) continue;
      const st = await lstat(path.join(this.releasesDir, app, name)).catch(() => undefined);
      if (st?.isDirectory()) ids.push(name);
    }
    return ids.sort();
  }

  /** Deletes a release dir; callers make sure no slot references it. */
  async remove(app: string, releaseId: string): Promise<void> {
    requireNames(app, releaseId);
    const removed = await this.index.entries(app, releaseId);
    // The index first: a release being removed is no longer offered as a delta base.
    await this.index.remove(app, releaseId);
    // Its links to files kept releases share move their ctime: noted, so those stay trusted.
    const kept = (await this.list(app)).filter((id) => id !== releaseId);
    const survivors = removed
      ? await trustedSurvivors(this.trust(app), removed, await this.index.known(app, kept), (id) => this.releaseDir(app, id)).catch(() => [])
      : [];
    // A release's directories are read-only (ingest, and agent/build/host-build.ts after a build):
    // writable again so its entries can be removed; its files, which may share inodes with other
    // releases, keep their mode (removing a read-only file needs only its directory's write bit).
    await setTreeWritable(this.releaseDir(app, releaseId), true, { dirsOnly: true }).catch(() => undefined);
    await rm(this.releaseDir(app, releaseId), { recursive: true, force: true });
    await rm(this.artifactPath(app, releaseId), { force: true });
    if (survivors.length) await carryOverAll(this.trust(app), survivors).catch(() => undefined);
  }

  get artifactsDir(): string {
    return path.join(this.home, 'artifacts');
  }

  /** `artifacts/<app>/<releaseId>.tar.gz`: the verified tarball a release was stored from (0600). */
  artifactPath(app: string, releaseId: string): string {
    requireNames(app, releaseId);
    return path.join(this.artifactsDir, app, `${releaseId}${ARTIFACT_SUFFIX}`);
  }

  /** Bytes of the release's kept tarball; null when there is none (stored before tarballs were kept). */
  async artifactSize(app: string, releaseId: string): Promise<number | null> {
    const st = await lstat(this.artifactPath(app, releaseId)).catch(() => undefined);
    return st?.isFile() ? st.size : null;
  }

  /** Release ids of an app that have a kept tarball. */
  async artifactIds(app: string): Promise<string[]> {
    requireNames(app);
    return (await readdirOrEmpty(path.join(this.artifactsDir, app)))
      .filter((name) => name.endsWith(ARTIFACT_SUFFIX))
      .map((name) => name.slice(0, -ARTIFACT_SUFFIX.length))
      .filter(isReleaseId)
      .sort();
  }

  /**
   * For a release stored by a delta upload (it has no upload to keep): packs its tarball from its
   * files (repack.ts) into `artifacts/`, once they are shown to be its content; null for a release
   * without a file index. The tarball appears complete or not at all.
   */
  async repackArtifact(app: string, releaseId: string): Promise<{ bytes: number; sha256: string } | null> {
    const entries = await this.index.entries(app, releaseId);
    if (!entries) return null;
    const manifest = await this.readManifest(app, releaseId);
    const target = this.artifactPath(app, releaseId);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    await mkdir(this.incomingDir, { recursive: true, mode: 0o700 });
    const temp = path.join(this.incomingDir, `${TMP_PREFIX}artifact-${randomBytes(8).toString('hex')}`);
    try {
      const packed = await repackRelease({ dir: this.releaseDir(app, releaseId), entries, mtime: new Date(manifest.commitTime), workDir: this.incomingDir, target: temp });
      if (packed.contentDigest !== manifest.contentDigest) {
        throw new SlipwayError('release_corrupt', `release ${shortSha(releaseId)} of ${app} no longer holds the files it was stored with; it was not packed`, {
          status: 500, details: [`manifest contentDigest: ${manifest.contentDigest}`, `files now: ${packed.contentDigest}`],
          hint: 'a file of the release changed on disk: deploy it again from its commit (deploy push --sha <commit>) and check who writes into releases/',
        });
      }
      await rename(temp, target);
      return { bytes: packed.bytes, sha256: packed.sha256 };
    } finally {
      await rm(temp, { force: true });
    }
  }

  async removeArtifact(app: string, releaseId: string): Promise<void> {
    await rm(this.artifactPath(app, releaseId), { force: true });
  }

  /**
   * Moves the verified upload into `artifacts/`, once its release is published. It is not fsynced:
   * the kernel writes it out within its dirty-page expiry (30 s), and flushing 100 MB at once made
   * the fsyncs right after it wait behind it (the file index's: 36-86 ms instead of 3-4 ms, added
   * to each upload's answer; test/bench/results/cold-upload-issue16.md). A crash before then may
   * leave a short tarball, or none: startup drops one whose size is not the recorded one, the
   * release's tarball is then packed again from its files when it is next asked for (the same
   * bytes, keptTarball in service.ts), and whoever fetches a tarball checks its sha256 (the
   * controller, then the agent it is uploaded to), so a damaged one is refused, never deployed.
   */
  private async keepArtifact(partFile: string, app: string, releaseId: string): Promise<void> {
    const target = this.artifactPath(app, releaseId);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    await rename(partFile, target);
  }

  async readManifest(app: string, releaseId: string): Promise<ReleaseManifest> {
    const dir = this.releaseDir(app, releaseId);
    if (!this.has(app, releaseId)) {
      throw new SlipwayError('release_not_found', `release ${shortSha(releaseId)} of ${app} is not on this host`, {
        status: 404, hint: 'push it first (`deploy push`)',
      });
    }
    const manifest = await loadManifest(dir);
    if (!manifest.ok) {
      throw new SlipwayError('release_corrupt', `release ${shortSha(releaseId)} of ${app} has an unreadable manifest: ${manifest.problem}`, {
        status: 500, details: manifest.details, hint: `push the release again after removing ${dir}`,
      });
    }
    return manifest.value;
  }

  /**
   * Receive and unpack in one pass → verify sha256 → validate manifest.json → verify the unpacked
   * files against the manifest's content digest and the release id → flush → publish by an atomic
   * rename. The archive is unpacked while it arrives, each entry checked by the tar entry policy
   * before it is written, into a staging dir nothing else can see; the release directory only ever
   * appears complete and verified. See receiveUpload for who owns `source` when it is refused.
   */
  async ingest(input: IngestInput): Promise<IngestResult> {
    return this.store(input, 'full');
  }

  /**
   * A delta upload (contract/file-manifest.ts DELTA_BUNDLE): the bundle is received and unpacked
   * like a tarball (same limits, same policy, same sha256 check) into a private dir beside the
   * staging dir, then the release is assembled from its file manifest (assemble.ts), taking the
   * contents it did not carry from kept releases, and from then on it is verified and published
   * exactly like a full upload. A base file gone or changed is delta_base_missing or
   * delta_base_mismatch (409), and nothing is stored: the sender uploads the full tarball.
   */
  async ingestDelta(input: IngestInput): Promise<IngestResult> {
    return this.store(input, 'delta');
  }

  /** Of these file contents (sha256), the ones no kept release of the app holds (by its index). */
  async missingContents(app: string, hashes: readonly string[]): Promise<string[]> {
    const known = await this.index.known(app, await this.list(app));
    return hashes.filter((hash) => !known.has(hash));
  }

  private async store(input: IngestInput, kind: 'full' | 'delta'): Promise<IngestResult> {
    const { app, releaseId, sha256 } = input;
    // The source may fail while we are still preparing (say, the client hangs up): its error is
    // reported when the upload reads it, and must not crash the agent as an unhandled 'error'.
    input.source.on('error', ignoreError);
    requireNames(app, releaseId);
    requireUploadable(releaseId, sha256);
    const label = `release ${shortSha(releaseId)} of ${app}`;
    const finalDir = this.releaseDir(app, releaseId);
    if (this.has(app, releaseId)) throw releaseExists(label);
    if (this.requireRoom && input.expectedBytes !== undefined) await requireRoomForUpload(this.home, input.expectedBytes, label);

    const appDir = path.join(this.releasesDir, app);
    await mkdir(appDir, { recursive: true, mode: 0o755 });
    await mkdir(this.incomingDir, { recursive: true, mode: 0o700 });
    const partFile = partPath(this.incomingDir, sha256);
    const tmpDir = path.join(await this.stagingParent(appDir), `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    // A delta upload's bundle is unpacked beside the staging dir (cleanupOrphans knows the name).
    const bundleDir = `${tmpDir}.bundle`;
    this.active.set(tmpDir, partFile);
    // The .part is this ingest's only once its upload was received: a second upload of the same
    // bytes is refused while the first one's .part is still arriving, and must not remove it.
    let partIsMine = false;
    let extraction: Extraction | undefined;
    const clock = new StepClock();
    try {
      const received = await this.receiveAndUnpack(input, partFile, kind === 'full' ? tmpDir : bundleDir, label);
      const { bytes, unpacked, receivedAt } = received;
      clock.lap('receive', receivedAt);
      clock.lap('unpackTail');
      extraction = received.extraction;
      partIsMine = true;
      const made = kind === 'full' ? { ...unpacked, delta: undefined } : await this.assembleFromBundle(bundleDir, tmpDir, app, label, unpacked);
      const manifest = await verifiedManifest(tmpDir, { app: input.project ?? app, releaseId, label }, made.contents);
      input.accept?.(manifest);
      this.admit?.(manifest, made.contents, label);
      if (input.deployedBy !== undefined) await writeDeploymentInfo(tmpDir, manifest, input.deployedBy, new Date(), input.deployment);
      // Extraction left the tree free of group/other write and the root private. The release is
      // read-only to its owner too (the agent's user, which the app processes run as): an app
      // that writes into its own code fails (EACCES) instead of changing a release that a
      // rollback would serve again. Its shared dir is where it writes. The root keeps its owner's
      // write bit until it is renamed into place (a directory moved to another parent needs it).
      await setTreeWritable(tmpDir, false);
      await chmod(tmpDir, 0o755);
      clock.lap('verify');
      if (kind === 'full') await this.makeDurable(extraction, tmpDir, label);
      else await this.syncAssembled(tmpDir, made, input.deployedBy !== undefined ? [DEPLOYMENT_INFO_FILE] : [], label);
      clock.lap('sync');
      await publish(tmpDir, finalDir, label);
      await chmod(finalDir, 0o555);
      if (input.keep) await input.keep(partFile).catch(() => undefined);
      if (kind === 'full') await this.keepArtifact(partFile, app, releaseId);
      else await rm(partFile, { force: true });
      // After the publish: a crash before this leaves a release that is only not a delta base.
      await this.index.write(app, releaseId, made.contents.filter((entry) => entry.path !== MANIFEST_FILE))
        .catch(() => undefined);
      if (kind === 'delta') {
        // Verified in this ingest, links and modes now final: trusted as they are (trust.ts).
        await rm(bundleDir, { recursive: true, force: true, maxRetries: 3 });
        await noteRelease(this.trust(app), finalDir, made.contents).catch(() => undefined);
      }
      clock.lap('publish');
      return {
        dir: finalDir, manifest, bytes, unpackedBytes: made.bytes, entries: made.entries,
        ...(made.delta ? { delta: made.delta } : {}), timings: clock.timings,
      };
    } catch (error) {
      await rm(tmpDir, { recursive: true, force: true, maxRetries: 3 });
      if (partIsMine) await rm(partFile, { force: true });
      if (error instanceof SlipwayError) throw error;
      throw new SlipwayError('ingest_failed', `${label}: ${errorMessage(error)}`, {
        status: 500, cause: error, hint: 'check the agent log; existing releases were not touched',
      });
    } finally {
      extraction?.close();
      // After the keep and the .part's move: a relay GET following the upload has its own descriptor.
      input.arriving?.ended();
      await rm(bundleDir, { recursive: true, force: true, maxRetries: 3 });
      this.active.delete(tmpDir);
    }
  }

  /** Assembles the release at `tmpDir` from an unpacked delta bundle; its manifest.json copied as sent. */
  private async assembleFromBundle(
    bundleDir: string, tmpDir: string, app: string, label: string, unpacked: ExtractResult,
  ): Promise<{ contents: ContentEntry[]; bytes: number; entries: number; delta: DeltaStats; fresh: string[] }> {
    const bundle = readBundle(unpacked, bundleDir, label);
    const files = await readFile(path.join(bundleDir, DELTA_BUNDLE.files), 'utf8');
    const entries = decodeFileManifest(files, this.limits.maxEntries);
    const made = await assembleRelease({
      root: tmpDir, entries, objects: bundle.objects, known: await this.index.known(app, await this.list(app)),
      releaseDir: (id) => this.releaseDir(app, id), limits: this.limits, label, trust: this.trust(app),
    });
    await copyFile(path.join(bundleDir, DELTA_BUNDLE.manifest), path.join(tmpDir, MANIFEST_FILE));
    await chmod(path.join(tmpDir, MANIFEST_FILE), 0o644);
    const manifestEntry = unpacked.contents.find((entry) => entry.path === DELTA_BUNDLE.manifest)!;
    return {
      contents: [...made.contents, { ...manifestEntry, path: MANIFEST_FILE }],
      bytes: made.bytes,
      entries: made.contents.length + 1,
      delta: { received: made.received, linked: made.linked, copied: made.copied },
      fresh: [...made.fresh, MANIFEST_FILE],
    };
  }

  /** Receives the upload into `partFile` while unpacking it into `tmpDir`; the .part is gone afterwards. */
  private async receiveAndUnpack(
    input: IngestInput, partFile: string, tmpDir: string, label: string,
  ): Promise<{ extraction: Extraction; bytes: number; unpacked: ExtractResult; receivedAt: number }> {
    // Follows the .part file as the upload fills it; the upload itself never waits for it.
    const inThread = (input.expectedBytes ?? Infinity) >= this.threadFromBytes;
    const extraction = (inThread ? startExtractionInWorker : startExtraction)(partFile, tmpDir, { maxEntries: this.limits.maxEntries, maxUnpackedBytes: this.limits.maxUnpackedBytes });
    let upload;
    try {
      upload = await receiveUpload(input.source, {
        incomingDir: this.incomingDir,
        expectedSha256: input.sha256,
        maxBytes: this.limits.maxReleaseBytes,
        ...(input.expectedBytes === undefined ? {} : { expectedBytes: input.expectedBytes }),
        ...(this.uploadIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.uploadIdleTimeoutMs }),
        // The .part is read back from the page cache while it is written, and deleted once
        // unpacked; after a crash it is an orphan cleanupOrphans() deletes, so syncing it would
        // be wasted I/O.
        durable: false,
        onWritten: (bytes) => {
          extraction.grew(bytes);
          input.arriving?.written(partFile, bytes);
        },
      });
      input.arriving?.received();
    } catch (error) {
      // The upload's own failure (size, length, checksum, disk, dropped link) wins over whatever
      // the extraction of a partial or wrong archive ran into: it is what the sender must fix.
      await extraction.abort();
      throw withContext(error, label, 'upload');
    }
    const receivedAt = performance.now();
    try {
      return { extraction, bytes: upload.bytes, unpacked: await extraction.finish(upload.bytes), receivedAt };
    } catch (error) {
      await rm(upload.path, { force: true });
      throw withContext(error, label, 'unpack');
    }
  }

  /**
   * Where a release is unpacked before it is published: `incoming/`, private (0700) and outside
   * `releases/`, so nothing there sees a half-made or refused release even briefly. The rename
   * into place needs one filesystem; should `releases/` be mounted apart, beside the release.
   */
  private async stagingParent(appDir: string): Promise<string> {
    const [incoming, releases] = await Promise.all([stat(this.incomingDir), stat(appDir)]);
    return incoming.dev === releases.dev ? this.incomingDir : appDir;
  }

  /**
   * Removes what an interrupted ingest leaves: `incoming/*.part`, staging dirs `incoming/.tmp-*`
   * and `releases/<app>/.tmp-*`. Call on agent start; anything an ingest of this process is
   * still using is left alone.
   */
  async cleanupOrphans(): Promise<OrphanCleanup> {
    const removed: string[] = [];
    const inUse = (target: string): boolean => [...this.active].some(([tmpDir, partFile]) =>
      target === partFile || target === tmpDir || target.startsWith(`${tmpDir}.`));
    const remove = async (target: string): Promise<void> => {
      if (inUse(target)) return;
      await rm(target, { recursive: true, force: true, maxRetries: 3 });
      removed.push(target);
    };
    for (const name of await readdirOrEmpty(this.incomingDir)) {
      // `.tmp-x.discard-y` (a failed extraction's trash) also starts with the prefix.
      if (name.endsWith(PART_SUFFIX) || name.startsWith(TMP_PREFIX)) await remove(path.join(this.incomingDir, name));
    }
    for (const app of await readdirOrEmpty(this.releasesDir)) {
      if (!isAppName(app)) continue;
      const appDir = path.join(this.releasesDir, app);
      for (const name of await readdirOrEmpty(appDir)) {
        // `.tmp-x.discard-y` (a failed extraction's trash) also starts with the prefix.
        if (name.startsWith(TMP_PREFIX)) await remove(path.join(appDir, name));
      }
    }
    return { removed };
  }

  /**
   * Writes the new release to disk before it is published, so a power cut can never leave a
   * published release with empty files or missing entries. Large files were flushed while the
   * upload still arrived; what is left is an fsync of each small file and directory, unless there
   * are too many small files (node_modules): then one `sync -f` (syncfs) of the file system.
   * Either way only after the root's mode is final.
   */
  private async makeDurable(extraction: Extraction, dir: string, label: string): Promise<void> {
    let synced: boolean;
    let timer: NodeJS.Timeout | undefined;
    try {
      // An fsync cannot be cancelled; like a `sync -f` past its deadline, it is left to finish.
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${this.syncTimeoutMs} ms`)), this.syncTimeoutMs);
      });
      synced = await Promise.race([extraction.sync(MAX_FSYNC_FILES), deadline]);
    } catch (error) {
      throw new SlipwayError('release_sync_failed', `${label}: flushing the unpacked release to disk failed: ${errorMessage(error)}`, {
        status: isDiskFull(error) ? 507 : 500, cause: error, hint: 'check the disk (dmesg, df) and push again',
      });
    } finally {
      clearTimeout(timer);
    }
    if (!synced) await this.flush(dir, label);
  }

  /**
   * Makes a release assembled from a delta upload durable: its new data (received and copied
   * files, the manifest) and every directory, not the hardlinked files, already on disk
   * (sync-assembled.ts); one `sync -f` when that is too many fsyncs.
   */
  private async syncAssembled(dir: string, made: { contents: ContentEntry[]; fresh?: string[] }, written: string[], label: string): Promise<void> {
    let synced: boolean;
    try {
      synced = await syncAssembled(dir, made.contents, [...(made.fresh ?? []), ...written], MAX_FSYNC_FILES);
    } catch (error) {
      throw new SlipwayError('release_sync_failed', `${label}: flushing the assembled release to disk failed: ${errorMessage(error)}`, {
        status: isDiskFull(error) ? 507 : 500, cause: error, hint: 'check the disk (dmesg, df) and push again',
      });
    }
    if (!synced) await this.flush(dir, label);
  }

  private async flush(dir: string, label: string): Promise<void> {
    const result = await runCommand(['sync', '-f', dir], { timeoutMs: this.syncTimeoutMs });
    if (result.exitCode !== 0) {
      throw new SlipwayError('release_sync_failed', `${label}: flushing the unpacked release to disk failed${result.timedOut ? ` (timed out after ${this.syncTimeoutMs} ms)` : ''}`, {
        status: 500, details: result.stderr ? [outputTail(result.stderr, 5)] : undefined,
        hint: 'check the disk (dmesg, df) and push again',
      });
    }
  }
}

function ignoreError(): void { /* surfaced by receiveUpload's read instead */ }

/** Times consecutive steps: each lap is the ms since the previous one (or since the clock started). */
class StepClock {
  readonly timings: IngestTimings = { receive: 0, unpackTail: 0, verify: 0, sync: 0, publish: 0 };
  private last = performance.now();

  lap(step: keyof IngestTimings, at = performance.now()): void {
    this.timings[step] = Math.round(at - this.last);
    this.last = at;
  }
}

const OBJECT_NAME = /^objects\/([0-9a-f]{64})$/;

/**
 * Pure: the received contents of an unpacked delta bundle (sha256 -> file), once the bundle is
 * shown to hold only its three kinds of entries and every content to hash to its name.
 */
function readBundle(unpacked: ExtractResult, bundleDir: string, label: string): { objects: Map<string, string> } {
  const objects = new Map<string, string>();
  const seen = new Set<string>();
  for (const entry of unpacked.contents) {
    const named = OBJECT_NAME.exec(entry.path);
    if (entry.type === 'file' && named) {
      if (named[1] !== entry.sha256) {
        throw new SlipwayError('delta_bundle_invalid', `${label}: the delta upload's ${entry.path} does not hash to its name (sha256 ${entry.sha256.slice(0, 12)}…); nothing was stored`, {
          status: 400, hint: 'push again; the bundle was damaged or not made by `deploy push`',
        });
      }
      objects.set(entry.sha256, path.join(bundleDir, entry.path));
      continue;
    }
    const expected = entry.path === DELTA_BUNDLE.objectsDir ? 'directory' : entry.path === DELTA_BUNDLE.files || entry.path === DELTA_BUNDLE.manifest ? 'file' : null;
    if (expected !== entry.type) {
      throw new SlipwayError('delta_bundle_invalid', `${label}: the delta upload holds ${JSON.stringify(entry.path.slice(0, 200))}, which a delta bundle may not; nothing was stored`, {
        status: 400, hint: `a delta bundle holds only ${DELTA_BUNDLE.files}, ${DELTA_BUNDLE.manifest} and ${DELTA_BUNDLE.objectsDir}/<sha256>; push with \`deploy push\``,
      });
    }
    seen.add(entry.path);
  }
  for (const name of [DELTA_BUNDLE.files, DELTA_BUNDLE.manifest]) {
    if (!seen.has(name)) {
      throw new SlipwayError('delta_bundle_invalid', `${label}: the delta upload has no ${name}; nothing was stored`, {
        status: 400, hint: 'push with `deploy push`',
      });
    }
  }
  return { objects };
}


function requireNames(app: string, releaseId?: string): void {
  if (!isAppName(app)) {
    throw new SlipwayError('invalid_app_name', `app name ${JSON.stringify(app)} is not allowed`, {
      status: 400, hint: 'app names are lowercase letters, digits and dashes, starting with a letter (at most 40)',
    });
  }
  if (releaseId !== undefined && !isReleaseId(releaseId)) {
    throw new SlipwayError('invalid_release_id', `release id ${JSON.stringify(releaseId)} is not allowed`, {
      status: 400, hint: 'a release id is <12 hex of the commit>-<12 hex of the content digest>, as `deploy push` and `deploy releases` show it',
    });
  }
}

/** A new release must carry a content id (older commit-SHA ids name only releases a box already has). */
function requireUploadable(releaseId: string, sha256: string): void {
  if (!isContentReleaseId(releaseId)) {
    throw new SlipwayError('invalid_release_id', `release id ${JSON.stringify(releaseId)} names no content: new releases are named <12 hex of the commit>-<12 hex of the content digest>`, {
      status: 400, hint: 'push with a controller of this version (`deploy push`), which names releases after their content',
    });
  }
  if (!new RegExp(SHA256_PATTERN).test(sha256)) {
    throw new SlipwayError('invalid_sha256', `declared sha256 ${JSON.stringify(sha256)} is not 64 lowercase hex digits`, {
      status: 400, hint: 'send the sha256 of the tarball as 64 lowercase hex digits',
    });
  }
}

/** The staged release's manifest, once it is shown to describe this upload and exactly the files unpacked. */
async function verifiedManifest(
  dir: string, expected: { app: string; releaseId: string; label: string }, contents: ContentEntry[],
): Promise<ReleaseManifest> {
  const { app, releaseId, label } = expected;
  const loaded = await loadManifest(dir);
  if (!loaded.ok) {
    throw new SlipwayError('bad_manifest', `${label}: ${loaded.problem}`, {
      status: 400, details: loaded.details,
      hint: 'build the tarball with `deploy push`, which writes a valid manifest.json at its root',
    });
  }
  const manifest = loaded.value;
  if (manifest.app !== app || manifest.releaseId !== releaseId) {
    throw new SlipwayError('manifest_mismatch',
      `${label}: the tarball's manifest.json is for release ${shortSha(manifest.releaseId)} of ${manifest.app}`, {
        status: 400,
        details: [`expected: app=${app} releaseId=${releaseId}`, `manifest: app=${manifest.app} releaseId=${manifest.releaseId}`],
        hint: 'the upload URL and the tarball disagree; push again from the right repository and commit',
      });
  }
  verifyReleaseContent(manifest, contents, label);
  return manifest;
}

/** Renames the staged release into place, then makes the rename durable. */
async function publish(tmpDir: string, finalDir: string, label: string): Promise<void> {
  try {
    await rename(tmpDir, finalDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another ingest of this release (with a different tarball) finished first.
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw releaseExists(label);
    throw error;
  }
  await fsyncDir(path.dirname(finalDir));
}

function releaseExists(label: string): SlipwayError {
  return new SlipwayError('release_exists', `${label} is already on this host`, {
    status: 409, hint: 'nothing to upload: deploy the existing release',
  });
}

/** Adds which release and which step failed to an error from a lower layer. */
function withContext(error: unknown, label: string, step: string): SlipwayError {
  if (!(error instanceof SlipwayError)) {
    return new SlipwayError('ingest_failed', `${label}: ${step} failed: ${errorMessage(error)}`, {
      status: 500, cause: error, hint: 'check the agent log; existing releases were not touched',
    });
  }
  return new SlipwayError(error.code, `${label}: ${error.message}`, {
    status: error.status, cause: error,
    ...(error.hint === undefined ? {} : { hint: error.hint }),
    details: [...(error.details ?? []), `step: ${step}`],
  });
}

type ManifestLoad = { ok: true; value: ReleaseManifest } | { ok: false; problem: string; details?: string[] };

async function loadManifest(dir: string): Promise<ManifestLoad> {
  const file = path.join(dir, MANIFEST_FILE);
  const st = await lstat(file).catch(() => undefined);
  if (!st) return { ok: false, problem: `${MANIFEST_FILE} is missing from the root of the tarball` };
  // A symlink could point at any file of the release; the manifest must be the real thing.
  if (!st.isFile()) return { ok: false, problem: `${MANIFEST_FILE} is not a regular file` };
  if (st.size > MAX_MANIFEST_BYTES) return { ok: false, problem: `${MANIFEST_FILE} is larger than ${MAX_MANIFEST_BYTES} bytes` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    return { ok: false, problem: `${MANIFEST_FILE} is not valid JSON (${errorMessage(error)})` };
  }
  const result = validateManifest(parsed);
  if (!result.ok) return { ok: false, problem: `${MANIFEST_FILE} is invalid`, details: result.errors };
  return { ok: true, value: result.value };
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

