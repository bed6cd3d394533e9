import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';

export type Db = Database.Database;

const statementCaches = new WeakMap<Db, Map<string, Database.Statement>>();

/**
 * The prepared statement for `sql` on `db`, compiled once: the stores run a fixed set of SQL
 * texts, and preparing one on every call was the largest CPU cost of a GET /apps/:app.
 */
export function prepared(db: Db, sql: string): Database.Statement {
  let cache = statementCaches.get(db);
  if (!cache) statementCaches.set(db, (cache = new Map()));
  let statement = cache.get(sql);
  if (!statement) cache.set(sql, (statement = db.prepare(sql)));
  return statement;
}

/**
 * Versioned migrations: each entry runs once, in order, inside a transaction, and bumps
 * PRAGMA user_version. Never edit a shipped migration; append a new one.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    live_slot   TEXT CHECK (live_slot IN ('blue', 'green')),
    generation  INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
  );
  CREATE TABLE releases (
    app          TEXT NOT NULL,
    release_id   TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    manifest     TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'good', 'bad', 'failed')),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (app, release_id)
  );
  CREATE TABLE slots (
    app         TEXT NOT NULL,
    slot        TEXT NOT NULL CHECK (slot IN ('blue', 'green')),
    release_id  TEXT,
    state       TEXT NOT NULL CHECK (state IN ('empty', 'starting', 'running', 'stopped', 'failed')),
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (app, slot)
  );
  CREATE TABLE deployments (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    app               TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('deploy', 'switch', 'rollback')),
    release_id        TEXT,
    slot              TEXT NOT NULL CHECK (slot IN ('blue', 'green')),
    previous_slot     TEXT,
    previous_release  TEXT,
    state             TEXT NOT NULL,
    outcome           TEXT CHECK (outcome IN ('succeeded', 'failed', 'rolled_back')),
    reason            TEXT,
    requested_by      TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    ended_at          TEXT
  );
  CREATE INDEX deployments_app ON deployments (app, id);
  CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id  INTEGER NOT NULL REFERENCES deployments (id),
    step           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('started', 'ok', 'failed', 'info')),
    message        TEXT,
    at             TEXT NOT NULL,
    elapsed_ms     INTEGER
  );
  CREATE INDEX events_deployment ON events (deployment_id, id);
  CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    caller   TEXT NOT NULL,
    action   TEXT NOT NULL,
    args     TEXT NOT NULL,
    result   TEXT NOT NULL
  );
  `,
  // 1: deploy locks that survive agent restarts, when a release last served traffic, operator notes.
  `
  CREATE TABLE locks (
    app         TEXT PRIMARY KEY,
    lock_id     TEXT NOT NULL,
    holder      TEXT NOT NULL,
    action      TEXT NOT NULL,
    release_id  TEXT,
    since       TEXT NOT NULL,
    expires_at  TEXT,
    boot_id     TEXT NOT NULL,
    deployment_id INTEGER
  );
  ALTER TABLE releases ADD COLUMN live_at TEXT;
  ALTER TABLE deployments ADD COLUMN note TEXT;
  `,
  // 2: backup runs (one row per run, written when it starts) and restores; queries in agent/backups/store.ts.
  `
  CREATE TABLE backups (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job            TEXT NOT NULL,
    app            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    trigger        TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'deploy')),
    requested_by   TEXT NOT NULL,
    deployment_id  INTEGER,
    status         TEXT NOT NULL CHECK (status IN ('running', 'skipped', 'failed', 'unverified', 'verified')),
    reason         TEXT,
    file           TEXT,
    bytes          INTEGER,
    sha256         TEXT,
    started_at     TEXT NOT NULL,
    ended_at       TEXT,
    duration_ms    INTEGER,
    exit_code      INTEGER,
    signal         TEXT,
    timed_out      INTEGER NOT NULL DEFAULT 0,
    stderr_tail    TEXT,
    pid            INTEGER,
    pid_start      TEXT,
    verified_at    TEXT,
    verify_level   TEXT,
    verification   TEXT,
    pruned_at      TEXT,
    prune_reason   TEXT,
    offsite_status TEXT CHECK (offsite_status IN ('copied', 'failed', 'pruned')),
    offsite_name   TEXT,
    offsite_at     TEXT,
    offsite_error  TEXT
  );
  CREATE INDEX backups_job ON backups (job, id);
  CREATE TABLE backup_restores (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    backup_id     INTEGER NOT NULL REFERENCES backups (id),
    target        TEXT NOT NULL,
    forced        INTEGER NOT NULL DEFAULT 0,
    requested_by  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    reason        TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    duration_ms   INTEGER,
    exit_code     INTEGER,
    stderr_tail   TEXT
  );
  `,
  // 3: rollback semantics. The deploy order of releases (the id of the last push that put each
  // live; switches and rollbacks do not change it), who rolled back away from a release and why,
  // and per deployment whether --force overrode a bad mark, what became of that mark, and whether
  // a rollback marks the release it leaves as rolled back.
  `
  ALTER TABLE releases ADD COLUMN last_deploy_id INTEGER;
  ALTER TABLE releases ADD COLUMN rolled_back_at TEXT;
  ALTER TABLE releases ADD COLUMN rolled_back_by TEXT;
  ALTER TABLE releases ADD COLUMN rolled_back_reason TEXT;
  ALTER TABLE deployments ADD COLUMN forced INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE deployments ADD COLUMN target_state TEXT;
  ALTER TABLE deployments ADD COLUMN bad_mark TEXT CHECK (bad_mark IN ('kept', 'cleared'));
  ALTER TABLE deployments ADD COLUMN marks_previous INTEGER NOT NULL DEFAULT 0;
  UPDATE releases SET last_deploy_id = (
    SELECT MAX(d.id) FROM deployments d
    WHERE d.app = releases.app AND d.release_id = releases.release_id AND d.kind = 'deploy' AND d.outcome = 'succeeded'
  );
  `,
  // 4: the notification outbox (agent/notify/outbox.ts): an event is written in the transaction
  // that records what it reports, and delivered later, in order per webhook, with retries.
  `
  CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook         TEXT NOT NULL,
    app             TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
  );
  CREATE INDEX outbox_pending ON outbox (webhook, state, id);
  `,
  // 5: what each slot runs (one row per process of its release's spec, written when the slot
  // starts, so stopping, status and rollback never guess) and the sticky port assignments.
  `
  CREATE TABLE slot_processes (
    app         TEXT NOT NULL,
    slot        TEXT NOT NULL CHECK (slot IN ('blue', 'green')),
    process     TEXT NOT NULL,
    release_id  TEXT NOT NULL,
    pm2_name    TEXT NOT NULL,
    port        INTEGER,
    instances   INTEGER NOT NULL,
    singleton   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, slot, process)
  );
  CREATE TABLE port_assignments (
    app          TEXT NOT NULL,
    slot         TEXT NOT NULL CHECK (slot IN ('blue', 'green')),
    process      TEXT NOT NULL,
    port         INTEGER NOT NULL UNIQUE,
    assigned_at  TEXT NOT NULL,
    PRIMARY KEY (app, slot, process)
  );
  `,
  // 6: host builds (agent/build/store.ts): one row per release built on this box, with the box's
  // platform as its build platform, per build dir the install key it used or reused, and while it
  // runs the release's paths as uploaded (what a build interrupted by a crash is undone against).
  `
  CREATE TABLE host_builds (
    app            TEXT NOT NULL,
    release_id     TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'built', 'failed')),
    platform       TEXT NOT NULL,
    installs       TEXT NOT NULL DEFAULT '[]',
    deployment_id  INTEGER,
    started_at     TEXT NOT NULL,
    ended_at       TEXT,
    duration_ms    INTEGER,
    error          TEXT,
    uploaded_tree  TEXT,
    PRIMARY KEY (app, release_id)
  );
  `,
  // Environments (issue 13): the environment and tag a deployment was asked for, and the spec
  // overrides an app's environment last sent (applied wherever a release's effective spec is computed).
  `
  ALTER TABLE deployments ADD COLUMN env TEXT;
  ALTER TABLE deployments ADD COLUMN tag TEXT;
  CREATE TABLE app_spec_overrides (
    app         TEXT PRIMARY KEY,
    env         TEXT,
    overrides   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
  );
  `,
  // Promotions (deploy promote): each side's record of a promotion (audit of forced ones, the
  // gate's verdict), and on the target's deployment where the release was promoted from.
  `
  CREATE TABLE promotions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app         TEXT NOT NULL,
    release_id  TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('source', 'target')),
    event       TEXT NOT NULL CHECK (event IN ('promoted', 'refused', 'forced')),
    from_env    TEXT,
    to_env      TEXT,
    other_host  TEXT NOT NULL,
    reason      TEXT,
    gate        TEXT NOT NULL,
    sha         TEXT,
    actor       TEXT NOT NULL,
    at          TEXT NOT NULL
  );
  CREATE INDEX promotions_app ON promotions (app, id);
  ALTER TABLE deployments ADD COLUMN promotion TEXT;
  `,
  // Fleets (part fleet-core, issue 15): the fleet rollout a deployment belongs to, and the last
  // fleet record a controller wrote for the app (which release the whole fleet is on).
  `
  ALTER TABLE deployments ADD COLUMN rollout_id TEXT;
  CREATE INDEX deployments_rollout ON deployments (rollout_id) WHERE rollout_id IS NOT NULL;
  CREATE TABLE fleet_records (
    app         TEXT PRIMARY KEY,
    rollout_id  TEXT NOT NULL,
    record      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
  );
  `,
];

export function openDatabase(file: string): Db {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // The audit trail and lock ids are the agent's business only. SQLite gives its -wal and -shm
  // files the database file's mode, so the file is created 0600 before SQLite first opens it.
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `state database schema v${current} is newer than this agent understands (v${MIGRATIONS.length}); upgrade slipway-agent`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
