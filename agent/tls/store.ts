import { open, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../state/db.js';
import { prepared } from '../state/db.js';
import { fsyncDir } from '../../lib/durable.js';
import type { CertificateFacts } from './certificate.js';

// The certificates nginx serves, on disk and in SQLite. Each installed certificate is its own
// directory <home>/tls/<app>/<fingerprint>/ (fullchain.pem 0644, privkey.pem 0600, directory
// 0700: nginx's master reads them as root), written completely before the include names it, and
// never changed afterwards: whoever reloads nginx next (a switch, another app) loads exactly what
// nginx -t accepted. A renewal is a new directory and a new include; the previous directory stays
// until the new one is proven, then goes. SQLite says which one is live (tls_certificates) and
// keeps every run (tls_runs): the TLS history shown by `deploy tls`.

export interface InstalledCertificate extends CertificateFacts {
  app: string;
  source: 'acme' | 'files';
  dir: string;
  installedAt: string;
}

export type TlsRunOutcome = 'installed' | 'unchanged' | 'skipped' | 'failed';

export interface TlsRun {
  id: number;
  app: string;
  trigger: string;
  actor: string;
  outcome: TlsRunOutcome;
  fingerprint: string | null;
  notAfter: string | null;
  reason: string | null;
  durationMs: number;
  at: string;
}

export const CHAIN_FILE = 'fullchain.pem';
export const KEY_FILE = 'privkey.pem';

async function writeFileSynced(file: string, data: string, mode: number): Promise<void> {
  const handle = await open(file, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class TlsStore {
  constructor(private readonly db: Db, private readonly root: string) {}

  appDir(app: string): string {
    return path.join(this.root, app);
  }

  /** Writes a certificate's own directory (complete before it appears under its final name); returns it. */
  async stage(app: string, fingerprint: string, chainPem: string, keyPem: string): Promise<string> {
    const appDir = this.appDir(app);
    await mkdir(appDir, { recursive: true, mode: 0o700 });
    const dir = path.join(appDir, fingerprint);
    const temp = `${dir}.tmp-${process.pid}`;
    await rm(temp, { recursive: true, force: true });
    await mkdir(temp, { mode: 0o700 });
    try {
      await writeFileSynced(path.join(temp, CHAIN_FILE), chainPem, 0o644);
      await writeFileSynced(path.join(temp, KEY_FILE), keyPem, 0o600);
      await fsyncDir(temp);
      // The same fingerprint staged before (an attempt nginx refused, say) is replaced whole.
      await rm(dir, { recursive: true, force: true });
      await rename(temp, dir);
      await fsyncDir(appDir);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw error;
    }
    return dir;
  }

  /** Removes every certificate directory of the app but `keep` (the live one). */
  async prune(app: string, keep: string | null): Promise<void> {
    const appDir = this.appDir(app);
    const entries = await readdir(appDir).catch(() => [] as string[]);
    for (const entry of entries) {
      const dir = path.join(appDir, entry);
      if (dir !== keep) await rm(dir, { recursive: true, force: true });
    }
  }

  installed(app: string): InstalledCertificate | null {
    const row = prepared(this.db, `SELECT app, source, fingerprint, names, not_before AS notBefore, not_after AS notAfter, issuer, dir,
      installed_at AS installedAt FROM tls_certificates WHERE app = ?`).get(app) as (Omit<InstalledCertificate, 'names'> & { names: string }) | undefined;
    return row ? { ...row, names: JSON.parse(row.names) as string[] } : null;
  }

  recordInstalled(cert: Omit<InstalledCertificate, 'installedAt'>, at: string): void {
    prepared(this.db, `INSERT INTO tls_certificates (app, source, fingerprint, names, not_before, not_after, issuer, dir, installed_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (app) DO UPDATE SET source = excluded.source, fingerprint = excluded.fingerprint, names = excluded.names,
        not_before = excluded.not_before, not_after = excluded.not_after, issuer = excluded.issuer, dir = excluded.dir, installed_at = excluded.installed_at`)
      .run(cert.app, cert.source, cert.fingerprint, JSON.stringify(cert.names), cert.notBefore, cert.notAfter, cert.issuer, cert.dir, at);
  }

  forget(app: string): void {
    prepared(this.db, 'DELETE FROM tls_certificates WHERE app = ?').run(app);
  }

  recordRun(run: Omit<TlsRun, 'id'>): TlsRun {
    const info = prepared(this.db, `INSERT INTO tls_runs (app, trigger, actor, outcome, fingerprint, not_after, reason, duration_ms, at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(run.app, run.trigger, run.actor, run.outcome, run.fingerprint, run.notAfter, run.reason, run.durationMs, run.at);
    return { id: Number(info.lastInsertRowid), ...run };
  }

  runs(app: string, limit = 20): TlsRun[] {
    return prepared(this.db, `SELECT id, app, trigger, actor, outcome, fingerprint, not_after AS notAfter, reason, duration_ms AS durationMs, at
      FROM tls_runs WHERE app = ? ORDER BY id DESC LIMIT ?`).all(app, limit) as TlsRun[];
  }
}
