import { mkdir, readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import type { TlsSummary } from '../../contract/tls.js';
import { outputTail, runCommand, type CommandResult } from '../../lib/exec.js';
import type { AgentConfig } from '../config.js';
import type { RouteInput, TlsInput } from '../nginx/render-input.js';
import { policyOf } from '../spec/policy.js';
import { inspectCertificate, uncoveredNames, type CertificateFacts } from './certificate.js';
import { certbotEnv, certonlyArgv, lineageFiles } from './certbot.js';
import type { AcmeSettings, AppTlsPolicy } from './config.js';
import { certificateNames, planAcme } from './plan.js';
import { CHAIN_FILE, KEY_FILE, type InstalledCertificate, type TlsRun, type TlsStore } from './store.js';

// One certificate run of one app: work out the names (the live release's routes), get a
// certificate (certbot over HTTP-01, or the box owner's files), check it (parses, key matches,
// covers the names, not expired), and only when it differs from the one served: write it into its
// own directory, render the include naming it, nginx -t, reload, prove through HTTPS. Any failure
// leaves the serving include and certificate as they were, is recorded (tls_runs) and notified.
// certbot runs without the app's lock (it can take a minute); the include is changed under it.

export interface TlsServiceDeps {
  config: AgentConfig;
  store: TlsStore;
  logger: Logger;
  /** The live release's routes, or null before one is live. */
  liveRoutes(app: string): { releaseId: string; routes: RouteInput[] } | null;
  /** Re-renders the app's include with `tls` and applies it when it changed (TrafficSwitch.refreshInclude). */
  refreshInclude(app: string, tls: TlsInput | null): Promise<unknown>;
  /** Runs `fn` holding the app's deploy lock, waiting up to `waitMs` for a rollout to release it (then app_locked). */
  withAppLock<T>(app: string, holder: string, waitMs: number, fn: () => Promise<T>): Promise<T>;
  notify(event: 'tls_failed' | 'tls_installed', input: { app: string; actor: string; reason: string; outcome: string }): void;
  run?: (argv: readonly string[], options: { timeoutMs: number; env: NodeJS.ProcessEnv }) => Promise<CommandResult>;
  now?: () => Date;
}

export interface TlsRunRequest {
  /** schedule | start | api | deploy */
  trigger: string;
  actor: string;
  /** A new certificate from the CA even when the installed one is fresh (ACME). */
  force?: boolean;
}

/** A step's failure inside a run: its message becomes the run's reason. */
class RunFailure extends Error {}

const HOLDER = 'tls@agent';
/** How long a run after a rollout waits for that rollout's lock to go (its watch window may still run). */
const AFTER_DEPLOY_LOCK_WAIT_MS = 15 * 60_000;

export class TlsService {
  private readonly running = new Map<string, Promise<TlsRun>>();

  constructor(private readonly deps: TlsServiceDeps) {}

  /** Apps with a TLS policy. */
  apps(): string[] {
    return Object.entries(this.deps.config.apps).filter(([, app]) => app.tls).map(([name]) => name);
  }

  policy(app: string): AppTlsPolicy {
    const tls = this.deps.config.apps[app]?.tls;
    if (!tls) {
      throw new SlipwayError('tls_not_configured', `app ${app} has no TLS settings`, {
        status: 409, hint: `add apps.${app}.tls to the agent config ({"source": "acme"} with a top-level "acme" section, or {"source": "files", "certificate": ..., "key": ...}) and restart the agent`,
      });
    }
    return tls;
  }

  /** The TLS the app's include is rendered with now: its installed certificate (or none yet). */
  renderInput(app: string): TlsInput | null {
    const tls = this.deps.config.apps[app]?.tls;
    if (!tls) return null;
    const installed = this.deps.store.installed(app);
    return this.inputWith(app, tls, installed ? installed.dir : null);
  }

  installed(app: string): InstalledCertificate | null {
    return this.deps.store.installed(app);
  }

  /** The line `deploy status` shows: the certificate served and the last run; null without TLS settings. */
  summary(app: string): TlsSummary | null {
    const tls = this.deps.config.apps[app]?.tls;
    if (!tls) return null;
    const installed = this.deps.store.installed(app);
    const last = this.deps.store.runs(app, 1)[0];
    return {
      httpsPort: tls.httpsPort, fingerprint: installed?.fingerprint ?? null, notAfter: installed?.notAfter ?? null, names: installed?.names ?? [],
      lastRun: last ? { outcome: last.outcome, at: last.at, reason: last.reason } : null,
    };
  }

  runs(app: string, limit?: number): TlsRun[] {
    return this.deps.store.runs(app, limit);
  }

  /**
   * One run per app at a time: a second caller gets the run in progress, except a forced one,
   * which runs after it (the run in progress may have found the certificate fresh).
   */
  run(app: string, request: TlsRunRequest): Promise<TlsRun> {
    this.policy(app);
    const current = this.running.get(app);
    if (current && !request.force) return current;
    const after = current ? current.then(() => undefined, () => undefined) : Promise.resolve();
    const run: Promise<TlsRun> = after.then(() => this.runNow(app, request)).finally(() => {
      if (this.running.get(app) === run) this.running.delete(app);
    });
    this.running.set(app, run);
    return run;
  }

  /** Resolves once no run is in progress (the agent waits for it before closing the database). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.running.values()]);
  }

  /** Every app with TLS, one after the other (the schedule); a failure of one does not stop the others. */
  async runAll(request: TlsRunRequest): Promise<TlsRun[]> {
    const runs: TlsRun[] = [];
    for (const app of this.apps()) runs.push(await this.run(app, request));
    return runs;
  }

  private inputWith(app: string, tls: AppTlsPolicy, certDir: string | null): TlsInput {
    const appConfig = this.deps.config.apps[app]!;
    return {
      httpPort: policyOf(appConfig).listen.ports[0]!,
      httpsPort: tls.httpsPort,
      certificate: certDir ? `${certDir}/${CHAIN_FILE}` : null,
      key: certDir ? `${certDir}/${KEY_FILE}` : null,
      redirect: tls.redirect,
      hsts: tls.hsts ? { maxAgeSeconds: tls.hsts.maxAgeSeconds, includeSubDomains: tls.hsts.includeSubDomains } : null,
      challengeRoot: tls.source === 'acme' ? this.acme().webroot : null,
    };
  }

  /** A run after a rollout waits for its lock; others find the app busy and leave it to the next run. */
  private lockWait(request: TlsRunRequest): number {
    return request.trigger === 'deploy' ? AFTER_DEPLOY_LOCK_WAIT_MS : 0;
  }

  /**
   * After a rollout went live: a release may route a name the certificate does not cover yet.
   * Runs in the background once the rollout's lock is released (a certificate that covers every
   * name and is not due costs no CA request and no reload).
   */
  afterRollout(app: string): void {
    if (!this.deps.config.apps[app]?.tls) return;
    void this.run(app, { trigger: 'deploy', actor: 'agent' }).catch((error: unknown) => this.deps.logger.error({ err: error, app }, 'TLS certificate run after a rollout failed'));
  }

  private acme(): AcmeSettings {
    const acme = this.deps.config.acme;
    if (!acme) throw new RunFailure('the agent config has no "acme" section');
    return acme;
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  private async runNow(app: string, request: TlsRunRequest): Promise<TlsRun> {
    const started = performance.now();
    const tls = this.policy(app);
    const record = (outcome: TlsRun['outcome'], reason: string, facts: Pick<CertificateFacts, 'fingerprint' | 'notAfter'> | null) => {
      const run = this.deps.store.recordRun({
        app, trigger: request.trigger, actor: request.actor, outcome, reason, fingerprint: facts?.fingerprint ?? null, notAfter: facts?.notAfter ?? null,
        durationMs: Math.round(performance.now() - started), at: this.now().toISOString(),
      });
      const log = { app, outcome, reason, trigger: request.trigger, fingerprint: run.fingerprint };
      if (outcome === 'failed') this.deps.logger.error(log, 'TLS certificate run failed; the served certificate and config are unchanged');
      else this.deps.logger.info(log, 'TLS certificate run');
      if (outcome === 'failed' || outcome === 'installed') {
        try {
          this.deps.notify(outcome === 'failed' ? 'tls_failed' : 'tls_installed', { app, actor: request.actor, reason, outcome });
        } catch (error) {
          this.deps.logger.error({ err: error, app }, 'could not queue a TLS notification');
        }
      }
      return run;
    };
    try {
      const installed = this.deps.store.installed(app);
      if (tls.source === 'acme') {
        // The challenge location must be served before the CA asks for it: an include rendered
        // before TLS was configured has none yet.
        await mkdir(this.acme().webroot, { recursive: true, mode: 0o755 });
        await this.deps.withAppLock(app, HOLDER, this.lockWait(request), () => this.deps.refreshInclude(app, this.renderInput(app)));
      }
      const live = this.deps.liveRoutes(app);
      const httpPort = policyOf(this.deps.config.apps[app]!).listen.ports[0]!;
      const { names, uncertifiable } = certificateNames(live?.routes ?? [], httpPort);
      let obtained: { chainPem: string; keyPem: string; source: string };
      if (tls.source === 'acme') {
        if (names.length === 0) {
          const why = live ? `the live release routes no exact server name on port ${httpPort}${uncertifiable.length ? ` (${uncertifiable.join(', ')} cannot be proven over HTTP-01)` : ''}` : 'no release is live yet';
          return record('skipped', `nothing to certify: ${why}`, installed);
        }
        const plan = planAcme({ installed, wanted: names, now: this.now(), renewBeforeDays: this.acme().renewBeforeDays, force: request.force ?? false });
        if (!plan.obtain) return record('unchanged', plan.reason, installed);
        obtained = await this.obtainAcme(app, names, plan.forceRenewal);
      } else {
        obtained = await this.readFiles(tls);
      }
      const facts = this.check(obtained, names);
      if (installed && installed.fingerprint === facts.fingerprint && await exists(installed.dir)) {
        return record('unchanged', `the certificate served is already ${facts.fingerprint.slice(0, 16)} (valid until ${facts.notAfter}): no reload`, installed);
      }
      await this.install(app, tls, facts, obtained, this.lockWait(request));
      return record('installed', `certificate for ${facts.names.join(', ') || '(no DNS names)'} valid until ${facts.notAfter} installed: nginx -t, reload and HTTPS proof passed`, facts);
    } catch (error) {
      // A rollout holds the app: not a certificate problem; the next run tries again.
      if (error instanceof SlipwayError && error.code === 'app_locked') return record('skipped', error.message, null);
      const reason = error instanceof RunFailure || error instanceof SlipwayError ? error.message : `unexpected error: ${errorMessage(error)}`;
      return record('failed', reason, null);
    }
  }

  private async obtainAcme(app: string, names: string[], forceRenewal: boolean): Promise<{ chainPem: string; keyPem: string; source: string }> {
    const acme = this.acme();
    const argv = certonlyArgv(acme, { certName: app, names, forceRenewal });
    const run = this.deps.run ?? ((a, o) => runCommand(a, o));
    const result = await run(argv, { timeoutMs: acme.timeoutMs, env: certbotEnv(acme, process.env) });
    if (result.timedOut) throw new RunFailure(`certbot did not finish within ${acme.timeoutMs} ms`);
    if (result.exitCode !== 0) {
      const tail = outputTail(`${result.stderr}\n${result.stdout}`, 8).replace(/\s*\n\s*/g, ' | ').trim();
      throw new RunFailure(`certbot certonly for ${names.join(', ')} failed (exit ${result.exitCode ?? result.signal}): ${tail}`);
    }
    const files = lineageFiles(acme, app);
    try {
      return { chainPem: await readFile(files.chain, 'utf8'), keyPem: await readFile(files.key, 'utf8'), source: files.chain };
    } catch (error) {
      throw new RunFailure(`certbot succeeded but its certificate cannot be read: ${errorMessage(error)}`);
    }
  }

  private async readFiles(tls: AppTlsPolicy): Promise<{ chainPem: string; keyPem: string; source: string }> {
    try {
      return { chainPem: await readFile(tls.certificate!, 'utf8'), keyPem: await readFile(tls.key!, 'utf8'), source: tls.certificate! };
    } catch (error) {
      throw new RunFailure(`cannot read the certificate files: ${(error as NodeJS.ErrnoException).code ?? errorMessage(error)} (the agent's user must be able to read ${tls.certificate} and ${tls.key})`);
    }
  }

  /** Refuses what nginx must not serve: unparsable, key of another certificate, expired, not covering the names. */
  private check(obtained: { chainPem: string; keyPem: string; source: string }, names: readonly string[]): CertificateFacts {
    const facts = inspectCertificate(obtained.chainPem, obtained.keyPem, obtained.source);
    if (Date.parse(facts.notAfter) <= this.now().getTime()) throw new RunFailure(`${obtained.source} expired ${facts.notAfter}`);
    const missing = uncoveredNames(facts.names, names);
    if (missing.length > 0) throw new RunFailure(`${obtained.source} does not cover ${missing.join(', ')} (it names ${facts.names.join(', ') || 'no DNS name'})`);
    return facts;
  }

  private async install(app: string, tls: AppTlsPolicy, facts: CertificateFacts, obtained: { chainPem: string; keyPem: string }, lockWaitMs: number): Promise<void> {
    const { store } = this.deps;
    await this.deps.withAppLock(app, HOLDER, lockWaitMs, async () => {
      const dir = await store.stage(app, facts.fingerprint, obtained.chainPem, obtained.keyPem);
      try {
        await this.deps.refreshInclude(app, this.inputWith(app, tls, dir));
      } catch (error) {
        // nginx refused or did not prove it: the include was put back; the staged copy goes.
        await store.prune(app, store.installed(app)?.dir ?? null);
        throw error;
      }
      store.recordInstalled({ app, source: tls.source, dir, ...facts }, this.now().toISOString());
      await store.prune(app, dir);
    });
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
