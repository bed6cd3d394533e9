// Item 1: Slipway's upload path (the controller's SSH session and AgentClient.upload, the agent's
// PUT /apps/:app/releases/:id that hashes and unpacks the tarball as it arrives, then syncs and
// publishes it) against a raw `ssh host 'cat > file'` of the same tarball over the same sshd.
import { openSync, closeSync, readFileSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildManifest } from '../../controller/manifest.js';
import { loadControllerConfig } from '../../controller/config.js';
import { openAgentSession } from '../../controller/session.js';
import { prepareRelease, type PackedRelease } from '../../controller/pack.js';
import { VERSION } from '../../contract/version.js';
import { quoteArg } from '../../controller/shell-quote.js';
import { ensureDeployUser } from '../../test/helpers/deploy-user.js';
import { APP, type Stack } from '../../test/helpers/stack.js';
import { forgetRelease, sshArgv, type BenchContext } from './context.js';
import { epochMs } from './poller.js';
import { cpuMs, runTimed } from './procs.js';
import { makeFigure } from './report.js';
import { writeReleaseData } from './release-data.js';
import { summarize, throughput } from './stats.js';

const MiB = 1024 * 1024;
const SECTION = '1. Upload';

export interface BigRelease { releaseId: string; packed: PackedRelease; cleanup(): Promise<void> }

/**
 * The step timings (ms) of the agent's last 'release stored' log line (agent/release/store.ts
 * IngestTimings: receive, unpackTail, verify, sync, publish), or null when there is none.
 */
export function lastIngestTimings(logFile: string): Record<string, number> | null {
  let text = '';
  try { text = readFileSync(logFile, 'utf8'); } catch { return null; }
  const lines = text.trimEnd().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i]!.includes('"release stored"')) continue;
    try { return (JSON.parse(lines[i]!) as { ms?: Record<string, number> }).ms ?? null; } catch { return null; }
  }
  return null;
}

/** Median of each step over runs, as `step ms` pairs. */
function medianSteps(runs: Record<string, number>[]): string {
  if (runs.length === 0) return 'not logged';
  return Object.keys(runs[0]!).map((k) => `${k} ${summarize(runs.map((r) => r[k] ?? 0))!.median.toFixed(0)}`).join(', ');
}

/** A commit whose release carries `megabytes` of untracked data: ~85% random blobs, the rest source. */
export async function makeRelease(stack: Stack, megabytes: number, label: string): Promise<BigRelease> {
  const { repo } = stack;
  const sha = await repo.commit({ '.gitignore': 'bench-data/\n', 'bench-upload.txt': `${label}\n` }, `bench: ${label} upload release`);
  const dataDir = path.join(repo.dir, 'bench-data');
  await fs.rm(dataDir, { recursive: true, force: true });
  // Random blobs ship as they are; the source part shrinks about 4:1 under gzip.
  await writeReleaseData(dataDir, { randomBytes: Math.round(megabytes * 0.85 * MiB), sourceBytes: Math.round(megabytes * 0.6 * MiB) }, label);
  try {
    const prepared = await prepareRelease({ repo: repo.dir, treeish: sha, include: ['bench-data'], mtime: new Date(0) });
    try {
      const manifest = buildManifest({
        app: APP, sha, dirtySnapshot: null, branch: 'main',
        authorName: 'Slipway Bench', authorEmail: 'bench@slipway.invalid', commitTime: new Date().toISOString(),
      }, prepared.contentDigest, VERSION);
      return { releaseId: manifest.releaseId, packed: await prepared.seal(manifest), cleanup: prepared.cleanup };
    } catch (error) {
      await prepared.cleanup();
      throw error;
    }
  } finally {
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

export async function benchUpload(ctx: BenchContext): Promise<void> {
  const { stack, plan } = ctx;
  const user = await ensureDeployUser();
  const rawDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-raw-'));
  await fs.chown(rawDir, user.uid, user.gid);
  const config = loadControllerConfig(path.join(stack.repo.dir, 'deploy.config.json'));
  const releases: BigRelease[] = [];
  try {
    for (const [megabytes, label] of [[plan.uploadBigMB, `${plan.uploadBigMB}mb`], [plan.uploadSmallMB, `${plan.uploadSmallMB}mb`]] as const) {
      ctx.log(`upload: packing a ~${megabytes} MB release`);
      const release = await makeRelease(stack, megabytes, label);
      releases.push(release);
      const { packed, releaseId } = release;
      const raw: number[] = [];
      const slipway: number[] = [];
      const transfer: number[] = [];
      const rawMs: number[] = [];
      const slipwayMs: number[] = [];
      const afterMs: number[] = [];
      /** CPU ms per Slipway upload: the controller (this process) and the agent (all its threads). */
      const controllerCpu: number[] = [];
      const agentCpu: number[] = [];
      /** The agent's step timings per Slipway upload (its log). */
      const steps: Record<string, number>[] = [];
      const loadBefore = os.loadavg()[0]!;
      const partFile = path.join(stack.home, 'incoming', `${packed.sha256}.part`);
      const runRaw = async () => {
        const target = path.join(rawDir, 'upload.bin');
        const fd = openSync(packed.file, 'r');
        try {
          const run = await runTimed(sshArgv(stack, `cat > ${quoteArg(target, 1)}`), { stdinFile: fd, timeoutMs: 300_000 });
          if (run.code !== 0) throw new Error(`raw ssh upload failed (${run.code}): ${run.stderr.slice(-500)}`);
          const size = (await fs.stat(target)).size;
          if (size !== packed.bytes) throw new Error(`raw ssh upload wrote ${size} of ${packed.bytes} bytes`);
          raw.push(throughput(packed.bytes, run.ms));
          rawMs.push(run.ms);
        } finally {
          closeSync(fd);
          await fs.rm(target, { force: true });
        }
      };
      const runSlipway = async () => {
        await forgetRelease(stack, releaseId);
        // The agent's phases, seen from outside: the last byte in the .part file (or the .part
        // gone once seen: the agent deletes it as soon as the upload is complete and verified,
        // often within one poll); the upload's answer. The archive is unpacked while it arrives,
        // so there is no separate unpack phase to see.
        let allBytesAt: number | null = null;
        let partSeen = false;
        const watcher = setInterval(() => {
          if (allBytesAt !== null) return;
          void fs.stat(partFile).then((st) => {
            partSeen = true;
            if (st.size >= packed.bytes && allBytesAt === null) allBytesAt = epochMs();
          }, () => { if (partSeen && allBytesAt === null) allBytesAt = epochMs(); });
        }, 5);
        const started = epochMs();
        const cpu0 = process.cpuUsage();
        const agent0 = await cpuMs(stack.agent.pid);
        try {
          const session = await openAgentSession(config);
          try {
            await session.agent.upload(`/apps/${APP}/releases/${releaseId}`, packed.file, packed.bytes, packed.sha256, () => undefined);
          } finally {
            await session.close();
          }
        } finally {
          clearInterval(watcher);
        }
        const ms = epochMs() - started;
        const cpu = process.cpuUsage(cpu0);
        controllerCpu.push((cpu.user + cpu.system) / 1000);
        const agent1 = await cpuMs(stack.agent.pid);
        if (agent0 !== null && agent1 !== null) agentCpu.push(agent1 - agent0);
        const logged = lastIngestTimings(path.join(stack.dir, 'agent.log'));
        if (logged) steps.push(logged);
        const stored = await ctx.api.json<{ bytes: number }>('GET', `/apps/${APP}/releases/${releaseId}`);
        if (stored.bytes !== packed.bytes) throw new Error(`the agent stored ${stored.bytes} of ${packed.bytes} bytes`);
        slipway.push(throughput(packed.bytes, ms));
        slipwayMs.push(ms);
        if (allBytesAt !== null) {
          transfer.push(throughput(packed.bytes, (allBytesAt as number) - started));
          afterMs.push(started + ms - (allBytesAt as number));
        }
      };
      for (let rep = 0; rep < plan.uploadReps; rep++) {
        // Alternate who goes first, so neither always meets a warmer or colder page cache.
        if (rep % 2 === 0) { await runRaw(); await runSlipway(); } else { await runSlipway(); await runRaw(); }
      }
      const mb = (packed.bytes / 1e6).toFixed(1);
      // On a shared machine the wall times swing with the load: each round's raw/Slipway pair ran
      // back to back, so the paired ratios and the CPU per upload are the steadier figures.
      const paired = rawMs.map((r, i) => r / slipwayMs[i]!);
      const median = (values: number[]): string => summarize(values)?.median.toFixed(0) ?? '?';
      ctx.figures.push(makeFigure({
        id: `upload.${label}`, section: SECTION, title: `upload ${mb} MB release: stored + unpacked (MB/s)`, unit: 'MB/s',
        slipway: { samples: slipway }, baseline: { label: "ssh 'cat > file'", samples: raw }, goal: { kind: 'ratioAtLeast', value: 0.9 },
        notes: [
          `Slipway ${slipwayMs.map((v) => v.toFixed(0)).join('/')} ms vs raw ${rawMs.map((v) => v.toFixed(0)).join('/')} ms, each including its SSH connection; Slipway answers once the release is checked, unpacked and synced`,
          `paired ratios (raw ms / Slipway ms, same round): ${paired.map((v) => v.toFixed(2)).join('/')}; load average ${loadBefore.toFixed(1)} → ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`,
          `CPU per Slipway upload (median): controller ${median(controllerCpu)} ms, agent ${median(agentCpu)} ms (main thread + unpacking thread + libuv pool)`,
          `agent steps, one after the other (median ms): ${medianSteps(steps)}; receive = until the last byte is in and its sha256 checked (unpacking runs beside it), unpackTail = unpacking left after the last byte`,
        ],
      }));
      ctx.figures.push(makeFigure({
        id: `upload.${label}.transfer`, section: SECTION, title: `upload ${mb} MB release: all bytes on the host (MB/s)`, unit: 'MB/s',
        slipway: { samples: transfer }, baseline: { label: "ssh 'cat > file'", samples: raw },
        notes: [
          'until the agent\'s incoming .part file holds every byte (transfer + hash + write), read from outside the agent',
          `after the last byte (median): ${summarize(afterMs)?.median.toFixed(0) ?? '?'} ms until the answer (the rest of the unpacking, fsyncs, rename; plus the answer's way back)`,
        ],
      }));
      await forgetRelease(stack, releaseId);
    }
  } finally {
    for (const r of releases) {
      await r.cleanup();
      await forgetRelease(stack, r.releaseId).catch(() => undefined);
    }
    await fs.rm(rawDir, { recursive: true, force: true });
  }
}
