// The release phase: the spec's `release` commands (argv, e.g. database migrations), run once per
// rollout of a new release, after the host build and the pre-deploy backup and before any process
// of the new release starts, with the app's env and the release dir as cwd. A failure stops the
// rollout with nothing started or switched. A rollback does not undo what they did: migrations
// must keep the previous release working (expand first, contract in a later release).
import { SlipwayError } from '../../contract/errors.js';
import { shortSha } from '../../contract/names.js';
import { describeEnd, runStreaming } from '../build/stream-run.js';

/** Lines of a failing command's output the error carries. */
const ERROR_TAIL_LINES = 20;
/** Each command's time limit unless the box owner sets apps.<app>.build.releaseTimeoutMs. */
export const DEFAULT_RELEASE_TIMEOUT_MS = 10 * 60_000;

export interface ReleasePhaseInput {
  app: string;
  releaseId: string;
  commands: string[][];
  /** The release dir (real path): every command's cwd. */
  cwd: string;
  /** The app's env file, as its processes get it. */
  appEnv: Record<string, string>;
  timeoutMs: number;
  /** Each line of output, as it comes. */
  output: (line: string) => void;
  /** A command starts. */
  note: (message: string) => void;
}

/** The environment of a release command: what the app's processes get, without a port. */
export function releasePhaseEnv(app: string, releaseId: string, appEnv: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    NODE_ENV: 'production',
    ...appEnv,
    SLIPWAY_APP: app,
    SLIPWAY_RELEASE: releaseId,
    SLIPWAY_PHASE: 'release',
  };
}

/** Runs the commands in order; throws release_phase_failed at the first that does not exit 0. */
export async function runReleasePhase(input: ReleasePhaseInput): Promise<{ commands: number }> {
  const env = releasePhaseEnv(input.app, input.releaseId, input.appEnv);
  for (const [i, argv] of input.commands.entries()) {
    const shown = argv.join(' ');
    input.note(`release/${i}: ${shown}`);
    const run = await runStreaming(argv, { cwd: input.cwd, env, timeoutMs: input.timeoutMs, onLine: input.output, tailLines: ERROR_TAIL_LINES });
    if (!run.ok) {
      throw new SlipwayError('release_phase_failed', `release command ${i + 1} of ${input.commands.length} of ${input.app}@${shortSha(input.releaseId)} (${shown}) ${describeEnd(run, input.timeoutMs)}; nothing was started or switched`, {
        status: 422,
        details: [`command: ${JSON.stringify(argv)}`, `exit code: ${run.exitCode ?? 'none'}${run.timedOut ? ' (timed out)' : ''}`, `last ${run.tail.length} line(s) of output:`, ...run.tail],
        hint: 'fix the command (deploy.spec.json "release") or what it needs, and push again; anything it changed before failing (a partly applied migration) stays as it is',
      });
    }
  }
  return { commands: input.commands.length };
}
