import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { waitFor } from './wait.js';
import { packageRoot } from '../../contract/version.js';

// Found by walking up, so this works from test/helpers and from dist/test/helpers (the demo).
export const REPO_ROOT = packageRoot();
export const AGENT_MAIN = path.join(REPO_ROOT, 'dist', 'agent', 'main.js');
export const CONTROLLER_MAIN = path.join(REPO_ROOT, 'dist', 'controller', 'main.js');

export interface AgentProcess {
  pid: number;
  logPath: string;
  log(): string;
  /** SIGTERM, then SIGKILL if it has not exited by the deadline. */
  stop(): Promise<void>;
  /** Ends it at once, as a crash would. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

/** The node flags ecosystem.config.js gives the agent under PM2, so tests and bench run it the same way. */
async function agentNodeArgs(): Promise<string[]> {
  const ecosystem = await import(pathToFileURL(path.join(REPO_ROOT, 'ecosystem.config.js')).href) as { apps: { node_args?: string[] }[] };
  return ecosystem.apps[0]?.node_args ?? [];
}

/** Starts the built agent (dist/) as its own process, the way PM2 runs it on a VPS. */
export async function startAgentProcess(options: {
  configPath: string; logPath: string; healthUrl: string; env?: NodeJS.ProcessEnv;
  /** argv prefix, e.g. `ip netns exec NS` (execs: the pid is the agent's). */
  spawnPrefix?: readonly string[];
  /** How to ask healthUrl when the test cannot reach it directly (an agent on a namespace's loopback). */
  healthy?: () => Promise<boolean>;
}): Promise<AgentProcess> {
  const fd = openSync(options.logPath, 'a');
  const [command, ...args] = [...(options.spawnPrefix ?? []), process.execPath, ...await agentNodeArgs(), AGENT_MAIN, 'run', '--config', options.configPath];
  const child = spawn(command!, args, {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, SLIPWAY_LOG_LEVEL: 'debug', ...options.env },
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let hasExited = false;
  void exited.then(() => { hasExited = true; });
  const log = () => readFileSync(options.logPath, 'utf8');
  await waitFor(async () => {
    if (hasExited) throw new Error(`agent exited during start:\n${log()}`);
    if (options.healthy) return options.healthy();
    const res = await fetch(options.healthUrl).catch(() => null);
    return res?.ok ?? false;
    // A deadline, not a duration: on the shared 2-core machine several boxes starting at once
    // (the fleet lab) have taken more than 30 s under load; a healthy start answers far sooner.
  }, { timeoutMs: 90_000, description: `slipway-agent to answer ${options.healthUrl}` });
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (hasExited) return;
    child.kill(signal);
    await exited;
  };
  return {
    pid: child.pid!,
    logPath: options.logPath,
    log,
    exited,
    kill,
    async stop() {
      if (hasExited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** `output()`: what the CLI has printed so far, for tests that act on a line it prints while running. */
export interface BackgroundCli { pid: number; done: Promise<CliResult>; kill(): void; output(): { stdout: string; stderr: string } }

/** `main`: another build's controller entry (a copy of the package with another version, as `deploy upgrade` tests use). */
export interface DeployCliOptions {
  cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; main?: string;
  /** Written to the CLI's stdin, which is then closed (default: no stdin at all). */
  input?: string;
}

/** Runs the built `deploy` CLI as a user would, in the app's repository. */
export function runDeployCli(args: string[], options: DeployCliOptions): Promise<CliResult> {
  return startDeployCli(args, options).done;
}

/** The CLI started without waiting for it, for tests that act while a rollout runs. */
export function startDeployCli(args: string[], options: DeployCliOptions): BackgroundCli {
  let childPid = 0;
  let killChild = () => undefined as void;
  let stdout = '';
  let stderr = '';
  const done = new Promise<CliResult>((resolve, reject) => {
    const child = spawn(process.execPath, [options.main ?? CONTROLLER_MAIN, ...args], {
      cwd: options.cwd,
      env: { ...process.env, SSH_AUTH_SOCK: '', ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    childPid = child.pid!;
    killChild = () => { child.kill('SIGKILL'); };
    child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { pid: childPid, done, kill: () => killChild(), output: () => ({ stdout, stderr }) };
}
