/**
 * A release whose spec the host does not allow is refused at upload, before it is stored: the
 * real release store unpacks and verifies it, the spec check refuses it, nothing is published.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { ReleaseService } from '../../agent/release/service.js';
import { ReleaseStore } from '../../agent/release/store.js';
import { allowedReleaseSpec } from '../../agent/spec/release-spec.js';
import { migrate } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';
import { SlipwayError } from '../../contract/errors.js';
import { checkAppSpec, specDigest } from '../../contract/spec.js';
import { gzip, tarball, type CraftEntry } from '../helpers/crafted-tar.js';
import { contentDigestOfEntries, randomCommit, releaseManifest } from '../helpers/release-content.js';

const APP = 'shop';

describe('the spec against the host policy at upload', () => {
  let root: string;
  let config: AgentConfig;
  let store: ReleaseStore;
  let state: StateStore;
  let service: ReleaseService;

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'slipway-spec-upload-'));
    const home = path.join(root, 'home');
    for (const dir of ['incoming', `releases/${APP}`]) await mkdir(path.join(home, dir), { recursive: true, mode: 0o700 });
    config = parseAgentConfig({
      home, api: { port: 7070, tokenFile: path.join(root, 'token') }, nginx: { pidFile: '/run/nginx.pid', includeDir: '/etc/nginx/slipway' },
      apps: { [APP]: { listen: { ports: [8080] }, serverNames: ['shop.test', '*.shop.test'], maxProcesses: 2 } },
    });
    store = new ReleaseStore({ home, limits: { maxReleaseBytes: 1 << 20, maxUnpackedBytes: 1 << 22, maxEntries: 100 } });
    const db = new Database(':memory:');
    migrate(db);
    state = new StateStore(db);
    state.ensureApp(APP);
    service = new ReleaseService({
      apps: config.apps, state, releases: store, cleanup: async () => ({}) as never, logger: pino({ level: 'silent' }),
      checkManifest: (app, manifest) => { allowedReleaseSpec(app, config.apps[app]!, manifest); },
    });
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const upload = async (rawSpec: unknown | null) => {
    const files: CraftEntry[] = [{ path: 'server.js', body: 'console.log(1)\n' }];
    const manifest = releaseManifest(APP, randomCommit(), contentDigestOfEntries(files));
    if (rawSpec !== null) {
      const checked = checkAppSpec(rawSpec);
      if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
      Object.assign(manifest, { schemaVersion: 3, spec: checked.spec, specDigest: specDigest(checked.spec) });
    }
    const archive = gzip(tarball([{ path: 'manifest.json', body: JSON.stringify(manifest) }, ...files]));
    const result = service.receive({
      app: APP, releaseId: manifest.releaseId, sha256: createHash('sha256').update(archive).digest('hex'),
      source: Readable.from([archive]), expectedBytes: archive.length,
    });
    return { releaseId: manifest.releaseId, result };
  };

  it('refuses a server name and listen port the host does not allow, naming field and setting, and stores nothing', async () => {
    const { releaseId, result } = await upload({
      processes: { web: { script: 'server.js' } },
      routes: [{ serverNames: ['shop.test', 'evil.test'], process: 'web', listenPort: 9999 }],
    });
    const error = await result.then(() => null, (e: unknown) => e as SlipwayError);
    expect(error).toBeInstanceOf(SlipwayError);
    expect(error).toMatchObject({ code: 'spec_refused', status: 422 });
    expect(error!.details).toEqual([
      'routes/0/listenPort: 9999 is not allowed here (agent.json apps.shop.listen.ports allows 8080)',
      'routes/0/serverNames/1: "evil.test" is not allowed here (agent.json apps.shop.serverNames allows shop.test, *.shop.test)',
    ]);
    expect(store.has(APP, releaseId)).toBe(false);
    expect(state.release(APP, releaseId)).toBeUndefined();
    expect((await readdir(path.join(root, 'home', 'releases', APP))).filter((f) => !f.startsWith('.'))).toEqual([]);
  });

  it('refuses a release without a spec when the app has no legacy config, and takes one that fits', async () => {
    const missing = await upload(null);
    await expect(missing.result).rejects.toMatchObject({ code: 'spec_missing' });
    expect(store.has(APP, missing.releaseId)).toBe(false);
    const fits = await upload({ processes: { web: { script: 'server.js' } }, routes: [{ serverNames: ['api.shop.test'], process: 'web' }] });
    await expect(fits.result).resolves.toMatchObject({ releaseId: fits.releaseId });
    expect(state.release(APP, fits.releaseId)?.manifest.spec).toBeTruthy();
  });
});
