/**
 * GitHub Actions workflows (examples/github-actions/*.yml) run for real on this machine, the way a
 * runner would run their shell steps, so the commands a user copies are the commands we test.
 *
 * What a job run here is:
 * - `uses:` steps are not run; the test provides their effect: actions/checkout is the test's app
 *   repository (full history and tags, HEAD at the commit), actions/setup-node is this node,
 *   actions/cache is a miss.
 * - `run:` steps the test names as replaced (the CLI install: it builds Slipway with npm) are not
 *   run; a `deploy` on PATH stands for the installed package (the same dist/ code it holds;
 *   test/integration/cli-package.test.ts proves the package itself).
 * - Every other `run:` step runs as written, in order, with the shell GitHub uses (`bash -e` when
 *   the step names none, `bash --noprofile --norc -eo pipefail` for `shell: bash`), in the job's
 *   working directory, with workflow, job and step `env:` merged (later wins) over the runner's
 *   variables. The job stops at the first step that exits non-zero, as on GitHub.
 * - `${{ ... }}` expressions are replaced textually from a map the test documents; one the map
 *   does not have is an error (never an empty string), so the map lists every expression the
 *   steps that run depend on.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { load } from 'js-yaml';
import { runCommand } from '../../lib/exec.js';
import { CONTROLLER_MAIN } from './agent-process.js';

export interface WorkflowStep {
  name?: string;
  id?: string;
  uses?: string;
  with?: Record<string, unknown>;
  run?: string;
  shell?: string;
  env?: Record<string, unknown>;
  'working-directory'?: string;
}

export interface WorkflowJob {
  'runs-on'?: unknown;
  environment?: string | { name: string; url?: string };
  concurrency?: unknown;
  env?: Record<string, unknown>;
  defaults?: { run?: { shell?: string; 'working-directory'?: string } };
  steps: WorkflowStep[];
}

export interface Workflow {
  file: string;
  name?: string;
  on: unknown;
  env?: Record<string, unknown>;
  concurrency?: unknown;
  permissions?: unknown;
  defaults?: { run?: { shell?: string; 'working-directory'?: string } };
  jobs: Record<string, WorkflowJob>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses a workflow file and checks the shape the runner needs (jobs with step lists). */
export async function loadWorkflow(file: string): Promise<Workflow> {
  const raw = load(await fs.readFile(file, 'utf8'), { filename: file });
  if (!isRecord(raw) || !('on' in raw) || !isRecord(raw.jobs)) throw new Error(`${file}: not a workflow (needs "on" and "jobs")`);
  for (const [id, job] of Object.entries(raw.jobs)) {
    if (!isRecord(job) || !Array.isArray(job.steps)) throw new Error(`${file}: jobs.${id} has no steps list`);
    job.steps.forEach((step: unknown, index) => {
      if (!isRecord(step) || (typeof step.run === 'string') === (typeof step.uses === 'string')) {
        throw new Error(`${file}: jobs.${id}.steps[${index}] needs exactly one of run and uses`);
      }
    });
  }
  return { ...(raw as unknown as Omit<Workflow, 'file'>), file };
}

const EXPRESSION = /\$\{\{\s*([\s\S]*?)\s*\}\}/g;

/** Pure: the expressions (`${{ x }}` → `x`) in a text, in order. */
export function expressionsIn(text: string): string[] {
  return [...text.matchAll(EXPRESSION)].map((m) => m[1]!);
}

/** Pure: `text` with every `${{ x }}` replaced by `values[x]`; an expression not in `values` throws. */
export function substituteExpressions(text: string, values: Readonly<Record<string, string>>, where: string): string {
  return text.replace(EXPRESSION, (_, expression: string) => {
    if (!Object.hasOwn(values, expression)) {
      throw new Error(`${where}: the expression \${{ ${expression} }} is not in the test's expression map`);
    }
    return values[expression]!;
  });
}

/**
 * Pure: whether a shell script runs `deploy` as a command (not as a word inside quotes, a
 * comment or another command's argument): at the start of a line or after ; & | ( ! { or one of
 * then/do/else/exec/time.
 */
export function callsDeploy(script: string): boolean {
  const code = script
    .replace(/'[^']*'/g, "''")
    .replace(/"(?:\\.|[^"\\])*"/g, '""')
    .replace(/(^|\s)#.*$/gm, '$1');
  return /(?:^|[;&|(!{]|\b(?:then|do|else|exec|time)\b)[ \t]*deploy(?=[ \t]|$)/m.test(code);
}

export interface RunStep {
  job: string;
  index: number;
  name: string;
  script: string;
  /** workflow, job and step env merged (later wins), expressions not yet substituted. */
  env: Record<string, string>;
  shell: string | null;
  workingDirectory: string | null;
}

function stringEnv(env: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(env ?? {}).map(([key, value]) => [key, String(value)]));
}

/** Pure: the `run:` steps of one job, in order, with what they run with. */
export function runSteps(workflow: Workflow, jobId: string): RunStep[] {
  const job = workflow.jobs[jobId];
  if (!job) throw new Error(`${workflow.file}: no job ${jobId} (jobs: ${Object.keys(workflow.jobs).join(', ')})`);
  const steps: RunStep[] = [];
  job.steps.forEach((step, index) => {
    if (step.run === undefined) return;
    steps.push({
      job: jobId,
      index,
      name: step.name ?? step.run.split('\n')[0]!,
      script: step.run,
      env: { ...stringEnv(workflow.env), ...stringEnv(job.env), ...stringEnv(step.env) },
      shell: step.shell ?? job.defaults?.run?.shell ?? workflow.defaults?.run?.shell ?? null,
      workingDirectory: step['working-directory'] ?? job.defaults?.run?.['working-directory'] ?? workflow.defaults?.run?.['working-directory'] ?? null,
    });
  });
  return steps;
}

/** Pure: the argv GitHub's runner uses for a script file under `shell` (Linux runners). */
export function shellArgv(shell: string | null, scriptFile: string): string[] {
  if (shell === null) return ['bash', '-e', scriptFile];
  if (shell === 'bash') return ['bash', '--noprofile', '--norc', '-eo', 'pipefail', scriptFile];
  if (shell === 'sh') return ['sh', '-e', scriptFile];
  throw new Error(`shell ${shell} is not supported by the workflow runner of the tests`);
}

/** Writes `<dir>/deploy`, the installed CLI's stand-in: this node running dist/controller/main.js. */
export async function writeDeployShim(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, 'deploy');
  await fs.writeFile(file, `#!/bin/sh\nexec '${process.execPath}' '${CONTROLLER_MAIN}' "$@"\n`, { mode: 0o755 });
  return file;
}

export interface JobContext {
  /** The checkout: GITHUB_WORKSPACE and the steps' working directory. */
  workspace: string;
  /** The runner's HOME (~/.ssh goes there). */
  home: string;
  /** Holds the `deploy` shim; put first on PATH. */
  binDir: string;
  /** Scratch dir: RUNNER_TEMP, and where step scripts are written. */
  temp: string;
  /** Values of `${{ ... }}` expressions (see the module comment). */
  expressions: Readonly<Record<string, string>>;
  /** The runner's default variables for this event (GITHUB_REF_NAME, GITHUB_SHA, ...). */
  runnerEnv: Readonly<Record<string, string>>;
  /** Steps not run (their effect is provided by the test). */
  replaced: (step: RunStep) => boolean;
  stepTimeoutMs?: number;
}

export interface StepResult { name: string; script: string; callsDeploy: boolean; exitCode: number | null; stdout: string; stderr: string }

export interface JobResult {
  /** Exit code of the job: 0, or the code of the step that failed it. */
  exitCode: number | null;
  steps: StepResult[];
  /** The step that failed the job, if one did. */
  failed: StepResult | null;
}

/** Runs the `run:` steps of one job as a GitHub runner would (see the module comment). */
export async function runJob(workflow: Workflow, jobId: string, ctx: JobContext): Promise<JobResult> {
  const results: StepResult[] = [];
  for (const step of runSteps(workflow, jobId)) {
    if (ctx.replaced(step)) continue;
    const where = `${path.basename(workflow.file)} jobs.${jobId}.steps[${step.index}] (${step.name})`;
    const script = substituteExpressions(step.script, ctx.expressions, where);
    const stepEnv = Object.fromEntries(Object.entries(step.env).map(([key, value]) => [key, substituteExpressions(value, ctx.expressions, `${where} env.${key}`)]));
    const scriptFile = path.join(ctx.temp, `${jobId}-step-${step.index}.sh`);
    await fs.writeFile(scriptFile, script);
    const result = await runCommand(shellArgv(step.shell, scriptFile), {
      cwd: step.workingDirectory ? path.resolve(ctx.workspace, step.workingDirectory) : ctx.workspace,
      env: {
        PATH: `${ctx.binDir}:${process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'}`,
        HOME: ctx.home,
        CI: 'true',
        GITHUB_ACTIONS: 'true',
        GITHUB_WORKSPACE: ctx.workspace,
        RUNNER_TEMP: ctx.temp,
        ...ctx.runnerEnv,
        ...stepEnv,
      },
      timeoutMs: ctx.stepTimeoutMs ?? 180_000,
      maxOutputBytes: 256 * 1024,
    });
    const stepResult: StepResult = {
      name: step.name, script, callsDeploy: callsDeploy(step.script), exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr,
    };
    results.push(stepResult);
    if (result.exitCode !== 0) return { exitCode: result.exitCode, steps: results, failed: stepResult };
  }
  return { exitCode: 0, steps: results, failed: null };
}

/** A job's output for assertion messages: each step's name, exit code and output tail. */
export function describeJob(result: JobResult): string {
  return result.steps.map((s) => `--- ${s.name}: exit ${s.exitCode}\n${s.stdout.slice(-3000)}${s.stderr.slice(-3000)}`).join('\n');
}
