/**
 * What a test can observe about the box a stack runs on, to assert the effect of a fault rather
 * than only its error: trees on disk, disk usage, leftovers of an interrupted ingest, what nginx
 * serves, what the state database holds, and whether a secret shows up anywhere.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { lstat, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { runCommand } from '../../lib/exec.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { APP, type Stack } from './stack.js';
import { readState } from './state.js';
import { waitFor } from './wait.js';
import type { CraftEntry } from './crafted-tar.js';
import { randomCommit, releaseManifest } from './release-content.js';
import { releaseIdFor } from '../../contract/release-content.js';

export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/**
 * Every path under `root` with its type and mode, and for files size, mtime and (with `hash`)
 * content hash. Directories are listed without mtime: creating and removing a temp entry in one
 * changes it without changing anything a user could see.
 */
export async function snapshotTree(
  root: string,
  options: { exclude?: (rel: string) => boolean; hash?: boolean } = {},
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(path.join(root, rel))).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const name of names) {
      const child = rel ? `${rel}/${name}` : name;
      if (options.exclude?.(child)) continue;
      const full = path.join(root, child);
      const st = await lstat(full).catch(() => undefined);
      if (!st) continue;
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[child] = `link ${await readlink(full)}`;
      else if (st.isDirectory()) {
        out[child] = `dir ${mode}`;
        await walk(child);
      } else if (st.isFile()) {
        out[child] = `file ${mode} ${st.size} ${st.mtimeMs}${options.hash ? ` ${sha256Hex(await readFile(full))}` : ''}`;
      } else out[child] = `special ${mode}`;
    }
  };
  await walk('');
  return out;
}

/** Bytes `du` counts under `dir`, leaving out basenames matching `excludes` (du --exclude patterns). */
export async function duBytes(dir: string, excludes: string[] = []): Promise<number> {
  const result = await runCommand(['du', '-s', '-B1', ...excludes.map((e) => `--exclude=${e}`), dir], { timeoutMs: 30_000 });
  if (result.exitCode !== 0) throw new Error(`du ${dir} failed: ${result.stderr}`);
  return Number(result.stdout.split('\t')[0]);
}

/** What an interrupted ingest could leave in SLIPWAY_HOME: `incoming/*` and `releases/<app>/.tmp-*`. */
export async function ingestLeftovers(home: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir(path.join(home, 'incoming')).catch(() => [] as string[])) found.push(`incoming/${name}`);
  for (const app of await readdir(path.join(home, 'releases')).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(home, 'releases', app)).catch(() => [] as string[])) {
      if (name.startsWith('.')) found.push(`releases/${app}/${name}`);
    }
  }
  return found;
}

/**
 * Records every inotify event in `dir`. `settle()` writes a marker and waits until its event
 * arrives: events are delivered in order, so everything that happened before has been seen.
 */
export function watchDir(dir: string): { settle(): Promise<string[]>; close(): void } {
  const events: string[] = [];
  const watcher: FSWatcher = watch(dir, (event, name) => { events.push(`${event} ${String(name)}`); });
  return {
    async settle() {
      const marker = `.marker-${randomBytes(4).toString('hex')}`;
      await writeFile(path.join(dir, marker), '');
      await waitFor(() => events.some((e) => e.endsWith(marker)), { description: `the watch on ${dir} to see ${marker}` });
      await rm(path.join(dir, marker));
      return events.filter((e) => !e.includes('.marker-'));
    },
    close() { watcher.close(); },
  };
}

export interface LiveView { status: number; release: string | undefined; slot: string | undefined; generation: string | undefined }

/** What nginx serves right now on a fresh connection. */
export async function liveView(stack: Stack): Promise<LiveView> {
  const answer = await stack.get('/');
  const body = answer.status === 200 ? JSON.parse(answer.body) as { release?: string; slot?: string } : {};
  return {
    status: answer.status,
    release: body.release,
    slot: body.slot,
    generation: answer.headers['x-slipway-generation'] as string | undefined,
  };
}

/** The parts of the state database a refused request must leave exactly as they were. */
export function stateFingerprint(stack: Stack) {
  const state = readState(stack.home, APP);
  return {
    liveSlot: state.app?.liveSlot ?? null,
    generation: state.app?.generation ?? null,
    slots: state.slots.map((s) => `${s.slot} ${s.releaseId ?? '-'} ${s.state}`),
    releases: state.releases.map((r) => `${r.releaseId} ${r.state}`).sort(),
    deployments: state.deployments.map((d) => `${d.id} ${d.kind} ${d.outcome ?? 'running'}`),
    lock: state.lock ? `${state.lock.holder} ${state.lock.action}` : null,
  };
}

/** Every row of every table of the agent's database, as text, for secret scans. */
export function dumpDatabase(home: string): string {
  const db = new Database(path.join(home, 'agent.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    return tables.map(({ name }) => `${name}:\n${(db.prepare(`SELECT * FROM "${name}"`).all() as unknown[]).map((row) => JSON.stringify(row)).join('\n')}`).join('\n');
  } finally {
    db.close();
  }
}

export function auditRows(home: string): { id: number; at: string; caller: string; action: string; args: string; result: string }[] {
  const db = new Database(path.join(home, 'agent.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id, at, caller, action, args, result FROM audit ORDER BY id').all() as
      { id: number; at: string; caller: string; action: string; args: string; result: string }[];
  } finally {
    db.close();
  }
}

/** `where: …context…` for every secret found in any of the texts; empty when nothing leaked. */
export function secretHits(texts: Record<string, string>, secrets: string[]): string[] {
  const hits: string[] = [];
  for (const [where, text] of Object.entries(texts)) {
    for (const secret of secrets) {
      const at = text.indexOf(secret);
      if (at >= 0) hits.push(`${where}: …${text.slice(Math.max(0, at - 120), at + secret.length + 40)}…`);
    }
  }
  return hits;
}

export function agentToken(stack: Stack): string {
  return readFileSync(path.join(stack.dir, 'agent.token'), 'utf8').trim();
}

export interface ApiAnswer { status: number; headers: http.IncomingHttpHeaders; text: string; json: Record<string, unknown> | null }

/**
 * One request straight to the agent's loopback port, as anything running on the box could send
 * it. node:http sends the path verbatim (fetch would normalise `/apps/..` away), and a response
 * that arrives before the server stops reading a large body still counts.
 */
/** A whole HTTP/1.1 answer from raw bytes (status line, headers, body by Content-Length), or null if incomplete. */
function parseRawAnswer(bytes: Buffer): ApiAnswer | null {
  const headEnd = bytes.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const [statusLine, ...headerLines] = bytes.subarray(0, headEnd).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1];
  if (!status) return null;
  const headers: http.IncomingHttpHeaders = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? NaN);
  const body = bytes.subarray(headEnd + 4);
  if (!Number.isFinite(length) || body.length < length) return null;
  const text = body.subarray(0, length).toString('utf8');
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = null;
  }
  return { status: Number(status), headers, text, json };
}

export function agentRequest(
  stack: Stack,
  method: string,
  pathname: string,
  options: { token?: string | null; headers?: Record<string, string>; body?: string | Buffer; json?: unknown } = {},
): Promise<ApiAnswer> {
  const token = options.token === undefined ? agentToken(stack) : options.token;
  const body = options.json === undefined ? options.body : JSON.stringify(options.json);
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const headers: Record<string, string> = {
    ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    ...(options.json === undefined ? {} : { 'content-type': 'application/json' }),
    ...(payload === undefined ? {} : { 'content-length': String(payload.length) }),
    connection: 'close',
    ...options.headers,
  };
  return sendOnce(stack.agentPort, method, pathname, headers, payload).catch(async (error: unknown) => {
    // The refusal can be lost altogether: the agent answers and closes without reading the body,
    // our unread-body bytes make its kernel send a reset, and a reset that arrives first discards
    // the answer from our receive queue. A request whose body was not fully sent cannot have been
    // acted on, so it is sent again (bounded); anything else is the caller's error.
    for (let attempt = 0; attempt < 4 && error instanceof BodyNotSent; attempt++) {
      try {
        return await sendOnce(stack.agentPort, method, pathname, headers, payload);
      } catch (next) {
        error = next;
      }
    }
    throw error instanceof BodyNotSent ? error.cause : error;
  });
}

class BodyNotSent extends Error {}

function sendOnce(port: number, method: string, pathname: string, headers: Record<string, string>, payload: Buffer | undefined): Promise<ApiAnswer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    let sent = false;
    const req = http.request({ host: '127.0.0.1', port, method, path: pathname, headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> | null = null;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${pathname} timed out`)));
    // The agent may answer and close before it has read a body it refuses: our write then fails
    // (EPIPE, ECONNRESET), sometimes before Node has parsed the answer that already arrived. The
    // raw bytes are kept so that answer is still read, whichever comes first.
    const raw: Buffer[] = [];
    req.on('socket', (socket) => socket.on('data', (chunk: Buffer) => raw.push(chunk)));
    req.on('error', (error) => {
      if (answered) return;
      const early = parseRawAnswer(Buffer.concat(raw));
      const reset = ['EPIPE', 'ECONNRESET'].includes((error as NodeJS.ErrnoException).code ?? '');
      if (early && reset) resolve(early);
      else if (reset && !sent) reject(new BodyNotSent(`${method} ${pathname}: connection reset before the body was sent`, { cause: error }));
      else reject(error);
    });
    req.on('finish', () => { sent = true; });
    req.end(payload);
  });
}

/** PUTs a tarball as a release upload, declaring `sha256` (the body's own by default). */
export function putRelease(
  stack: Stack, releaseId: string, body: Buffer, options: { sha256?: string; token?: string | null; app?: string } = {},
): Promise<ApiAnswer> {
  return agentRequest(stack, 'PUT', `/apps/${options.app ?? APP}/releases/${releaseId}`, {
    ...(options.token === undefined ? {} : { token: options.token }),
    headers: { 'content-type': 'application/gzip', 'x-slipway-sha256': options.sha256 ?? sha256Hex(body) },
    body,
  });
}

/** A well-formed id of a release whose files the test never sends (see sealRelease for one it does). */
export const newReleaseId = (): string => releaseIdFor(randomCommit(), randomBytes(32).toString('hex'));

/** A valid manifest for `releaseId`; its content digest only matches files by chance (see sealRelease). */
export function manifestFor(app: string, releaseId: string): ReleaseManifest {
  return { ...releaseManifest(app, releaseId.slice(0, 12).padEnd(40, '0'), releaseId.slice(13).padEnd(64, '0')), releaseId };
}

/** A release of the sample app as a well-behaved packer would write it; hostile tests add to it. */
export function sampleReleaseEntries(app: string, releaseId: string, serverJs: string): CraftEntry[] {
  return [
    { path: './', type: 'dir', mode: 0o755 },
    { path: './manifest.json', body: JSON.stringify(manifestFor(app, releaseId)) },
    { path: './server.js', body: serverJs },
    { path: './message.txt', body: 'crafted release\n' },
  ];
}

/**
 * Deterministic incompressible bytes (AES-128-CTR keystream of a seed): a release big enough to
 * still be uploading when a test cuts the link, identical on every run.
 */
export function seededBytes(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(`key:${seed}`).digest().subarray(0, 16);
  const iv = createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(bytes));
}
