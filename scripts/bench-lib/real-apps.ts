// Section 8 (issue 12): apps with real npm dependencies and several processes.
//
// deps: the deps-app fixture (express + the bufferutil native addon, a build step with the dev
// dependency mustache, package-lock.json committed) deployed from one repository by
//   - Capistrano 3, the usual Node setup: fresh release dir + `npm ci --omit=dev` + PM2 restart;
//   - PM2's own flow: `pm2 deploy ecosystem.config.js bench` (git fetch/reset on the box from a
//     bare "origin", `npm ci --omit=dev`, `pm2 startOrReload`);
//   - Slipway: `deploy push --no-wait` with deploy.spec.json building on the controller
//     (`build.on: "controller"`), then the same with `build.on: "host"`;
// each timed from the command's start until a fresh connection gets the new commit, with the
// longest gap in which neither commit answered; once for a commit that leaves the lockfile
// unchanged and once for one that adds a dependency (a lockfile no release had before). npm runs
// offline from a cache warmed at the start (test/helpers/npm-warm-cache.ts).
//
// multi: the multi-process fixture (test/fixtures/multi-app-full: a Node web process with two
// cluster instances, a FastAPI api, a worker) pushed next to the same app with a one-process spec.
//
// The Slipway rows need issue 12's controller build, spec and multi-process slots. Until the
// built controller and agent have them, those rows are skipped with a note and only the baselines
// are measured (the bench does not fail for it).
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../test/helpers/agent-process.js';
import { createAppRepo, type AppRepo } from '../../test/helpers/git-repo.js';
import { ensureDeployUser } from '../../test/helpers/deploy-user.js';
import { freePort } from '../../test/helpers/ports.js';
import { startStack, type Stack } from '../../test/helpers/stack.js';
import { AgentApi } from './agent-api.js';
import { setUpCapistrano, type Capistrano } from './capistrano.js';
import { deployCli, requireCliOk, type Plan } from './context.js';
import { DEPS_APP_DIR, warmNpmCache, type NpmCache } from '../../test/helpers/npm-warm-cache.js';
import { MULTI_APP_DIR, depsSpec as depsSpecWith } from '../../test/helpers/real-apps.js';
import { setUpPm2Deploy, type Pm2Deploy } from './pm2-deploy.js';
import { runTimed, type TimedRun } from './procs.js';
import { makeFigure, type Figure } from './report.js';
import { timeUntilServed, type Timed } from './rollouts.js';
import { summarize } from './stats.js';

const SECTION = '8. Real apps';
const WATCH = { windowMs: 2000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true };

export interface RealAppsContext {
  plan: Plan;
  figures: Figure[];
  notes: string[];
  log(message: string): void;
  /** `--only section.row`: the rows asked for (e.g. fleet.revert); null: every row. */
  rows?: ReadonlySet<string> | null;
  /** Registers a cleanup run when the bench ends (also on a signal). */
  onCleanup(fn: () => Promise<void>): void;
}

/** What the built Slipway supports of issue 12, read from dist/ (so the bench runs before and after integration). */
export interface Issue12Support { controllerBuild: boolean; hostBuild: boolean; multiProcess: boolean; reason: string }

async function distText(dir: string): Promise<string> {
  const parts: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name.endsWith('.js')) parts.push(await fs.readFile(full, 'utf8'));
    }
  };
  await walk(dir);
  return parts.join('\n');
}

export async function issue12Support(): Promise<Issue12Support> {
  // For an integrator whose implementation names things differently: measure regardless.
  if (process.env.SLIPWAY_BENCH_ISSUE12 === '1') return { controllerBuild: true, hostBuild: true, multiProcess: true, reason: '' };
  const controller = await distText(path.join(REPO_ROOT, 'dist', 'controller'));
  const agent = await distText(path.join(REPO_ROOT, 'dist', 'agent'));
  const template = await fs.readFile(path.join(REPO_ROOT, 'nginx', 'app.conf.njk'), 'utf8').catch(() => '');
  // The controller reads deploy.spec.json (contract/spec.js's checkAppSpec) and runs an install step.
  const controllerBuild = controller.includes('checkAppSpec') && /npm['"`, ]+ci|'ci'/.test(controller);
  // The agent checks specs against the host policy (spec_refused) ...
  const agentSpec = agent.includes('spec_refused');
  // ... builds on the host under a free-memory floor at lowered priority ...
  const hostBuild = agentSpec && agent.includes('build_memory_low') && agent.includes('ionice');
  // ... and runs several processes per slot behind routes (WebSocket map in the template), with smoke checks.
  const multiProcess = agentSpec && agent.includes('PORT_') && template.includes('http_upgrade') && /smoke/.test(agent);
  const missing = [
    controllerBuild ? null : 'controller build (deploy.spec.json, npm ci)',
    agentSpec ? null : 'agent spec support (spec_refused)',
    hostBuild ? null : 'host build (build_memory_low, ionice)',
    multiProcess ? null : 'multi-process slots with routes and smoke checks (PORT_<NAME>, $http_upgrade map, smoke)',
  ].filter(Boolean);
  return {
    controllerBuild: controllerBuild && agentSpec, hostBuild, multiProcess,
    reason: missing.length ? `this build of Slipway lacks ${missing.join(', ')} (issue 12 not integrated yet)` : '',
  };
}

const depsSpec = (on: 'controller' | 'host', listenPort: number) => depsSpecWith(on, listenPort, WATCH);

interface Series { served: number[]; gap: number[]; misses: number[]; packed: number[] }
const series = (): Series => ({ served: [], gap: [], misses: [], packed: [] });
function record(s: Series, t: Timed): void {
  s.served.push(t.servedMs);
  s.gap.push(t.transition.maxGapMs);
  s.misses.push(t.transition.misses);
  // Slipway's CLI prints "packed …" once the release is built and packed: the controller-side share.
  const packed = t.run.lines.find((line) => /\bpacked\b/.test(line.text));
  if (packed) s.packed.push(packed.at - t.run.startedAt);
}
const median = (values: number[]) => summarize(values)?.median.toFixed(0) ?? '–';

/** The release a URL serves now (the app's `release` field), or null. */
async function servedRelease(url: string, headers: Record<string, string> = {}): Promise<string | null> {
  const res = await fetch(url, { headers }).catch(() => null);
  if (!res?.ok) return null;
  const body = (await res.json().catch(() => null)) as { release?: string } | null;
  return body?.release ?? null;
}

function requireOk(run: TimedRun, what: string): void {
  if (run.code !== 0) throw new Error(`${what} exited ${run.code}${run.timedOut ? ' (timed out)' : ''}:\n${(run.stdout + run.stderr).slice(-3000)}`);
}

const fmt = (values: number[]) => values.map((v) => v.toFixed(0)).join('/');

export async function benchDeps(ctx: RealAppsContext): Promise<void> {
  const support = await issue12Support();
  const reps = ctx.plan.depsReps;
  const deployUser = await ensureDeployUser();
  ctx.log('real deps: warming the npm cache from the registry (the only network use of the bench)');
  const npmCache: NpmCache = await warmNpmCache(reps * 2 + 1);
  ctx.onCleanup(() => npmCache.stop());
  ctx.notes.push(`real deps: npm cache warmed from the registry once in ${npmCache.warmSeconds.toFixed(1)} s; every install of the section ran with npm_config_offline=true from a copy of it`);

  ctx.log('real deps: starting a stack for the deps-app (host policy, no legacy app config)');
  const stack: Stack = await startStack({
    app: 'deps',
    appDir: DEPS_APP_DIR,
    envFileContent: 'DEPS_GREETING=hello\n',
    policy: { serverNames: ['_'], build: { env: npmCache.offlineEnv(npmCache.rootCache), minFreeMemoryBytes: 64 * 2 ** 20 } },
  }).catch(async (error: unknown) => {
    if (support.controllerBuild) throw error;
    // An agent without issue 12 refuses the policy fields: fall back to the legacy stack for the baselines.
    ctx.notes.push(`real deps: the agent refused the host policy (${(error instanceof Error ? error.message : String(error)).split('\n')[0]}); baselines measured on a legacy stack`);
    return startStack({ app: 'deps', appDir: DEPS_APP_DIR, envFileContent: 'DEPS_GREETING=hello\n' });
  });
  ctx.onCleanup(() => stack.stop());
  const api = await AgentApi.connect(stack.agentPort, (stack.agentConfig.api as { tokenFile: string }).tokenFile);
  const cap: Capistrano = await setUpCapistrano(stack, { stage: 'deps', env: { BENCH_CAP_NPM_CACHE: await npmCache.cacheFor(deployUser) } });
  ctx.onCleanup(() => cap.stop());
  const pm2: Pm2Deploy = await setUpPm2Deploy(stack.repo.dir, npmCache.cacheFor);
  ctx.onCleanup(() => pm2.stop());

  // The controller's install cache (controller/build/install-cache.ts) of this bench only: the
  // first warm-up push fills it, as a user's earlier push would have; an unchanged-lockfile push
  // then reuses node_modules, a changed one installs (and is kept for the next push).
  const installCache = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-installs-'));
  ctx.onCleanup(() => fs.rm(installCache, { recursive: true, force: true }));
  const cliEnv = { ...npmCache.offlineEnv(npmCache.rootCache), SLIPWAY_BUILD_CACHE: installCache };
  const slipwayPush = () => deployCli(stack, ['push', '--no-wait'], { env: cliEnv, timeoutMs: 600_000 });
  await stack.repo.commit({ ...pm2.files, 'deploy.spec.json': depsSpec('controller', stack.publicPort) }, 'bench: deploy files of the three tools');
  ctx.log('real deps: first deploys (untimed): Capistrano, pm2 deploy setup + deploy, Slipway into both slots');
  await cap.deploy();
  await pm2.setUp();
  let slipwayOn = support.controllerBuild;
  if (!slipwayOn) ctx.notes.push(`real deps: Slipway rows skipped: ${support.reason}`);
  if (slipwayOn) {
    requireCliOk(await slipwayPush(), 'warm-up push (controller build; fills the install cache)');
    await api.waitUnlocked(stack.app);
    await stack.repo.commit({ 'message.txt': 'bench deps warm-up\n' }, 'bench: warm-up');
    await pm2.push();
    requireCliOk(await slipwayPush(), 'second warm-up push');
    await api.waitUnlocked(stack.app);
  }

  const results = {
    unchanged: { cap: series(), pm2: series(), controller: series(), host: series() },
    changed: { cap: series(), pm2: series(), controller: series(), host: series() },
  };
  let variant = 0;
  type Tool = 'cap' | 'pm2' | 'controller';
  const timeTool = async (tool: Tool, sha: string, into: Series) => {
    if (tool === 'cap') {
      const before = await servedRelease(cap.url);
      const t = await timeUntilServed(cap.url, before, sha, () => cap.deploy());
      record(into, t);
    } else if (tool === 'pm2') {
      const before = await servedRelease(pm2.url);
      const t = await timeUntilServed(pm2.url, before, sha, () => pm2.deploy());
      requireOk(t.run, 'pm2 deploy');
      record(into, t);
    } else {
      const before = await servedRelease(`${stack.publicUrl}/`);
      const t = await timeUntilServed(`${stack.publicUrl}/`, before, sha, slipwayPush);
      requireCliOk(t.run, 'deploy push (controller build)');
      record(into, t);
      await api.waitUnlocked(stack.app);
    }
  };
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of ['unchanged', 'changed'] as const) {
      const files = kind === 'unchanged'
        ? { 'message.txt': `bench deps ${rep} at ${new Date().toISOString()}\n` }
        : npmCache.variants[variant++]!.files;
      const sha = await stack.repo.commit(files, `bench: ${kind} lockfile ${rep}`);
      await pm2.push();
      ctx.log(`real deps ${rep + 1}/${reps}, ${kind} lockfile: ${sha.slice(0, 12)}`);
      const tools: Tool[] = slipwayOn ? ['cap', 'pm2', 'controller'] : ['cap', 'pm2'];
      // Interleaved, a different tool first each time, so drift in the machine's load spreads evenly.
      const order = tools.map((_, i) => tools[(i + rep + (kind === 'changed' ? 1 : 0)) % tools.length]!);
      for (const tool of order) await timeTool(tool, sha, results[kind][tool]);
    }
  }

  let hostError: Error | null = null;
  if (slipwayOn && !support.hostBuild) {
    ctx.notes.push(`real deps: build.on "host" rows skipped: ${support.reason}`);
  } else if (slipwayOn) {
    // A failure here must not lose the rows measured so far: it becomes a note and the bench's error.
    hostError = await hostPhase().then(() => null, (error: unknown) => error instanceof Error ? error : new Error(String(error)));
    if (hostError) ctx.notes.push(`real deps: build.on "host" phase failed: ${hostError.message.split('\n').slice(0, 4).join(' ')}`);
  }
  async function hostPhase(): Promise<void> {
    ctx.log('real deps: switching the spec to build.on "host"');
    await stack.repo.commit({ 'deploy.spec.json': depsSpec('host', stack.publicPort) }, 'bench: build on the host');
    requireCliOk(await slipwayPush(), 'warm-up push (host build)');
    await api.waitUnlocked(stack.app);
    for (let rep = 0; rep < reps; rep++) {
      for (const kind of ['unchanged', 'changed'] as const) {
        const files = kind === 'unchanged'
          ? { 'message.txt': `bench deps host ${rep} at ${new Date().toISOString()}\n` }
          : npmCache.variants[variant++]!.files;
        const sha = await stack.repo.commit(files, `bench: host build, ${kind} lockfile ${rep}`);
        ctx.log(`real deps (host build) ${rep + 1}/${reps}, ${kind} lockfile: ${sha.slice(0, 12)}`);
        const before = await servedRelease(`${stack.publicUrl}/`);
        const t = await timeUntilServed(`${stack.publicUrl}/`, before, sha, slipwayPush);
        requireCliOk(t.run, 'deploy push (host build)');
        record(results[kind].host, t);
        await api.waitUnlocked(stack.app);
      }
    }
  }
  slipwayOn = slipwayOn && results.unchanged.controller.served.length > 0;

  for (const kind of ['unchanged', 'changed'] as const) {
    const r = results[kind];
    const what = kind === 'unchanged' ? 'unchanged lockfile' : 'changed lockfile (a dependency added)';
    const baselines = [
      { id: 'cap', label: 'cap deploy + npm ci', s: r.cap },
      { id: 'pm2', label: 'pm2 deploy + npm ci', s: r.pm2 },
    ];
    for (const variantName of ['controller', 'host'] as const) {
      const s = r[variantName];
      const label = variantName === 'controller' ? 'deploy push (build on controller)' : 'deploy push (build.on host)';
      for (const b of baselines) {
        ctx.figures.push(makeFigure({
          id: `deps.${kind}.${variantName}.vs-${b.id}.served`, section: SECTION,
          title: `deps-app push, ${what}, ${variantName} build → new SHA served (ms)`, unit: 'ms',
          slipway: { label, samples: s.served }, baseline: { label: b.label, samples: b.s.served },
          goal: { kind: 'ratioAtMost', value: 0.3 },
          notes: [
            s.served.length === 0 ? `Slipway not measured: ${support.reason || 'see the section notes'}` : `Slipway probes answered by neither SHA: ${s.misses.join('/')}; CLI start → "packed" (checkout, install, build, prune, pack) median ${median(s.packed)} ms of ${median(s.served)} ms`,
            `${b.label}: probes answered by neither SHA ${b.s.misses.join('/')}, longest gaps ${fmt(b.s.gap)} ms`,
          ],
        }));
        ctx.figures.push(makeFigure({
          id: `deps.${kind}.${variantName}.vs-${b.id}.gap`, section: SECTION,
          title: `deps-app push, ${what}, ${variantName} build: longest gap with neither SHA answering (ms)`, unit: 'ms',
          slipway: { label, samples: s.gap }, baseline: { label: b.label, samples: b.s.gap },
          goal: { kind: 'zero' },
        }));
      }
    }
  }
  const capMedian = summarize(results.unchanged.cap.served)?.median;
  const pm2Median = summarize(results.unchanged.pm2.served)?.median;
  ctx.notes.push(`real deps baselines (unchanged lockfile): cap ${fmt(results.unchanged.cap.served)} ms (median ${capMedian?.toFixed(0)}), pm2 deploy ${fmt(results.unchanged.pm2.served)} ms (median ${pm2Median?.toFixed(0)}); changed lockfile: cap ${fmt(results.changed.cap.served)} ms, pm2 deploy ${fmt(results.changed.pm2.served)} ms`);
  if (hostError) throw hostError;
}

/** deploy.spec.json of the multi-process fixture reduced to its web process, one instance. */
async function singleProcessSpec(listenPort: number): Promise<string> {
  const full = JSON.parse(await fs.readFile(path.join(MULTI_APP_DIR, 'deploy.spec.json'), 'utf8')) as {
    processes: Record<string, Record<string, unknown>>;
  };
  const web = { ...full.processes.web!, instances: 1 };
  return `${JSON.stringify({
    processes: { web },
    routes: [{ serverNames: ['web.test'], path: '/', process: 'web', listenPort }],
    watch: WATCH,
  }, null, 2)}\n`;
}

/** The multi-process fixture's spec with the bench's listen port and watch window. */
async function multiSpec(listenPort: number): Promise<string> {
  const full = JSON.parse(await fs.readFile(path.join(MULTI_APP_DIR, 'deploy.spec.json'), 'utf8')) as { routes: { listenPort?: number }[] };
  for (const route of full.routes) route.listenPort = listenPort;
  return `${JSON.stringify({ ...full, watch: WATCH }, null, 2)}\n`;
}

export async function benchMulti(ctx: RealAppsContext): Promise<void> {
  const support = await issue12Support();
  if (!support.multiProcess || !support.controllerBuild) {
    ctx.notes.push(`multi-process push rows skipped: ${support.reason}`);
    ctx.figures.push(makeFigure({
      id: 'multi.served', section: SECTION, title: 'multi-process app push (web×2, FastAPI, worker) → new SHA served on every route (ms)', unit: 'ms',
      slipway: { label: 'deploy push (3 processes)', samples: [] }, baseline: { label: 'deploy push (1 process)', samples: [] },
      notes: [`not measured: ${support.reason}`],
    }));
    return;
  }
  // One agent, two apps from the same fixture: `multi` with the full spec, `single` with its web process only.
  // The worker's counter files and the release phase's marker go here (named by the host's env file).
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-multi-'));
  ctx.onCleanup(() => fs.rm(stateDir, { recursive: true, force: true }));
  const stack = await startStack({
    app: 'multi', appDir: MULTI_APP_DIR, envFileContent: `MULTI_GREETING=hello\nMULTI_STATE_DIR=${stateDir}\n`,
    policy: { serverNames: ['web.test', 'api.test'] },
  });
  ctx.onCleanup(() => stack.stop());
  // The single-process app gets a listen port of its own (web.test on the public port is multi's).
  const singlePort = await freePort();
  const config = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8')) as { apps: Record<string, Record<string, unknown>> };
  config.apps.single = { ...config.apps.multi!, serverNames: ['web.test'], listen: { host: '127.0.0.1', ports: [singlePort] } };
  await fs.writeFile(stack.agentConfigPath, JSON.stringify(config, null, 2));
  await stack.restartAgent({ env: { SLIPWAY_LOG_LEVEL: 'info' } });
  const api = await AgentApi.connect(stack.agentPort, (stack.agentConfig.api as { tokenFile: string }).tokenFile);

  const controllerConfig = JSON.parse(await fs.readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as Record<string, unknown>;
  const singleRepo: AppRepo = await createAppRepo(path.join(stack.dir, 'single-app'), MULTI_APP_DIR, {
    'deploy.config.json': JSON.stringify({ ...controllerConfig, app: 'single' }, null, 2),
    'deploy.spec.json': await singleProcessSpec(singlePort),
  });
  await stack.repo.commit({ 'deploy.spec.json': await multiSpec(stack.publicPort) }, 'bench: multi spec');
  const push = (cwd: string) => runTimed([process.execPath, path.join(REPO_ROOT, 'dist', 'controller', 'main.js'), '--json', 'push', '--no-wait'], {
    cwd, env: { ...process.env, SSH_AUTH_SOCK: '' }, timeoutMs: 300_000,
  });
  const host = { host: 'web.test' };
  const multiUrl = `${stack.publicUrl}/`;
  const singleUrl = `http://127.0.0.1:${singlePort}/`;
  for (const [cwd, app] of [[stack.repo.dir, 'multi'], [singleRepo.dir, 'single']] as const) {
    for (let i = 0; i < 2; i++) {
      if (i > 0) await (app === 'multi' ? stack.repo : singleRepo).commit({ 'web/message.txt': `warm-up ${i}\n` }, 'bench: warm-up');
      requireOk(await push(cwd), `warm-up push of ${app}`);
      await api.waitUnlocked(app);
    }
  }
  const multi = series();
  const single = series();
  for (let rep = 0; rep < ctx.plan.multiReps; rep++) {
    const run = async (repo: AppRepo, app: string, url: string, into: Series) => {
      const sha = await repo.commit({ 'web/message.txt': `bench ${app} ${rep} at ${new Date().toISOString()}\n` }, `bench: ${app} ${rep}`);
      const before = await servedRelease(url, host);
      const t = await timeUntilServed(url, before, sha, () => push(repo.dir), host);
      requireOk(t.run, `deploy push of ${app}`);
      record(into, t);
      await api.waitUnlocked(app);
    };
    ctx.log(`multi-process push ${rep + 1}/${ctx.plan.multiReps}`);
    if (rep % 2 === 0) { await run(stack.repo, 'multi', multiUrl, multi); await run(singleRepo, 'single', singleUrl, single); }
    else { await run(singleRepo, 'single', singleUrl, single); await run(stack.repo, 'multi', multiUrl, multi); }
  }
  ctx.figures.push(makeFigure({
    id: 'multi.served', section: SECTION, title: 'multi-process app push (web×2, FastAPI, worker) → new SHA served (ms)', unit: 'ms',
    slipway: { label: 'deploy push (3 processes)', samples: multi.served }, baseline: { label: 'deploy push (1 process)', samples: single.served },
    notes: [
      'same fixture and agent: app "multi" runs web (2 cluster instances), api (uvicorn) and worker; app "single" runs web only, 1 instance, no release phase or smoke checks (those are part of what "multi" costs)',
      `probes answered by neither SHA: multi ${multi.misses.join('/')}, single ${single.misses.join('/')}`,
    ],
  }));
  ctx.figures.push(makeFigure({
    id: 'multi.gap', section: SECTION, title: 'multi-process app push: longest gap with neither SHA answering (ms)', unit: 'ms',
    slipway: { label: 'deploy push (3 processes)', samples: multi.gap }, baseline: { label: 'deploy push (1 process)', samples: single.gap },
    goal: { kind: 'zero' },
  }));
}
