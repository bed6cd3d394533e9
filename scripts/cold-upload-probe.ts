// `node dist/scripts/cold-upload-probe.js [--rounds N] [--mb M] [--gc DIR | --profile DIR] [--variant name:K=V,...]...`:
// the cold upload row of the bench (scripts/bench-lib/upload.ts) on its own, with where the time
// and the CPU go. One stack, one ~M MB release, N rounds of raw `ssh host 'cat > file'`, raw
// `ssh host 'cat > /dev/null'`, `ssh host true` (the SSH connection alone) and Slipway's upload
// (raw and Slipway alternating who goes first); per run the wall time, the CPU ms of the sender
// (ssh / the controller's ssh2), of sshd (its per-connection processes, counted when the listener
// reaps them, cat included) and of the agent (main thread, then each other thread: unpacking
// thread, libuv pool, GC helpers), and the agent's step timings from its log (connect, receive,
// unpackTail, verify, sync, publish). With --variant (repeatable) it compares agent environments
// instead, round by round at the same load: the agent restarts with each, one unmeasured upload
// first. With --profile, .cpuprofile files of the controller (upload runs only) and of the agent
// (whole run) go to DIR; --gc logs only the garbage collections.
import { appendFileSync, closeSync, openSync, promises as fs, readFileSync, readdirSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { loadControllerConfig } from '../controller/config.js';
import { openAgentSession } from '../controller/session.js';
import { quoteArg } from '../controller/shell-quote.js';
import { ensureDeployUser } from '../test/helpers/deploy-user.js';
import { APP, startStack } from '../test/helpers/stack.js';
import { forgetRelease, sshArgv } from './bench-lib/context.js';
import { runTimed } from './bench-lib/procs.js';
import { summarize } from './bench-lib/stats.js';
import { lastIngestTimings, makeRelease } from './bench-lib/upload.js';

const TICK_MS = 1000 / 100;
/** Preloaded into the agent (--cpu-prof is not allowed in NODE_OPTIONS): GC log, and a CPU profile with COLDUP_CPU_PROFILE. */
const AGENT_PRELOAD = `import { Session } from 'node:inspector';
import { PerformanceObserver } from 'node:perf_hooks';
import { appendFileSync, writeFileSync } from 'node:fs';
const dir = process.env.COLDUP_PROF_DIR;
new PerformanceObserver((list) => {
  let lines = '';
  const m = process.memoryUsage();
  const mb = (n) => (n / 1048576).toFixed(1);
  for (const e of list.getEntries()) lines += (performance.timeOrigin + e.startTime) + ' ' + e.detail.kind + ' ' + e.duration + ' heap=' + mb(m.heapUsed) + '/' + mb(m.heapTotal) + ' ab=' + mb(m.arrayBuffers) + '\\n';
  appendFileSync(dir + '/gc-agent.log', lines);
}).observe({ entryTypes: ['gc'] });
if (process.env.COLDUP_CPU_PROFILE) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (!error) writeFileSync(dir + '/agent-' + process.pid + '.cpuprofile', JSON.stringify(result.profile));
    });
  });
}
`;

/** GCs logged in `file` (epoch ms, kind, duration) between `from` and `to`: minor and major counts and ms. */
function gcBetween(file: string, from: number, to: number): { minor: number; major: number; ms: number } {
  const out = { minor: 0, major: 0, ms: 0 };
  let text = '';
  try { text = readFileSync(file, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    const [at, kind, ms] = line.split(' ').map(Number);
    if (at === undefined || kind === undefined || ms === undefined || !(at >= from && at <= to)) continue;
    // 1 scavenge, 2 mark-compact, 4 incremental marking (one per mark-compact started by it), 8 weak callbacks.
    if (kind === 1) out.minor += 1; else if (kind === 2 || kind === 4) out.major += 1;
    out.ms += ms;
  }
  return out;
}
interface Variant { name: string; env: Record<string, string> }

/** `--variant name:K=V,K=V`: an agent environment to compare (the agent restarts for each, one unmeasured upload first). */
function parseVariant(spec: string): Variant {
  const [name, list = ''] = spec.split(':', 2) as [string, string?];
  const env: Record<string, string> = {};
  for (const pair of list.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { name, env };
}

function parseArgs(argv: string[]): { rounds: number; mb: number; profile: string | null; cpu: boolean; variants: Variant[] } {
  const out = { rounds: 3, mb: 100, profile: null as string | null, cpu: false, variants: [] as Variant[] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--rounds') out.rounds = Number(argv[++i]);
    else if (arg === '--mb') out.mb = Number(argv[++i]);
    else if (arg === '--variant') out.variants.push(parseVariant(argv[++i] ?? ''));
    else if (arg === '--profile' || arg === '--gc') {
      out.profile = path.resolve(argv[++i] ?? 'profiles');
      out.cpu ||= arg === '--profile';
    }
    else throw new Error(`unknown argument ${arg}`);
  }
  return out;
}

/** utime+stime and cutime+cstime of a process, in ms. */
function times(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return { own: (f[11]! + f[12]!) * TICK_MS, children: (f[13]! + f[14]!) * TICK_MS };
}

/** CPU ms of each thread of `pid`, by thread id ('main' for the main thread). */
function threadTimes(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
      out.set(Number(tid) === pid ? 'main' : tid, (f[11]! + f[12]!) * TICK_MS);
    } catch { /* thread gone */ }
  }
  return out;
}

/** CPU ms per thread over a run: the main thread's, then the others' (unpacking thread, libuv pool, GC helpers), busiest first. */
function diffThreads(after: Map<string, number>, before: Map<string, number>): { main: number; others: number[] } {
  const others: number[] = [];
  let main = 0;
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (k === 'main') main = d;
    else if (d > 0) others.push(d);
  }
  return { main, others: others.sort((a, b) => b - a) };
}

/** Children of `pid` still alive (sshd's per-connection processes). */
function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(name));
    } catch { /* gone */ }
  }
  return kids;
}

async function sshdSettled(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (childrenOf(pid).length > 0) {
    if (Date.now() > deadline) throw new Error('sshd connection processes did not end within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Gc { minor: number; major: number; ms: number }
interface Run { ms: number; sender: number; sshd: number; agent: number; agentThreads: { main: number; others: number[] }; steps?: Record<string, number>; gc?: { agent: Gc; controller: Gc } }

async function main(): Promise<void> {
  const { rounds, mb, profile, cpu, variants } = parseArgs(process.argv.slice(2));
  const log = (m: string) => process.stderr.write(`[probe] ${m}\n`);
  log(`load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const stack = await startStack({ appConfig: { watch: { windowMs: 0, intervalMs: 200, failuresToRollback: 3 } } });
  let inspector: Session | null = null;
  try {
    let profileEnv = {};
    if (profile) {
      // --cpu-prof is not allowed in NODE_OPTIONS: a preloaded module profiles the agent instead.
      await fs.mkdir(profile, { recursive: true });
      const preload = path.join(profile, 'agent-preload.mjs');
      await fs.writeFile(preload, AGENT_PRELOAD);
      profileEnv = { NODE_OPTIONS: `--import=${preload}`, COLDUP_PROF_DIR: profile, ...(cpu ? { COLDUP_CPU_PROFILE: '1' } : {}) };
      new PerformanceObserver((list) => {
        appendFileSync(path.join(profile, 'gc-controller.log'), list.getEntries().map((e) => `${performance.timeOrigin + e.startTime} ${(e as unknown as { detail: { kind: number } }).detail.kind} ${e.duration}\n`).join(''));
      }).observe({ entryTypes: ['gc'] });
    }
    const agentEnv = { SLIPWAY_LOG_LEVEL: 'info', ...profileEnv };
    await stack.restartAgent({ env: agentEnv });
    const user = await ensureDeployUser();
    const rawDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-probe-raw-'));
    await fs.chown(rawDir, user.uid, user.gid);
    const config = loadControllerConfig(path.join(stack.repo.dir, 'deploy.config.json'));
    log(`packing a ~${mb} MB release`);
    const packStart = Date.now();
    const release = await makeRelease(stack, mb, `${mb}mb-probe`);
    const { packed, releaseId } = release;
    log(`packed ${(packed.bytes / 1e6).toFixed(1)} MB in ${Date.now() - packStart} ms (data written + tar + gzip)`);
    const sshdPid = stack.sshd.pid;
    log(`pids: controller ${process.pid}, agent ${stack.agent.pid}, sshd ${sshdPid}`);
    if (profile && cpu) {
      inspector = new Session();
      inspector.connect();
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.setSamplingInterval', { interval: 200 });
    }

    const measure = async (fn: () => Promise<number>, senderIsChild: boolean): Promise<Run> => {
      await sshdSettled(sshdPid);
      const agentPid = stack.agent.pid;
      const s0 = times(sshdPid).children;
      const a0 = times(agentPid).own;
      const t0 = threadTimes(agentPid);
      const self0 = times('self');
      const from = Date.now();
      const ms = await fn();
      const to = Date.now();
      await sshdSettled(sshdPid);
      const self1 = times('self');
      return {
        ms,
        sender: senderIsChild ? self1.children - self0.children : self1.own - self0.own,
        sshd: times(sshdPid).children - s0,
        agent: times(agentPid).own - a0,
        agentThreads: diffThreads(threadTimes(agentPid), t0),
        ...(profile ? { gc: { agent: gcBetween(path.join(profile, 'gc-agent.log'), from, to), controller: gcBetween(path.join(profile, 'gc-controller.log'), from, to) } } : {}),
      };
    };

    const rawTo = async (target: string): Promise<number> => {
      const fd = openSync(packed.file, 'r');
      try {
        const run = await runTimed(sshArgv(stack, `cat > ${quoteArg(target, 1)}`), { stdinFile: fd, timeoutMs: 300_000 });
        if (run.code !== 0) throw new Error(`raw ssh upload failed (${run.code}): ${run.stderr.slice(-500)}`);
        return run.ms;
      } finally {
        closeSync(fd);
        if (target !== '/dev/null') await fs.rm(target, { force: true });
      }
    };
    const raw = (): Promise<number> => rawTo(path.join(rawDir, 'upload.bin'));
    /** The SSH connection alone (`ssh host true`): the fixed cost both sides pay before a byte moves. */
    const handshake = async (): Promise<number> => {
      const run = await runTimed(sshArgv(stack, 'true'), { timeoutMs: 60_000 });
      if (run.code !== 0) throw new Error(`ssh true failed (${run.code}): ${run.stderr.slice(-500)}`);
      return run.ms;
    };
    let connectMs = 0;
    const slipway = async (): Promise<number> => {
      await forgetRelease(stack, releaseId);
      if (inspector) await inspector.post('Profiler.start');
      const started = performance.now();
      const session = await openAgentSession(config);
      connectMs = performance.now() - started;
      try {
        await session.agent.upload(`/apps/${APP}/releases/${releaseId}`, packed.file, packed.bytes, packed.sha256, () => undefined);
      } finally {
        await session.close();
      }
      const ms = performance.now() - started;
      if (inspector) {
        const { profile: p } = await inspector.post('Profiler.stop');
        await fs.writeFile(path.join(profile!, `controller-${Date.now()}.cpuprofile`), JSON.stringify(p));
      }
      return ms;
    };

    const agentLog = path.join(stack.dir, 'agent.log');
    const slipwayRun = async (): Promise<Run> => {
      const run = await measure(slipway, false);
      const steps = lastIngestTimings(agentLog);
      return { ...run, ...(steps ? { steps: { connect: Math.round(connectMs), ...steps } } : {}) };
    };
    if (variants.length > 0) {
      const byVariant = new Map<string, { runs: Run[]; ratios: number[] }>(variants.map((v) => [v.name, { runs: [], ratios: [] }]));
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? variants : [...variants].reverse();
        for (const variant of order) {
          await stack.restartAgent({ env: { ...agentEnv, ...variant.env } });
          await slipway(); // unmeasured: starts the unpacking thread, warms the agent
          const a = await measure(raw, true);
          const b = await slipwayRun();
          byVariant.get(variant.name)!.runs.push(b);
          byVariant.get(variant.name)!.ratios.push(a.ms / b.ms);
          log(`round ${r + 1} ${variant.name}: raw ${a.ms.toFixed(0)} ms | slipway ${b.ms.toFixed(0)} ms (controller ${b.sender.toFixed(0)}, sshd ${b.sshd.toFixed(0)}, agent ${b.agent.toFixed(0)} ${JSON.stringify(b.agentThreads)}) `
            + `steps ${JSON.stringify(b.steps ?? null)} ratio ${(a.ms / b.ms).toFixed(2)} load ${os.loadavg()[0]!.toFixed(2)}`);
        }
      }
      const summary: Record<string, unknown> = {};
      for (const [name, { runs, ratios }] of byVariant) {
        const m = (f: (x: Run) => number) => summarize(runs.map(f))!.median;
        summary[name] = {
          slipwayMs: m((x) => x.ms), medianRatio: summarize(ratios)!.median, controller: m((x) => x.sender), agent: m((x) => x.agent), agentMain: m((x) => x.agentThreads.main),
          steps: Object.fromEntries(Object.keys(runs[0]?.steps ?? {}).map((k) => [k, m((x) => x.steps?.[k] ?? 0)])),
        };
      }
      process.stdout.write(`${JSON.stringify({ bytes: packed.bytes, rounds, variants: summary, load: os.loadavg() })}\n`);
      await forgetRelease(stack, releaseId);
      await release.cleanup();
      await fs.rm(rawDir, { recursive: true, force: true });
      return;
    }
    const raws: Run[] = [];
    const slips: Run[] = [];
    const nulls: Run[] = [];
    const shakes: number[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) { raws.push(await measure(raw, true)); slips.push(await slipwayRun()); }
      else { slips.push(await slipwayRun()); raws.push(await measure(raw, true)); }
      nulls.push(await measure(() => rawTo('/dev/null'), true));
      shakes.push(await handshake());
      const a = raws.at(-1)!;
      const b = slips.at(-1)!;
      const n = nulls.at(-1)!;
      log(`round ${r + 1}: raw ${a.ms.toFixed(0)} ms (ssh ${a.sender.toFixed(0)}, sshd ${a.sshd.toFixed(0)}) `
        + `| raw to /dev/null ${n.ms.toFixed(0)} ms (ssh ${n.sender.toFixed(0)}, sshd ${n.sshd.toFixed(0)}) | ssh true ${shakes.at(-1)!.toFixed(0)} ms `
        + `| slipway ${b.ms.toFixed(0)} ms (controller ${b.sender.toFixed(0)}, sshd ${b.sshd.toFixed(0)}, agent ${b.agent.toFixed(0)} ${JSON.stringify(b.agentThreads)}) `
        + `steps ${JSON.stringify(b.steps ?? null)} ratio ${(a.ms / b.ms).toFixed(2)} load ${os.loadavg()[0]!.toFixed(2)}${b.gc ? ` gc ${JSON.stringify(b.gc)}` : ''}`);
    }
    const med = (runs: Run[], k: 'ms' | 'sender' | 'sshd' | 'agent') => summarize(runs.map((x) => x[k]))!.median;
    const ratios = raws.map((a, i) => a.ms / slips[i]!.ms);
    process.stdout.write(`${JSON.stringify({
      bytes: packed.bytes, rounds,
      rawMs: med(raws, 'ms'), slipwayMs: med(slips, 'ms'),
      ratioOfMedians: med(raws, 'ms') / med(slips, 'ms'), medianRatio: summarize(ratios)!.median,
      raw: { ssh: med(raws, 'sender'), sshd: med(raws, 'sshd') },
      rawToNull: { ms: med(nulls, 'ms'), ssh: med(nulls, 'sender'), sshd: med(nulls, 'sshd') },
      sshTrueMs: summarize(shakes)!.median,
      slipway: {
        controller: med(slips, 'sender'), sshd: med(slips, 'sshd'), agent: med(slips, 'agent'),
        agentMain: summarize(slips.map((x) => x.agentThreads.main))!.median,
        steps: Object.fromEntries(Object.keys(slips[0]?.steps ?? {}).map((k) => [k, summarize(slips.map((x) => x.steps?.[k] ?? 0))!.median])),
      },
      load: os.loadavg(),
    })}\n`);
    await forgetRelease(stack, releaseId);
    await release.cleanup();
    await fs.rm(rawDir, { recursive: true, force: true });
  } finally {
    inspector?.disconnect();
    await stack.stop();
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`probe failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
