// The apps' env files as `deploy env` sees them: their keys (never a value), and edits of them.
//
// On disk, for each app (envFileOf: <home>/apps/<app>/shared/.env or apps.<app>.envFile):
//   <file>            mode 0600, the app's variables, read when a slot starts
//   <file>.previous   mode 0600 (beside the file a symlinked <file> points to), the content before the last edit that changed something, kept
//                     so an operator can undo it by hand (cp -p <file>.previous <file>)
// An edit reads the file, applies the change (contract/env-file.ts), and when the text differs
// writes `.previous`, then the new file: temp file 0600 beside it, fsync, rename, fsync of the
// directory. Edits of one app run one after the other.
import { mkdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { editEnvFile, envKeysOf, type AppEnvChange, type AppEnvView } from '../contract/env-file.js';
import { writeAtomic } from '../lib/durable.js';
import { envFileOf, type AgentConfig } from './config.js';
import { missingEnvKeys, parseAppEnv, readEnvText } from './envfile.js';

export interface AppEnvDeps {
  config: AgentConfig;
  /** The keys the app's live release requires; null without a live release (or when its spec cannot be read). */
  requiredEnv(app: string): readonly string[] | null;
  logger: Pick<Logger, 'info'>;
}

export const PREVIOUS_SUFFIX = '.previous';

export class AppEnvFiles {
  /** The tail of each app's chain of edits: the next edit starts after it. */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: AppEnvDeps) {}

  fileOf(app: string): string {
    return envFileOf(this.deps.config, app);
  }

  /** The file's keys in file order, when it was written, and what the live release lacks. */
  async view(app: string): Promise<AppEnvView> {
    const file = this.fileOf(app);
    const read = await readEnvText(file, app);
    const env = parseAppEnv(read?.text ?? '', file, app);
    const required = this.deps.requiredEnv(app);
    const mode = read ? ((await stat(file)).mode & 0o777).toString(8) : '600';
    return {
      file, keys: read ? envKeysOf(read.text) : [], mode,
      updatedAt: read ? read.mtime.toISOString() : null,
      missing: required === null ? null : missingEnvKeys(env, required),
    };
  }

  /** Applies a change after the app's earlier ones; a failed edit does not stop later ones. */
  edit(app: string, request: { set: Record<string, string>; unset: string[] }): Promise<AppEnvChange> {
    const previous = this.chains.get(app) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.editNow(app, request));
    const tail = next.catch(() => undefined);
    this.chains.set(app, tail);
    void tail.then(() => { if (this.chains.get(app) === tail) this.chains.delete(app); });
    return next;
  }

  private async editNow(app: string, request: { set: Record<string, string>; unset: string[] }): Promise<AppEnvChange> {
    const file = this.fileOf(app);
    const read = await readEnvText(file, app);
    parseAppEnv(read?.text ?? '', file, app);
    const { text, ...change } = editEnvFile(read?.text ?? '', request);
    // A missing file is created only to hold something.
    if (read === null ? text !== '' : text !== read.text) {
      // A symlinked env file (into a secrets directory, say) is written where it points, and stays a link.
      const target = read === null ? file : await realpath(file);
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      if (read !== null) await writeAtomic(`${target}${PREVIOUS_SUFFIX}`, read.text, 0o600);
      await writeAtomic(target, text, 0o600);
    }
    // Key names only: the values are secrets.
    this.deps.logger.info({ app, added: change.added, changed: change.changed, removed: change.removed }, 'env file edited');
    return change;
  }
}
