import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import { loadOrCreateToken } from './auth.js';
import { openDatabase, type Db } from './state/db.js';
import { StateStore } from './state/store.js';
import { ReleaseStore } from './release/store.js';
import { Pm2Adapter } from './pm2.js';
import { NginxController } from './nginx/controller.js';
import { renderAppConfig } from './nginx/render.js';
import { checkOnce, waitHealthy } from './health.js';
import { RolloutService } from './rollout/rollout.js';
import { buildServer } from './server.js';
import { VERSION } from './shared/version.js';

export interface RunningAgent {
  server: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Wires the agent's parts together and starts listening; the only place that knows all of them. */
export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  mkdirSync(config.home, { recursive: true, mode: 0o700 });
  for (const dir of ['incoming', 'releases', 'apps']) mkdirSync(path.join(config.home, dir), { recursive: true, mode: 0o700 });
  const token = await loadOrCreateToken(config.api.tokenFile);
  const db: Db = openDatabase(path.join(config.home, 'agent.db'));
  const state = new StateStore(db);
  for (const app of Object.keys(config.apps)) state.ensureApp(app);

  const releases = new ReleaseStore({ home: config.home, limits: config.limits });
  await releases.cleanupOrphans();
  const processes = await Pm2Adapter.connect({ pm2Home: config.pm2.home, callTimeoutMs: config.pm2.callTimeoutMs });
  const nginx = new NginxController({
    command: config.nginx.command,
    testArgs: config.nginx.testArgs,
    reloadArgs: config.nginx.reloadArgs,
    pidFile: config.nginx.pidFile,
    includeDir: config.nginx.includeDir,
    timeoutMs: config.nginx.timeoutMs,
    proveTimeoutMs: config.nginx.proveTimeoutMs,
  });
  const rollouts = new RolloutService({
    config,
    state,
    releaseDir: (app, releaseId) => releases.releaseDir(app, releaseId),
    hasRelease: (app, releaseId) => releases.has(app, releaseId),
    processes,
    nginx,
    health: { waitHealthy },
    renderNginx: (input) => {
      const pub = config.apps[input.app]!.public;
      return renderAppConfig(
        { ...input, listen: { host: pub.listenHost, port: pub.listenPort }, serverNames: pub.serverNames },
        { templateDir: config.nginx.templateDir, template: config.apps[input.app]!.nginxTemplate },
      );
    },
    logger,
  });
  const server = buildServer({ config, token, state, releases, rollouts, processes, health: { checkOnce }, logger, version: VERSION });
  const url = await server.listen({ host: config.api.host, port: config.api.port });
  logger.info({ url, home: config.home, apps: Object.keys(config.apps) }, 'slipway-agent listening');
  return {
    server,
    url,
    async close() {
      await server.close();
      await processes.disconnect();
      db.close();
    },
  };
}
