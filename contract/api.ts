// The agent's HTTP contract, imported by the agent (server side) and the controller (client side).
import type { Slot } from './names.js';
import type { TlsSummary } from './tls.js';
import type { ReleaseManifest } from './manifest.js';
import type { ErrorBody } from './errors.js';
import type { AppSpec } from './spec.js';

import type { SpecOverrides } from './spec-overrides.js';

/**
 * The agent API's version: a controller talks only to an agent of the same one (controller/compat.ts).
 * 2: environments (env, specOverrides, tag, promotion on requests), kept artifacts, promotion gate.
 */
export const API_VERSION = 2;
/** Header naming who asked (user@host of the controller), recorded in deployments and the audit log. */
export const ACTOR_HEADER = 'x-slipway-actor';
export const SHA256_HEADER = 'x-slipway-sha256';
export const ACTOR_PATTERN = '^[A-Za-z0-9._-]{1,64}@[A-Za-z0-9._:-]{1,255}$';
/**
 * The Host header the controller sends. Its requests reach the agent through an SSH tunnel, so no
 * address in them means anything to the agent; this fixed name is what the agent accepts besides
 * its loopback names (127.0.0.1, localhost, [::1]), which defeats DNS rebinding.
 */
export const AGENT_HOST = 'slipway-agent';
/**
 * What `deploy rollback --to` takes: a release id, or a prefix of at least 7 characters of a
 * release id or of a release's full commit SHA (what `deploy releases` prints is one).
 */
/** An environment's name (deploy.config.json environments, --env). */
export const ENV_NAME_PATTERN = '^[a-z][a-z0-9_-]{0,31}$';
/** A tag a deployment carries (a git tag name, or what a promotion names). */
export const TAG_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._/+-]{0,254}$';
export const RELEASE_REF_PATTERN = '^[0-9a-f][0-9a-f-]{6,127}$';

export type Outcome = 'succeeded' | 'failed' | 'rolled_back';
/** Where a failed deployment stopped: before traffic moved (nothing changed) or after. */
export type FailurePhase = 'before_switch' | 'after_switch';

/** One process of a slot, as its layout recorded it and PM2 runs it. */
export interface SlotProcessStatus {
  /** The process's name in the release's spec ("web" for a legacy app). */
  name: string;
  pm2Name: string;
  /** null for a worker without a port. */
  port: number | null;
  instances: number;
  /** Instances PM2 reports online. */
  online: number;
  restarts: number;
  /** PM2's status (folded over instances), null when PM2 does not know the process. */
  status: string | null;
  health: { ok: boolean; status?: number; error?: string; ms: number } | null;
}

export interface SlotStatus {
  slot: Slot;
  /** The port of the slot's first listening process (null when it has none). */
  port: number | null;
  releaseId: string | null;
  state: string;
  live: boolean;
  process: { status: string; pid: number | null; restarts: number; cwd: string | null } | null;
  health: { ok: boolean; status?: number; error?: string; ms: number } | null;
  /** Every process of the slot (absent from agents that predate app specs). */
  processes?: SlotProcessStatus[];
}

export interface ReleaseInfo {
  releaseId: string;
  state: string;
  bytes: number;
  createdAt: string;
  manifest: ReleaseManifest;
  slots: Slot[];
}

/**
 * The agent's PM2 daemon. `down`: gone (its apps may live on outside PM2; slot processes cannot be
 * read and rollouts are refused); `recovering`: the agent restarted it and is moving the slots
 * back under it (rollouts wait for the app's lock); `up`: PM2 runs the slots.
 */
export interface Pm2DaemonStatus {
  state: 'up' | 'down' | 'recovering';
  pid: number | null;
  /** When the daemon entered this state (ISO time). */
  since: string;
  /** Why, when not up. */
  message: string | null;
}

export interface AppStatus {
  app: string;
  liveSlot: Slot | null;
  liveReleaseId: string | null;
  generation: number;
  publicUrl: string;
  /** The environment the app's last deployment named (null: none; absent from older agents). */
  env?: string | null;
  /** The tag of the deployment that put the live release live, else its manifest's (null: none). */
  tag?: string | null;
  /** The spec overrides that environment sent, applied to every release of the app (null: none). */
  specOverrides?: SpecOverrides | null;
  /** Absent from agents that predate it. */
  pm2?: Pm2DaemonStatus;
  /** HTTPS of the app (agent/tls); absent without TLS settings. */
  tls?: TlsSummary;
  slots: SlotStatus[];
  releases: ReleaseInfo[];
}

export interface DeploymentEvent {
  type: 'event';
  deploymentId: number;
  step: string;
  status: 'started' | 'ok' | 'failed' | 'info';
  message: string | null;
  at: string;
  elapsedMs: number | null;
}

export interface DeploymentResult {
  type: 'result';
  deploymentId: number;
  app: string;
  kind: 'deploy' | 'switch' | 'rollback';
  outcome: Outcome;
  phase: FailurePhase | null;
  slot: Slot;
  releaseId: string | null;
  liveSlot: Slot | null;
  liveReleaseId: string | null;
  publicUrl: string;
  reason: string | null;
  error: ErrorBody | null;
  stepDurationsMs: Record<string, number>;
}

export type DeploymentStreamLine = DeploymentEvent | DeploymentResult;

export interface DeploymentSummary {
  id: number;
  app: string;
  kind: string;
  releaseId: string | null;
  slot: Slot;
  previousSlot: Slot | null;
  previousRelease: string | null;
  state: string;
  outcome: Outcome | null;
  reason: string | null;
  requestedBy: string;
  startedAt: string;
  endedAt: string | null;
  note: string | null;
  /** --force overrode the target's bad mark. */
  forced: boolean;
  /** The target release's recorded state when the deployment started (e.g. "bad"). */
  targetState: string | null;
  /** For a target marked bad: "cleared" by a clean watch window, or "kept". */
  badMark: 'kept' | 'cleared' | null;
  /** A rollback back in deploy order: the release it left (previousRelease) is marked rolled back. */
  marksPrevious: boolean;
  /** The environment the deployment was asked for (null: none; absent from older agents). */
  env?: string | null;
  /** The deployment's tag, else its release's manifest tag. */
  tag?: string | null;
  /** Where the release was promoted from (deploy promote); null otherwise. */
  promotion?: PromotionInfo | null;
  /** The fleet rollout the deployment is part of (null: none; absent from older agents). */
  rolloutId?: string | null;
  stepDurationsMs?: Record<string, number>;
  events?: Omit<DeploymentEvent, 'type'>[];
}

export interface ReleaseListEntry {
  releaseId: string;
  /** The full commit SHA the release was packed from (several releases may share one). */
  sha: string;
  /** live, standby, rolled_back (good, but rolled back away from by hand), or the recorded state: good, bad, failed, ready. */
  state: string;
  recordedState: string;
  /** Who rolled back away from it, when and why; such a release is a rollback target only with --to. */
  rolledBack: { at: string; by: string; reason: string | null } | null;
  bytes: number;
  createdAt: string;
  liveAt: string | null;
  slots: Slot[];
  branch: string | null;
  author: string;
  commitTime: string;
  dirty: boolean;
  /** The digest of the release's app spec (null: no spec; absent from agents that predate specs). */
  specDigest?: string | null;
}

export interface LockInfo {
  app: string;
  lockId: string;
  holder: string;
  action: string;
  releaseId: string | null;
  since: string;
  expiresAt: string | null;
  deploymentId: number | null;
  stale: boolean;
}

/** GET /notifications: per configured webhook, what waits, what was delivered, and what was given up. */
export interface WebhookStatus {
  webhook: string;
  pending: number;
  delivered: number;
  failed: number;
  /** The oldest pending event once it has failed at least once: attempts so far and why the last one failed. */
  retrying: { event: string; attempts: number; lastError: string | null; nextAttemptAt: string } | null;
  lastDeliveredAt: string | null;
  lastFailure: { event: string; at: string; error: string | null } | null;
}

export interface NotificationsStatus { webhooks: WebhookStatus[] }

/** A distribution of durations: how many, median and 90th percentile (nearest rank), null for none. */
export interface Spread { count: number; medianMs: number | null; p90Ms: number | null }

/** GET /apps/:app/dora: the four DORA figures over a window (definitions in agent/metrics/dora.ts). */
export interface DoraFigures {
  since: string;
  until: string;
  days: number;
  deployments: number;
  perDay: number;
  leadTime: Spread;
  changeFailures: { failed: number; total: number; rate: number | null };
  timeToRestore: Spread & { open: number };
}

/** GET /apps/:app/releases/:releaseId/spec: the app spec a release carries (null: it runs on the agent's legacy config). */
export interface ReleaseSpecView {
  releaseId: string;
  spec: AppSpec | null;
  specDigest: string | null;
}

/** GET /apps/:app/logs: the last lines of each process of a slot, from PM2's log files; env file values masked. */
export interface AppLogs {
  app: string;
  slot: Slot;
  releaseId: string | null;
  /**
   * out/err: the raw lines of each stream (PM2's date prefix included); entries: both streams
   * merged in time order, each with its time (ISO 8601, null when the line has none) and stream.
   */
  processes: { name: string; pm2Name: string; out: string[]; err: string[]; entries: LogEntry[] }[];
}

export type LogStream = 'out' | 'err';

/** One line of a process's output. */
export interface LogEntry { time: string | null; stream: LogStream; text: string }

/**
 * GET /apps/:app/logs/follow: NDJSON, one line per log line as it is written (the live slot's
 * processes, or the slot/process asked for), and a `switch` line when traffic moved to the other
 * slot and the follow moved with it. The stream goes on until the client leaves, or stops reading
 * for so long that the agent ends it (a last `fell_behind` line).
 */
export type LogFollowLine =
  | ({ type: 'line'; slot: Slot; process: string } & LogEntry)
  | { type: 'switch'; from: Slot | null; to: Slot; releaseId: string | null; at: string }
  | { type: 'rotated'; slot: Slot; process: string; stream: LogStream }
  /** The last line when the client left more than the agent buffers unread: the agent ended the follow. */
  | { type: 'fell_behind'; unreadBytes: number; at: string };

/** Why a release may or may not be promoted from an environment (agent/release/promotion-gate.ts). */
export type PromotionGateReason = 'passed' | 'never_deployed' | 'failed' | 'rolled_back' | 'still_watching' | 'too_old';

/** GET /apps/:app/releases/:releaseId/promotion: the source environment's gate for one release. */
export interface PromotionVerdict {
  app: string;
  releaseId: string;
  passed: boolean;
  reason: PromotionGateReason;
  /** What is missing, said for a person ("rolled back there by ...: ..."). */
  message: string;
  /** The deployment the verdict rests on (the release's latest there), if any. */
  deploymentId: number | null;
  /** When that deployment ended successfully; null otherwise. */
  succeededAt: string | null;
  /** sha256 of the tarball the release was stored from (SQLite); null when the host does not have the release. */
  sha256: string | null;
  /** Bytes of the kept tarball; null when none is kept (stored before tarballs were kept). */
  artifactBytes: number | null;
}

/** POST /apps/:app/promotions: a promotion's record on either side (audit; notifications when refused or forced). */
export interface PromotionRecordRequest {
  releaseId: string;
  /** source: the environment promoted from; target: the one promoted to. */
  side: 'source' | 'target';
  event: 'promoted' | 'refused' | 'forced';
  fromEnv: string | null;
  toEnv: string | null;
  /** The other side's host (user@address:port). */
  otherHost: string;
  reason: string | null;
  /** The gate's verdict in words. */
  gate: string;
  sha: string | null;
}

export interface PromotionRecord extends PromotionRecordRequest {
  id: number;
  app: string;
  actor: string;
  at: string;
}

/** What a deployment request carries when it is a promotion (recorded on the target's deployment). */
export interface PromotionInfo {
  from: string | null;
  sourceHost: string;
  forced: boolean;
  reason: string | null;
}

/** A fleet rollout's id (a UUID the controller makes), on each host's deployments and fleet record. */
export const ROLLOUT_ID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
/** A host's name in a fleet (deploy.config.json hosts[].name, or address[:port]). */
export const FLEET_HOST_PATTERN = '^[A-Za-z0-9][A-Za-z0-9.:_-]{0,63}$';

/** How a fleet command ended: every host on the new release, every switched host back, or mixed. */
export type FleetOutcome = 'succeeded' | 'rolled_back' | 'failed';

/**
 * The fleet record (GET/PUT /apps/:app/fleet): written by the controller on every host it reached
 * at the end of a fleet command, so which release the whole fleet is meant to serve is known later
 * (reconcile, drift in status). A controller killed mid-rollout writes none: the previous one stands.
 */
export interface FleetRecord {
  rolloutId: string;
  /** What wrote it: a push, or a fleet rollback / switch / reconcile, or a promotion (deploy promote). */
  kind: 'push' | 'rollback' | 'switch' | 'reconcile' | 'promote';
  /** The release the fleet serves after it (the previous one when the rollout was rolled back). */
  releaseId: string;
  /** The release the rollout tried to put live (= releaseId when it succeeded). */
  attemptedReleaseId: string | null;
  outcome: FleetOutcome;
  /** Names of the hosts the command acted on. */
  hosts: string[];
  /** Hosts left out (unreachable with --skip-unreachable, or outside --hosts): drift by intent. */
  skipped: string[];
  env: string | null;
  actor: string;
  /** --force --reason of a push limited by --hosts, or null. */
  reason: string | null;
  at: string;
}
