// `npm run bench`: Slipway side by side with its baselines, in one run on one machine, so every
// figure comes with a ratio that survives a noisy box (issue #5). Run through `bash scripts/bench`,
// which installs wrk and Capistrano and builds first; the sections live in scripts/bench-lib/ (a
// directory cannot share the name of the scripts/bench launcher). `--quick` does fewer repetitions
// and smaller sizes; `--only a,b` runs some sections (backup, upload, repush, rollouts, swapback,
// switch, wrk, wrkpush, footprint, deps, multi, delta, fleet); both leave latest.md to full runs.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../lib/exec.js';
import { REPO_ROOT } from '../test/helpers/agent-process.js';
import { APP, startStack, type Stack } from '../test/helpers/stack.js';
import { AgentApi } from './bench-lib/agent-api.js';
import { benchBackup } from './bench-lib/backup.js';
import { startBareNginx, type BareNginx } from './bench-lib/bare-nginx.js';
import { capistranoVersion, setUpCapistrano, type Capistrano } from './bench-lib/capistrano.js';
import { FULL_PLAN, QUICK_PLAN, deployCli, requireCliOk, type BenchContext } from './bench-lib/context.js';
import { benchFootprint, steadyRss } from './bench-lib/footprint.js';
import { abortChildren, killAllChildren, pause } from './bench-lib/procs.js';
import { makeFigure, renderTable, writeResults, type Figure } from './bench-lib/report.js';
import { benchDeps, benchMulti, type RealAppsContext } from './bench-lib/real-apps.js';
import { benchPushAndRollback, benchRepush, benchSwapBack } from './bench-lib/rollouts.js';
import { benchPushesUnderWrk, benchSwitchLatency, benchZeroDowntime } from './bench-lib/switching.js';
import { benchUpload } from './bench-lib/upload.js';
import { benchDelta } from './bench-lib/delta.js';
import { benchFleet } from './bench-lib/fleet.js';

const SECTIONS = ['backup', 'upload', 'repush', 'rollouts', 'swapback', 'switch', 'wrk', 'wrkpush', 'footprint', 'deps', 'multi', 'delta', 'fleet'] as const;
type Section = (typeof SECTIONS)[number];
const RESULTS_DIR = path.join(REPO_ROOT, 'test', 'bench', 'results');

/** Pushes and rollbacks run with a watch window (their timing stops at the switch); the rest without. */
const WATCH_ROLLOUT_PHASE = { windowMs: 2000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true };
const WATCH_SWITCH_PHASE = { ...WATCH_ROLLOUT_PHASE, windowMs: 0 };

/** Rows a section can run alone (`--only fleet.revert`); the others always run whole. */
const ROWS: Partial<Record<Section, readonly string[]>> = { fleet: ['push', 'revert', 'upload', 'uplink'] };

function parseArgs(argv: string[]): { quick: boolean; only: Set<Section> | null; rows: Set<string> | null } {
  let quick = false;
  let only: Set<Section> | null = null;
  let rows: Set<string> | null = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg === '--only' ? argv[++i] ?? '' : arg.slice('--only='.length);
      const names = value.split(',').map((s) => s.trim()).filter(Boolean);
      const isRow = (n: string) => { const [section, row] = n.split('.'); return ROWS[section as Section]?.includes(row ?? '') ?? false; };
      const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n) && !isRow(n));
      const rowNames = Object.entries(ROWS).flatMap(([section, r]) => r.map((x) => `${section}.${x}`));
      if (unknown.length > 0 || names.length === 0) throw new Error(`--only takes sections from: ${SECTIONS.join(', ')}, or rows: ${rowNames.join(', ')} (got ${value || 'nothing'})`);
      only = new Set(names.map((n) => n.split('.')[0]) as Section[]);
      const picked = names.filter(isRow);
      if (picked.length) rows = new Set(picked);
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: npm run bench [-- --quick] [-- --only backup,upload,repush,rollouts,swapback,switch,wrk,wrkpush,footprint,deps,multi,delta,fleet]\n'
        + `  a row of a section alone: --only ${Object.entries(ROWS).flatMap(([section, r]) => r.map((x) => `${section}.${x}`)).join(',')} (the section's other rows are skipped)\n`);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (try --help)`);
  }
  return { quick, only, rows };
}

async function versionOf(argv: string[]): Promise<string> {
  const result = await runCommand(argv, { timeoutMs: 15_000 }).catch(() => null);
  const text = `${result?.stdout ?? ''}${result?.stderr ?? ''}`.trim().split('\n')[0] ?? '';
  return text || 'unknown';
}

async function machineInfo(): Promise<Record<string, string | number>> {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    load: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    node: process.version,
    nginx: (await versionOf(['nginx', '-v'])).replace(/^nginx version: /, ''),
    openssh: await versionOf(['ssh', '-V']),
    capistrano: await capistranoVersion(),
    wrk: (await versionOf(['wrk', '-v'])).split(' [')[0] ?? 'unknown',
  };
}

async function setWatch(stack: Stack, watch: Record<string, unknown>): Promise<void> {
  const config = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8')) as { apps: Record<string, { watch: unknown }> };
  config.apps[APP]!.watch = watch;
  await fs.writeFile(stack.agentConfigPath, JSON.stringify(config, null, 2));
  // The production log level: the stack's default (debug) would make every request heavier.
  await stack.restartAgent({ env: { SLIPWAY_LOG_LEVEL: 'info' } });
}

async function main(): Promise<number> {
  const { quick, only, rows } = parseArgs(process.argv.slice(2));
  const wants = (s: Section) => only === null || only.has(s);
  const plan = quick ? QUICK_PLAN : FULL_PLAN;
  const startedAt = Date.now();
  const figures: Figure[] = [];
  const notes: string[] = [];
  const errors: string[] = [];
  const log = (message: string) => process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(3)} s] ${message}\n`);
  const cleanups: (() => Promise<void>)[] = [];
  let cleaning: Promise<void> | null = null;
  // One cleanup, whoever asks first (the end of the run or a signal); later callers wait for it.
  const cleanup = () => {
    cleaning ??= (async () => {
      abortChildren();
      for (const fn of cleanups.reverse()) await fn().catch((error: unknown) => log(`cleanup: ${error instanceof Error ? error.message : String(error)}`));
      killAllChildren();
    })();
    return cleaning;
  };
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // Kept installed: a second Ctrl-C must not kill the bench halfway through its cleanup.
    process.on(signal, () => {
      if (interrupted) {
        log(`${signal} again: still stopping what the bench started`);
        return;
      }
      interrupted = true;
      log(`${signal}: stopping everything the bench started`);
      setTimeout(() => process.exit(130), 60_000).unref();
      void cleanup().then(() => process.exit(130));
    });
  }
  const run = async (name: string, fn: () => Promise<void>) => {
    log(`${name}…`);
    try {
      await fn();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      errors.push(`${name}: ${message.split('\n').slice(0, 6).join(' ')}`);
      log(`${name} FAILED: ${message}`);
    }
  };

  const machine = await machineInfo();
  log(`${quick ? 'quick' : 'full'} run on ${machine.cores} cores (${machine.cpu}), load ${machine.load}`);
  try {
    if (wants('backup')) await run('backup write path', () => benchBackup({ plan, figures, log }));
    // Section 8 runs its own stacks, each stopped as soon as its rows are measured.
    const realApps = (fn: (c: RealAppsContext) => Promise<void>) => async () => {
      const own: (() => Promise<void>)[] = [];
      const stopOwn = async () => {
        for (const c of own.splice(0).reverse()) await c().catch((error: unknown) => log(`cleanup: ${error instanceof Error ? error.message : String(error)}`));
      };
      cleanups.push(stopOwn);
      try {
        await fn({ plan, figures, notes, log, rows, onCleanup: (c) => { own.push(c); } });
      } finally {
        await stopOwn();
      }
    };
    if (wants('deps')) await run('real-dependency app vs Capistrano and pm2 deploy', realApps(benchDeps));
    if (wants('multi')) await run('multi-process app push', realApps(benchMulti));
    if (wants('delta')) await run('delta upload: big release, one small file changed', realApps(benchDelta));
    if (wants('fleet')) await run('fleet: 3 hosts vs 1', realApps(benchFleet));

    const stackSections: Section[] = ['upload', 'repush', 'rollouts', 'swapback', 'switch', 'wrk', 'wrkpush', 'footprint'];
    if (stackSections.some(wants)) {
      log('starting sshd, nginx, PM2 and the agent on loopback');
      const stack = await startStack({ appConfig: { watch: WATCH_ROLLOUT_PHASE } });
      cleanups.push(() => stack.stop());
      await setWatch(stack, WATCH_ROLLOUT_PHASE);
      const tokenFile = (stack.agentConfig.api as { tokenFile: string }).tokenFile;
      const api = await AgentApi.connect(stack.agentPort, tokenFile);
      await pause(2000);
      const idleRss = await steadyRss(stack.agent.pid);
      const bare: BareNginx = await startBareNginx();
      cleanups.push(() => bare.stop());
      const cap: Capistrano = await setUpCapistrano(stack);
      cleanups.push(() => cap.stop());
      const ctx: BenchContext = { quick, plan, stack, api, cap, bare, figures, notes, shared: { bareSwitchMs: [] }, log };

      log('warm-up: Slipway pushes to blue and green, Capistrano deploys once');
      requireCliOk(await deployCli(stack, ['push', '--no-wait']), 'warm-up push');
      await api.waitUnlocked(APP);
      await stack.repo.commit({ 'message.txt': 'bench warm-up\n' }, 'bench: warm-up');
      requireCliOk(await deployCli(stack, ['push', '--no-wait']), 'warm-up push');
      await api.waitUnlocked(APP);
      await cap.deploy();

      if (wants('upload')) await run('upload', () => benchUpload(ctx));
      if (wants('repush')) await run('re-push', () => benchRepush(ctx));
      if (wants('rollouts')) await run('push and rollback vs Capistrano', () => benchPushAndRollback(ctx));
      let swapBack: number[] = [];
      if (wants('swapback')) await run('automatic swap-back', async () => { swapBack = await benchSwapBack(ctx); });

      if (wants('switch') || wants('wrk') || wants('wrkpush') || wants('footprint') || wants('swapback')) {
        await setWatch(stack, WATCH_SWITCH_PHASE);
        // Both slots running distinct healthy releases: a fresh push puts one into the standby slot.
        await stack.repo.commit({ FAIL_HEALTH_AFTER_MS: null, 'message.txt': 'bench switch phase\n' }, 'bench: switch phase');
        requireCliOk(await deployCli(stack, ['push', '--no-wait']), 'push for the switch phase');
        await api.waitUnlocked(APP);
      }
      if (wants('switch') || wants('swapback')) await run('switch latency', () => benchSwitchLatency(ctx));
      if (wants('swapback')) {
        figures.push(makeFigure({
          id: 'rollback.swapback', section: '3. Rollback', title: 'automatic swap-back: failed check → old SHA served (ms)', unit: 'ms',
          slipway: { label: 'watch window swap-back', samples: swapBack }, baseline: { label: 'nginx flip + reload', samples: ctx.shared.bareSwitchMs },
          goal: { kind: 'ratioAtMost', value: 2 },
          notes: ['from the agent\'s failed watch verdict (its event timestamp) to the first probe answered by the old SHA through nginx'],
        }));
      }
      if (wants('wrk')) await run('zero downtime under wrk', () => benchZeroDowntime(ctx));
      if (wants('wrkpush')) await run('pushes under wrk (no reload)', () => benchPushesUnderWrk(ctx));
      if (wants('footprint')) await run('agent footprint', () => benchFootprint(ctx, idleRss));
    }
  } finally {
    log('stopping everything the bench started');
    await cleanup();
  }

  const order = ['1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.', '9.'];
  figures.sort((a, b) => order.findIndex((o) => a.section.startsWith(o)) - order.findIndex((o) => b.section.startsWith(o)));
  const durationS = (Date.now() - startedAt) / 1000;
  process.stdout.write(`\n${renderTable(figures)}\n\n`);
  for (const e of errors) process.stdout.write(`ERROR ${e}\n`);
  const info = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' as const : 'full' as const,
    durationS,
    machine,
    config: [
      `plan: ${JSON.stringify(plan)}`,
      'Slipway: the stack of the integration tests (test/helpers/stack.ts): private sshd with the unprivileged deploy user, private nginx (1 worker), isolated PM2, the agent at log level info, the sample app; health check every 100 ms',
      `watch window ${WATCH_ROLLOUT_PHASE.windowMs} ms for pushes, rollbacks and the swap-back (pushes are timed with --no-wait, so the window is excluded), 0 ms for the switch, wrk and footprint phase; keepPreviousWarm: true`,
      'Capistrano 3 (Debian package, test/bench/Capfile): git strategy from the same repository, same sshd and deploy user, `pm2 restart --update-env` through the `current` symlink; timed on the app\'s own port (one slot, no proxy)',
      '"served" = the first answer with the expected SHA on a fresh connection; probes every 5 ms (2 ms for switch latency); a gap = probes answered by neither SHA',
      'wrk -t2 -c50 against nginx, ended with SIGINT 0.5 s after the last flip; the bare reloads are paced like the agent\'s switches (like the pushes for the push rows: a new commit each, `deploy push --no-wait`, then until the lock is free)',
      'real apps (section 8): the deps-app fixture (express + bufferutil, build with the dev dependency mustache) from one repository: Capistrano 3 stage `deps` (release dir + `npm ci --omit=dev` + PM2 restart), `pm2 deploy` (pm2-deploy: git fetch/reset from a local bare origin, `npm ci --omit=dev`, `pm2 startOrReload --update-env`, fork mode, over its own private sshd as a bash account), Slipway `deploy push --no-wait` with deploy.spec.json (build on the controller, then build.on host); npm offline from a cache warmed once; unchanged lockfile = a commit touching message.txt, changed = a commit adding kleur at a new exact version',
    ],
    errors,
    notes,
  };
  // latest.md is the committed record: only a full run of every section replaces it.
  if (only === null && !quick) {
    const written = await writeResults(RESULTS_DIR, figures, info);
    process.stdout.write(`written: ${path.relative(process.cwd(), written.json)}, ${path.relative(process.cwd(), written.md)} (${durationS.toFixed(0)} s)\n`);
  } else {
    await fs.mkdir(RESULTS_DIR, { recursive: true });
    await fs.writeFile(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify({ ...info, figures }, null, 2)}\n`);
    process.stdout.write(`written: test/bench/results/latest.json (latest.md is left to full runs) (${durationS.toFixed(0)} s)\n`);
  }
  return errors.length > 0 ? 1 : 0;
}

main().then((code) => process.exit(code), (error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  killAllChildren();
  process.exit(1);
});
