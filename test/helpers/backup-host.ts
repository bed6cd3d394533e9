import fs from 'node:fs/promises';
import path from 'node:path';
import { parseAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { openDatabase, type Db } from '../../agent/state/db.js';
import { BackupService } from '../../agent/backups/service.js';

/**
 * The backup service of one host with one app ("shop"), for service-level tests: a real SQLite
 * database under `root`, and a service built from a given `backups` section. Building another
 * service (to change the config between cases) closes the one before; the database stays.
 */
export interface BackupHost {
  db: Db;
  service(backups: Record<string, unknown>): Promise<BackupService>;
  close(): Promise<void>;
}

export async function openBackupHost(root: string): Promise<BackupHost> {
  const home = path.join(root, 'home');
  await fs.mkdir(home, { recursive: true });
  const envFile = path.join(root, 'shop.env');
  await fs.writeFile(envFile, '', { mode: 0o600 });
  const db = openDatabase(path.join(home, 'agent.db'));
  let current: BackupService | null = null;
  return {
    db,
    async service(backups) {
      await current?.close();
      const config = parseAgentConfig({
        home,
        api: { port: 7070, tokenFile: path.join(root, 'token') },
        nginx: { pidFile: path.join(root, 'nginx.pid'), includeDir: root },
        apps: { shop: { slots: { blue: { port: 3001 }, green: { port: 3002 } }, start: { script: 'server.js' }, public: { listenPort: 8080 }, envFile } },
        backups,
      });
      current = new BackupService({ config, db, logger: createLogger({ level: 'silent' }) });
      return current;
    },
    async close() {
      await current?.close();
      db.close();
    },
  };
}

export const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * The words a backup run records when the disk holding the backups is below its margin, as a
 * regular expression source (the free figure varies; sizes as printed, e.g. "524.3 KB").
 */
export function diskFullPattern(at: { dir: string; mountPoint: string; total: string; margin: string; moment: 'before the dump' | 'after the dump' }): string {
  return `the disk holding the backups is full: (?:\\d+ B|\\d+\\.\\d (?:KB|MB|GB)) free of ${escapeRegExp(at.total)} `
    + `on the filesystem holding ${escapeRegExp(at.dir)} \\(mounted at ${escapeRegExp(at.mountPoint)}\\) ${at.moment}, `
    + `below the margin of ${escapeRegExp(at.margin)} \\(minFreeBytes\\)`;
}
