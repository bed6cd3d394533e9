import { prepared, type Db } from './db.js';
import { SLOTS, type Slot } from '../../contract/names.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import type { PromotionInfo, FleetRecord, PromotionRecord } from '../../contract/api.js';
import type { SpecOverrides } from '../../contract/spec-overrides.js';

export type SlotState = 'empty' | 'starting' | 'running' | 'stopped' | 'failed';
export type ReleaseState = 'ready' | 'good' | 'bad' | 'failed';
export type DeploymentKind = 'deploy' | 'switch' | 'rollback';
export type Outcome = 'succeeded' | 'failed' | 'rolled_back';
export type EventStatus = 'started' | 'ok' | 'failed' | 'info';

export interface AppRow { name: string; liveSlot: Slot | null; generation: number; updatedAt: string }
export interface SlotRow { app: string; slot: Slot; releaseId: string | null; state: SlotState; updatedAt: string }
export interface RolledBackMark { at: string; by: string; reason: string | null }
export type BadMark = 'kept' | 'cleared';
export interface ReleaseRow {
  app: string; releaseId: string; sha256: string; bytes: number; manifest: ReleaseManifest;
  state: ReleaseState; createdAt: string; liveAt: string | null;
  /** The id of the last push that put it live: the deploy order plain rollbacks walk back through. */
  lastDeployId: number | null;
  /** Set when an operator rolled back away from it; cleared when it is activated again. */
  rolledBack: RolledBackMark | null;
}
export interface DeploymentRow {
  id: number; app: string; kind: DeploymentKind; releaseId: string | null; slot: Slot;
  previousSlot: Slot | null; previousRelease: string | null; state: string; outcome: Outcome | null;
  reason: string | null; requestedBy: string; startedAt: string; endedAt: string | null; note: string | null;
  /** --force overrode the target's bad mark. */
  forced: boolean;
  /** The target release's recorded state when the deployment started. */
  targetState: ReleaseState | null;
  /** For a target marked bad: whether a clean watch window cleared the mark. */
  badMark: BadMark | null;
  /** A rollback back in deploy order: once traffic moves, the release it leaves is marked rolled back. */
  marksPrevious: boolean;
  /** The environment the controller named (null: none, or an older controller). */
  env: string | null;
  /** The tag the deployment was asked for (a promotion's or the commit's). */
  tag: string | null;
  /** Where the release was promoted from, when the deployment is a promotion (deploy promote). */
  promotion: PromotionInfo | null;
  /** The fleet rollout this deployment is part of (null: a single-host command). */
  rolloutId: string | null;
}
/** The spec overrides an app's environment last sent, applied to every release of the app. */
export interface AppOverridesRow { app: string; env: string | null; overrides: SpecOverrides; updatedAt: string }
export interface LockRow {
  app: string; lockId: string; holder: string; action: string; releaseId: string | null; since: string;
  expiresAt: string | null; bootId: string; deploymentId: number | null;
}
/** One process of a slot as it was started: what stop, status and the nginx include read. */
export interface SlotProcessRow {
  process: string;
  releaseId: string;
  pm2Name: string;
  /** null for a process without a port (a worker). */
  port: number | null;
  instances: number;
  singleton: boolean;
}
export interface PortAssignmentRow { app: string; slot: Slot; process: string; port: number }
export interface EventRow {
  id: number; deploymentId: number; step: string; status: EventStatus; message: string | null;
  at: string; elapsedMs: number | null;
}

const now = () => new Date().toISOString();

/** The agent's state: SQLite is the source of truth; PM2 and nginx are reconciled against it. */
export class StateStore {
  constructor(private readonly db: Db) {}

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Creates the app's rows on first sight so later updates never need an upsert. */
  ensureApp(app: string): void {
    this.transaction(() => {
      prepared(this.db, 'INSERT OR IGNORE INTO apps (name, live_slot, generation, updated_at) VALUES (?, NULL, 0, ?)').run(app, now());
      for (const slot of SLOTS) {
        prepared(this.db, "INSERT OR IGNORE INTO slots (app, slot, release_id, state, updated_at) VALUES (?, ?, NULL, 'empty', ?)")
          .run(app, slot, now());
      }
    });
  }

  app(app: string): AppRow | undefined {
    const row = prepared(this.db, 'SELECT name, live_slot, generation, updated_at FROM apps WHERE name = ?').get(app) as
      { name: string; live_slot: Slot | null; generation: number; updated_at: string } | undefined;
    return row && { name: row.name, liveSlot: row.live_slot, generation: row.generation, updatedAt: row.updated_at };
  }

  /** Bumps and returns the config generation used as the nginx marker of the next switch. */
  nextGeneration(app: string): number {
    prepared(this.db, 'UPDATE apps SET generation = generation + 1, updated_at = ? WHERE name = ?').run(now(), app);
    return this.app(app)!.generation;
  }

  setLiveSlot(app: string, slot: Slot | null): void {
    prepared(this.db, 'UPDATE apps SET live_slot = ?, updated_at = ? WHERE name = ?').run(slot, now(), app);
  }

  slots(app: string): SlotRow[] {
    const rows = prepared(this.db, 'SELECT app, slot, release_id, state, updated_at FROM slots WHERE app = ? ORDER BY slot').all(app) as
      { app: string; slot: Slot; release_id: string | null; state: SlotState; updated_at: string }[];
    return rows.map((r) => ({ app: r.app, slot: r.slot, releaseId: r.release_id, state: r.state, updatedAt: r.updated_at }));
  }

  slot(app: string, slot: Slot): SlotRow {
    const found = this.slots(app).find((s) => s.slot === slot);
    if (!found) throw new Error(`no slot row for ${app}/${slot}: ensureApp was not called`);
    return found;
  }

  setSlot(app: string, slot: Slot, releaseId: string | null, state: SlotState): void {
    prepared(this.db, 'UPDATE slots SET release_id = ?, state = ?, updated_at = ? WHERE app = ? AND slot = ?')
      .run(releaseId, state, now(), app, slot);
  }

  setSlotState(app: string, slot: Slot, state: SlotState): void {
    prepared(this.db, 'UPDATE slots SET state = ?, updated_at = ? WHERE app = ? AND slot = ?').run(state, now(), app, slot);
  }

  /** The processes the slot was last started with (empty before its first start under a layout). */
  slotLayout(app: string, slot: Slot): SlotProcessRow[] {
    const rows = prepared(this.db, 'SELECT * FROM slot_processes WHERE app = ? AND slot = ? ORDER BY process').all(app, slot) as
      { process: string; release_id: string; pm2_name: string; port: number | null; instances: number; singleton: number }[];
    return rows.map((r) => ({ process: r.process, releaseId: r.release_id, pm2Name: r.pm2_name, port: r.port, instances: r.instances, singleton: r.singleton === 1 }));
  }

  /** Replaces the slot's layout (call inside the transaction that marks the slot starting). */
  setSlotLayout(app: string, slot: Slot, processes: readonly SlotProcessRow[]): void {
    this.transaction(() => {
      prepared(this.db, 'DELETE FROM slot_processes WHERE app = ? AND slot = ?').run(app, slot);
      for (const p of processes) {
        prepared(this.db, 'INSERT INTO slot_processes (app, slot, process, release_id, pm2_name, port, instances, singleton) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          .run(app, slot, p.process, p.releaseId, p.pm2Name, p.port, p.instances, p.singleton ? 1 : 0);
      }
    });
  }

  portAssignments(): PortAssignmentRow[] {
    return prepared(this.db, 'SELECT app, slot, process, port FROM port_assignments ORDER BY port').all() as PortAssignmentRow[];
  }

  /** Records assignments; one taken over from another key (a pinned port won) moves to the new key. */
  addPortAssignments(rows: readonly PortAssignmentRow[]): void {
    this.transaction(() => {
      for (const r of rows) {
        prepared(this.db, 'DELETE FROM port_assignments WHERE port = ? OR (app = ? AND slot = ? AND process = ?)').run(r.port, r.app, r.slot, r.process);
        prepared(this.db, 'INSERT INTO port_assignments (app, slot, process, port, assigned_at) VALUES (?, ?, ?, ?, ?)').run(r.app, r.slot, r.process, r.port, now());
      }
    });
  }

  recordRelease(row: { app: string; releaseId: string; sha256: string; bytes: number; manifest: ReleaseManifest }): void {
    prepared(this.db, 
      "INSERT INTO releases (app, release_id, sha256, bytes, manifest, state, created_at) VALUES (?, ?, ?, ?, ?, 'ready', ?)",
    ).run(row.app, row.releaseId, row.sha256, row.bytes, JSON.stringify(row.manifest), now());
  }

  release(app: string, releaseId: string): ReleaseRow | undefined {
    const row = prepared(this.db, 'SELECT * FROM releases WHERE app = ? AND release_id = ?').get(app, releaseId) as RawRelease | undefined;
    return row && toRelease(row);
  }

  releases(app: string): ReleaseRow[] {
    return (prepared(this.db, 'SELECT * FROM releases WHERE app = ? ORDER BY created_at DESC, rowid DESC').all(app) as RawRelease[]).map(toRelease);
  }

  deleteRelease(app: string, releaseId: string): void {
    prepared(this.db, 'DELETE FROM releases WHERE app = ? AND release_id = ?').run(app, releaseId);
  }

  setReleaseState(app: string, releaseId: string, state: ReleaseState): void {
    prepared(this.db, 'UPDATE releases SET state = ? WHERE app = ? AND release_id = ?').run(state, app, releaseId);
  }

  createDeployment(d: {
    app: string; kind: DeploymentKind; releaseId: string | null; slot: Slot; previousSlot: Slot | null;
    previousRelease: string | null; requestedBy: string; note?: string | null; forced?: boolean; targetState?: ReleaseState | null;
    marksPrevious?: boolean; env?: string | null; tag?: string | null; promotion?: PromotionInfo | null; rolloutId?: string | null;
  }): number {
    const result = prepared(this.db,
      `INSERT INTO deployments (app, kind, release_id, slot, previous_slot, previous_release, state, requested_by, started_at, note, forced, target_state, marks_previous, env, tag, promotion, rollout_id)
       VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(d.app, d.kind, d.releaseId, d.slot, d.previousSlot, d.previousRelease, d.requestedBy, now(), d.note ?? null, d.forced ? 1 : 0,
      d.targetState ?? null, d.marksPrevious ? 1 : 0, d.env ?? null, d.tag ?? null, d.promotion ? JSON.stringify(d.promotion) : null, d.rolloutId ?? null);
    return Number(result.lastInsertRowid);
  }

  /** The tag of the latest deployment of a release that carried one (null: none did). */
  deploymentTag(app: string, releaseId: string): string | null {
    const row = prepared(this.db, 'SELECT tag FROM deployments WHERE app = ? AND release_id = ? AND tag IS NOT NULL ORDER BY id DESC LIMIT 1')
      .get(app, releaseId) as { tag: string } | undefined;
    return row?.tag ?? null;
  }

  /** The overrides (and environment) an app's deployments last sent; null when none ever did. */
  appOverrides(app: string): AppOverridesRow | null {
    const row = prepared(this.db, 'SELECT * FROM app_spec_overrides WHERE app = ?').get(app) as
      { app: string; env: string | null; overrides: string; updated_at: string } | undefined;
    return row ? { app: row.app, env: row.env, overrides: JSON.parse(row.overrides) as SpecOverrides, updatedAt: row.updated_at } : null;
  }

  setAppOverrides(app: string, env: string | null, overrides: SpecOverrides): void {
    prepared(this.db, 'INSERT OR REPLACE INTO app_spec_overrides (app, env, overrides, updated_at) VALUES (?, ?, ?, ?)')
      .run(app, env, JSON.stringify(overrides), now());
  }

  setBadMark(id: number, mark: BadMark): void {
    prepared(this.db, 'UPDATE deployments SET bad_mark = ? WHERE id = ?').run(mark, id);
  }

  setDeploymentState(id: number, state: string): void {
    prepared(this.db, 'UPDATE deployments SET state = ? WHERE id = ?').run(state, id);
  }

  finishDeployment(id: number, outcome: Outcome, reason: string | null): void {
    prepared(this.db, 'UPDATE deployments SET state = ?, outcome = ?, reason = ?, ended_at = ? WHERE id = ?')
      .run(outcome, outcome, reason, now(), id);
  }

  deployment(id: number): DeploymentRow | undefined {
    const row = prepared(this.db, 'SELECT * FROM deployments WHERE id = ?').get(id) as RawDeployment | undefined;
    return row && toDeployment(row);
  }

  deployments(app: string, limit = 50): DeploymentRow[] {
    return (prepared(this.db, 'SELECT * FROM deployments WHERE app = ? ORDER BY id DESC LIMIT ?').all(app, limit) as RawDeployment[])
      .map(toDeployment);
  }

  /** Every deployment of the app that activated `releaseId`, newest first. */
  deploymentsOfRelease(app: string, releaseId: string, limit = 500): DeploymentRow[] {
    return (prepared(this.db, 'SELECT * FROM deployments WHERE app = ? AND release_id = ? ORDER BY id DESC LIMIT ?').all(app, releaseId, limit) as RawDeployment[])
      .map(toDeployment);
  }

  recordPromotion(p: Omit<PromotionRecord, 'id' | 'at'>): PromotionRecord {
    const at = now();
    const result = prepared(this.db,
      `INSERT INTO promotions (app, release_id, side, event, from_env, to_env, other_host, reason, gate, sha, actor, at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(p.app, p.releaseId, p.side, p.event, p.fromEnv, p.toEnv, p.otherHost, p.reason, p.gate, p.sha, p.actor, at);
    return { ...p, id: Number(result.lastInsertRowid), at };
  }

  promotions(app: string, limit = 50): PromotionRecord[] {
    const rows = prepared(this.db, 'SELECT * FROM promotions WHERE app = ? ORDER BY id DESC LIMIT ?').all(app, limit) as {
      id: number; app: string; release_id: string; side: 'source' | 'target'; event: PromotionRecord['event']; from_env: string | null;
      to_env: string | null; other_host: string; reason: string | null; gate: string; sha: string | null; actor: string; at: string;
    }[];
    return rows.map((r) => ({
      id: r.id, app: r.app, releaseId: r.release_id, side: r.side, event: r.event, fromEnv: r.from_env, toEnv: r.to_env,
      otherHost: r.other_host, reason: r.reason, gate: r.gate, sha: r.sha, actor: r.actor, at: r.at,
    }));
  }

  /** The last fleet record written for the app (null: none yet). */
  fleetRecord(app: string): FleetRecord | null {
    const row = prepared(this.db, 'SELECT record FROM fleet_records WHERE app = ?').get(app) as { record: string } | undefined;
    return row ? JSON.parse(row.record) as FleetRecord : null;
  }

  /** Replaces the app's fleet record (the controller writes one at the end of each fleet rollout). */
  setFleetRecord(app: string, record: FleetRecord): void {
    prepared(this.db, 'INSERT OR REPLACE INTO fleet_records (app, rollout_id, record, updated_at) VALUES (?, ?, ?, ?)')
      .run(app, record.rolloutId, JSON.stringify(record), now());
  }

  unfinishedDeployments(): DeploymentRow[] {
    return (prepared(this.db, 'SELECT * FROM deployments WHERE outcome IS NULL ORDER BY id').all() as RawDeployment[]).map(toDeployment);
  }

  addEvent(e: { deploymentId: number; step: string; status: EventStatus; message?: string | null; elapsedMs?: number | null }): EventRow {
    const at = now();
    const result = prepared(this.db, 
      'INSERT INTO events (deployment_id, step, status, message, at, elapsed_ms) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(e.deploymentId, e.step, e.status, e.message ?? null, at, e.elapsedMs ?? null);
    return {
      id: Number(result.lastInsertRowid), deploymentId: e.deploymentId, step: e.step, status: e.status,
      message: e.message ?? null, at, elapsedMs: e.elapsedMs ?? null,
    };
  }

  events(deploymentId: number): EventRow[] {
    const rows = prepared(this.db, 'SELECT * FROM events WHERE deployment_id = ? ORDER BY id').all(deploymentId) as
      { id: number; deployment_id: number; step: string; status: EventStatus; message: string | null; at: string; elapsed_ms: number | null }[];
    return rows.map((r) => ({
      id: r.id, deploymentId: r.deployment_id, step: r.step, status: r.status, message: r.message, at: r.at, elapsedMs: r.elapsed_ms,
    }));
  }

  lock(app: string): LockRow | undefined {
    const r = prepared(this.db, 'SELECT * FROM locks WHERE app = ?').get(app) as RawLock | undefined;
    return r && toLock(r);
  }

  /**
   * Takes the app's deploy lock unless a live holder has it. A lock is stale, and taken over, when
   * the agent that wrote it has restarted (its rollouts were resolved by crash recovery), or when
   * it was reserved by a controller that never started its rollout before the lease ran out.
   */
  acquireLock(lock: Omit<LockRow, 'since'>, now = new Date()): { ok: true; lock: LockRow; replaced: LockRow | null } | { ok: false; held: LockRow } {
    return this.transaction(() => {
      const held = this.lock(lock.app);
      if (held && !isStaleLock(held, lock.bootId, now) && held.lockId !== lock.lockId) return { ok: false as const, held };
      const row: LockRow = { ...lock, since: held && held.lockId === lock.lockId ? held.since : now.toISOString() };
      prepared(this.db, 
        `INSERT OR REPLACE INTO locks (app, lock_id, holder, action, release_id, since, expires_at, boot_id, deployment_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(row.app, row.lockId, row.holder, row.action, row.releaseId, row.since, row.expiresAt, row.bootId, row.deploymentId);
      return { ok: true as const, lock: row, replaced: held && held.lockId !== lock.lockId ? held : null };
    });
  }

  /** Releases the lock if `lockId` still holds it (or unconditionally when lockId is null). */
  releaseLock(app: string, lockId: string | null): boolean {
    const result = lockId === null
      ? prepared(this.db, 'DELETE FROM locks WHERE app = ?').run(app)
      : prepared(this.db, 'DELETE FROM locks WHERE app = ? AND lock_id = ?').run(app, lockId);
    return result.changes > 0;
  }

  markReleaseLive(app: string, releaseId: string): void {
    prepared(this.db, 'UPDATE releases SET live_at = ? WHERE app = ? AND release_id = ?').run(now(), app, releaseId);
  }

  /** Records that push `deploymentId` put the release live: its place in the deploy order. */
  markReleaseDeployed(app: string, releaseId: string, deploymentId: number): void {
    prepared(this.db, 'UPDATE releases SET last_deploy_id = ? WHERE app = ? AND release_id = ?').run(deploymentId, app, releaseId);
  }

  markRolledBack(app: string, releaseId: string, mark: { by: string; reason: string | null }): void {
    prepared(this.db, 'UPDATE releases SET rolled_back_at = ?, rolled_back_by = ?, rolled_back_reason = ? WHERE app = ? AND release_id = ?')
      .run(now(), mark.by, mark.reason, app, releaseId);
  }

  clearRolledBack(app: string, releaseId: string): void {
    prepared(this.db, 'UPDATE releases SET rolled_back_at = NULL, rolled_back_by = NULL, rolled_back_reason = NULL WHERE app = ? AND release_id = ?')
      .run(app, releaseId);
  }

  setDeploymentNote(id: number, note: string | null): void {
    prepared(this.db, 'UPDATE deployments SET note = ? WHERE id = ?').run(note, id);
  }

  audit(entry: { caller: string; action: string; args: unknown; result: string }): void {
    prepared(this.db, 'INSERT INTO audit (at, caller, action, args, result) VALUES (?, ?, ?, ?, ?)')
      .run(now(), entry.caller, entry.action, JSON.stringify(entry.args ?? {}), entry.result);
  }

  auditRows(limit = 100): { at: string; caller: string; action: string; args: string; result: string }[] {
    return prepared(this.db, 'SELECT at, caller, action, args, result FROM audit ORDER BY id DESC LIMIT ?').all(limit) as
      { at: string; caller: string; action: string; args: string; result: string }[];
  }
}

export function isStaleLock(lock: LockRow, currentBootId: string, now: Date): boolean {
  if (lock.bootId !== currentBootId) return true;
  return lock.deploymentId === null && lock.expiresAt !== null && Date.parse(lock.expiresAt) <= now.getTime();
}

interface RawLock {
  app: string; lock_id: string; holder: string; action: string; release_id: string | null; since: string;
  expires_at: string | null; boot_id: string; deployment_id: number | null;
}
function toLock(r: RawLock): LockRow {
  return {
    app: r.app, lockId: r.lock_id, holder: r.holder, action: r.action, releaseId: r.release_id, since: r.since,
    expiresAt: r.expires_at, bootId: r.boot_id, deploymentId: r.deployment_id,
  };
}

interface RawRelease {
  app: string; release_id: string; sha256: string; bytes: number; manifest: string; state: ReleaseState; created_at: string; live_at: string | null;
  last_deploy_id: number | null; rolled_back_at: string | null; rolled_back_by: string | null; rolled_back_reason: string | null;
}
function toRelease(r: RawRelease): ReleaseRow {
  return {
    app: r.app, releaseId: r.release_id, sha256: r.sha256, bytes: r.bytes,
    manifest: JSON.parse(r.manifest) as ReleaseManifest, state: r.state, createdAt: r.created_at, liveAt: r.live_at,
    lastDeployId: r.last_deploy_id,
    rolledBack: r.rolled_back_at === null ? null : { at: r.rolled_back_at, by: r.rolled_back_by ?? 'unknown', reason: r.rolled_back_reason },
  };
}

interface RawDeployment {
  id: number; app: string; kind: DeploymentKind; release_id: string | null; slot: Slot; previous_slot: Slot | null;
  previous_release: string | null; state: string; outcome: Outcome | null; reason: string | null; requested_by: string;
  started_at: string; ended_at: string | null; note: string | null; forced: number; target_state: ReleaseState | null; bad_mark: BadMark | null;
  marks_previous: number; env: string | null; tag: string | null; promotion?: string | null; rollout_id?: string | null;
}
function toDeployment(r: RawDeployment): DeploymentRow {
  return {
    id: r.id, app: r.app, kind: r.kind, releaseId: r.release_id, slot: r.slot, previousSlot: r.previous_slot,
    previousRelease: r.previous_release, state: r.state, outcome: r.outcome, reason: r.reason,
    requestedBy: r.requested_by, startedAt: r.started_at, endedAt: r.ended_at, note: r.note,
    forced: r.forced === 1, targetState: r.target_state, badMark: r.bad_mark, marksPrevious: r.marks_previous === 1,
    env: r.env ?? null, tag: r.tag ?? null, promotion: r.promotion ? JSON.parse(r.promotion) as PromotionInfo : null,
    rolloutId: r.rollout_id ?? null,
  };
}
