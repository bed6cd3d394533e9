// Delta uploads (issue 16, part 1): a large release with one small file changed, pushed through
// the CLI on a stack of its own (its big commit must not slow the other sections), next to pushes
// of the tiny sample app on the same stack: the bytes sent, and push → served.
import { randomBytes } from 'node:crypto';
import { APP, startStack } from '../../test/helpers/stack.js';
import { AgentApi } from './agent-api.js';
import { deployCli, jsonLines, liveRelease, requireCliOk } from './context.js';
import type { RealAppsContext } from './real-apps.js';
import { makeFigure } from './report.js';
import { timeUntilServed } from './rollouts.js';
import { summarize } from './stats.js';

const SECTION = '1. Upload';
const FILE_MB = 1;
const CHANGED_BYTES = 10 * 1024;

export async function benchDelta(ctx: RealAppsContext): Promise<void> {
  const { plan, log } = ctx;
  const reps = plan.rolloutReps;
  const releaseMB = plan.uploadBigMB;
  const stack = await startStack();
  ctx.onCleanup(() => stack.stop());
  await stack.restartAgent({ env: { SLIPWAY_LOG_LEVEL: 'info' } });
  const api = await AgentApi.connect(stack.agentPort, (stack.agentConfig.api as { tokenFile: string }).tokenFile);
  const url = `${stack.publicUrl}/`;

  /** One push of a new commit, timed until it is served; returns the ms and the bytes it sent. */
  const timedPush = async (files: Record<string, string>, what: string): Promise<{ ms: number; bytes: number; steps: string }> => {
    const before = await liveRelease(url);
    const sha = await stack.repo.commit(files, what);
    const t = await timeUntilServed(url, before, sha, () => deployCli(stack, ['push', '--no-wait']));
    requireCliOk(t.run, what);
    await api.waitUnlocked(APP);
    const lines = jsonLines(t.run).map((l) => l.value);
    const result = lines.find((l) => l.type === 'result' || l.outcome !== undefined);
    const upload = lines.find((l) => l.upload === 'delta' || l.upload === 'full');
    return { ms: t.servedMs, bytes: Number(result?.uploadedBytes ?? upload?.uploadedBytes ?? NaN), steps: String(upload?.upload ?? 'none') };
  };

  log('delta: warm-up push of the tiny sample app');
  requireCliOk(await deployCli(stack, ['push', '--no-wait']), 'delta warm-up push');
  await api.waitUnlocked(APP);
  const tiny: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    tiny.push((await timedPush({ 'message.txt': `delta bench tiny ${rep}\n` }, `bench: tiny push ${rep}`)).ms);
    log(`delta: tiny push ${rep + 1}/${reps}: ${tiny.at(-1)} ms`);
  }

  log(`delta: committing a ${releaseMB} MB release (${releaseMB} files of ${FILE_MB} MB, incompressible)`);
  const big: Record<string, string> = {};
  // Hex of random bytes: as incompressible as text gets (gzip halves it, no more).
  for (let i = 0; i < releaseMB; i++) big[`data/blob${i}.txt`] = randomBytes(FILE_MB * 1024 * 1024 / 2).toString('hex');
  big['data/changing.txt'] = randomBytes(CHANGED_BYTES / 2).toString('hex');
  const first = await timedPush(big, 'bench: big release');
  log(`delta: first push of the big release (${first.steps}): ${(first.bytes / 1e6).toFixed(1)} MB sent, served in ${first.ms} ms`);

  const served: number[] = [];
  const sent: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const push = await timedPush({ 'data/changing.txt': randomBytes(CHANGED_BYTES / 2).toString('hex') }, `bench: one 10 KB file changed ${rep}`);
    if (push.steps !== 'delta') throw new Error(`push ${rep} of one changed file was not a delta upload (${push.steps})`);
    served.push(push.ms);
    sent.push(push.bytes);
    log(`delta: one 10 KB file changed ${rep + 1}/${reps}: ${push.bytes} B sent, served in ${push.ms} ms`);
  }
  const releaseBytes = releaseMB * FILE_MB * 1024 * 1024 + CHANGED_BYTES;
  ctx.figures.push(makeFigure({
    id: 'upload.delta.bytes', section: SECTION, title: `push of a ${releaseMB} MB release with one 10 KB file changed: bytes sent`, unit: 'B',
    slipway: { label: 'deploy push (delta)', samples: sent }, goal: { kind: 'atMost', value: Math.round(releaseBytes / 100) },
    notes: [`1% of the release (${releaseBytes} B); a full upload of it sent ${first.bytes} B (gzip of hex text)`],
  }));
  ctx.figures.push(makeFigure({
    id: 'upload.delta.served', section: SECTION, title: `push → served: ${releaseMB} MB release, one 10 KB file changed (ms)`, unit: 'ms',
    slipway: { label: 'deploy push (delta)', samples: served }, baseline: { label: 'tiny sample app push', samples: tiny },
    goal: { kind: 'ratioAtMost', value: 1.2 },
    notes: [`same stack, --no-wait; the first (full) push of the big release was served in ${first.ms} ms; tiny median ${summarize(tiny)?.median.toFixed(0)} ms`],
  }));
}
