import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { SlipwayError } from '../contract/errors.js';
import { RELEASE_REF_PATTERN } from '../contract/api.js';
import { isSlot, type Slot } from '../contract/names.js';
import { VERSION } from '../contract/version.js';
import { DEFAULT_CONFIG_FILE, loadControllerConfig, loadDeployConfig } from './config.js';
import { promote } from './commands/promote.js';
import { askOnTerminal } from './prompt.js';
import type { Target } from './environments.js';
import { EXIT, exitCodeFor, type ExitCode } from './errors.js';
import { DEBUG_ENV, HumanOutput, JsonOutput, internalErrorLine, type Output } from './output.js';
import { push } from './commands/push.js';
import { fleetPush } from './fleet/push.js';
import { switchSlot } from './commands/switch.js';
import { status } from './commands/status.js';
import { rollback } from './commands/rollback.js';
import { cleanupReleases, history, lockRelease, lockStatus, releases } from './commands/history.js';
import { backupList, backupRestore, backupRun } from './commands/backup.js';
import { metrics } from './commands/metrics.js';
import { tls } from './commands/tls.js';
import { logs, parseSince } from './commands/logs.js';
import { LIVE_REF, diff } from './commands/diff.js';
import { parseHostList, resolveFleet, selectHosts, type FleetTarget } from './fleet/target.js';
import { fleetHistory, fleetLockRelease, fleetLockStatus, fleetReleases, fleetStatus } from './commands/fleet-view.js';
import { fleetReconcile, fleetRollback, fleetSwitch } from './commands/fleet-move.js';
import { envApply, envList, envPatch, valuesFromDotenv, valuesFromEnvironment } from './commands/env.js';

interface GlobalOptions { config?: string; json?: boolean; env?: string }

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 86_400) throw new InvalidArgumentError('must be a whole number of seconds (0–86400)');
  return n;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('must be a whole number from 1 to 1000');
  return n;
}

function parseDeploymentId(value: string): number {
  if (!/^[1-9][0-9]{0,11}$/.test(value)) throw new InvalidArgumentError('must be a deployment number, as deploy history shows it (#12 → 12)');
  return Number(value);
}

function parseReleaseRef(value: string): string {
  if (!new RegExp(RELEASE_REF_PATTERN).test(value)) throw new InvalidArgumentError('must be a release id or a prefix of at least 7 of its characters (see deploy releases)');
  return value;
}

function parseReleaseRefOrLive(value: string): string {
  return value === LIVE_REF ? value : parseReleaseRef(value);
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new InvalidArgumentError('must be a port number (0–65535; 0 picks a free one)');
  return n;
}

/** Resolves at the first SIGINT or SIGTERM, after which both signals get their default handling again. */
function untilStopped(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

function parseSinceOption(value: string): number {
  const seconds = parseSince(value);
  if (seconds === null) throw new InvalidArgumentError('a number with s, m, h or d, up to a year: 10m, 2h');
  return seconds;
}

function parseSlot(value: string): Slot {
  if (!isSlot(value)) throw new InvalidArgumentError('must be "blue" or "green"');
  return value;
}

function parseWindow(value: string): string {
  if (!/^[0-9]{1,4}[hdw]$/.test(value)) throw new InvalidArgumentError('a number with h, d or w, e.g. 30d');
  return value;
}

/** What a command may read of the process besides its arguments: its environment and stdin (deploy env set). */
interface CliScope {
  output?: Output;
  environment?: NodeJS.ProcessEnv;
  readStdin?: () => Promise<string>;
}

/** The whole of a stream as UTF-8 text, refused past `maxBytes`. */
async function readAll(stream: NodeJS.ReadableStream, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    bytes += buffer.length;
    if (bytes > maxBytes) throw new SlipwayError('usage', `stdin holds more than ${maxBytes / 1024} KiB`, { hint: 'split the secrets into several runs' });
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Declares the commands; each action is one call into controller/commands. */
function buildProgram(run: (action: (out: Output, opts: GlobalOptions) => Promise<ExitCode>) => Promise<void>, scope: CliScope = {}): Command {
  const program = new Command('deploy')
    .description('Slipway: blue/green deploys of a Node app to your own server over SSH')
    .version(VERSION)
    .option('-c, --config <file>', `controller config (default: ./${DEFAULT_CONFIG_FILE})`)
    .option('--json', 'machine-readable output: one JSON object per line')
    .option('-e, --env <name>', 'the environment of deploy.config.json to act on (default: its defaultEnv)')
    .exitOverride()
    .showHelpAfterError();

  const scopeOutput = (fields: Record<string, unknown>) => scope.output?.scope?.(fields);
  // Every command acts on one resolved target: the environment named by --env (or the default one).
  const config = (opts: GlobalOptions): Target => {
    const target = loadControllerConfig(path.resolve(opts.config ?? DEFAULT_CONFIG_FILE), opts.env);
    if (target.env !== null) scopeOutput({ env: target.env });
    return target;
  };

  // A fleet (an environment of several hosts), or any config with --hosts: the fleet commands; else null (one host).
  const fleetOf = (opts: GlobalOptions, hosts: string | undefined): { fleet: FleetTarget; limitedTo: string[] | null } | null => {
    const fleet = resolveFleet(loadDeployConfig(path.resolve(opts.config ?? DEFAULT_CONFIG_FILE)), opts.env);
    if (fleet.env !== null) scopeOutput({ env: fleet.env });
    if (hosts !== undefined) {
      const names = parseHostList(hosts);
      return { fleet: selectHosts(fleet, names), limitedTo: names };
    }
    return fleet.hosts.length > 1 ? { fleet, limitedTo: null } : null;
  };
  const hostsHelp = 'only these hosts of the fleet (names from deploy.config.json, comma-separated)';
  const skipHelp = 'a fleet: go on without hosts that cannot be reached before any switch (recorded as drift)';

  program.command('push')
    .description('pack the commit, upload it unless the host has it, start it in the standby slot, health-check it, switch nginx, watch it')
    .option('--slot <slot>', 'slot to deploy into (default: the one not live)', parseSlot)
    .option('--sha <ref>', 'commit to deploy', 'HEAD')
    .option('--allow-dirty', 'deploy uncommitted changes of tracked files, tagged as a dirty release', false)
    // --wait and --no-wait share one property: true waits for another rollout's lock, false
    // returns once traffic has moved (the agent still watches and swaps back on failure).
    .option('--wait', 'if another rollout holds the lock, wait for it instead of failing')
    .option('--no-wait', 'return once traffic has moved; the agent still runs the watch window')
    .option('--wait-timeout <seconds>', 'how long --wait waits for the lock', parseSeconds, 1800)
    .option('--hosts <names>', 'a fleet: only these hosts (comma-separated names); needs --force --reason, since it leaves the fleet on different releases', parseHostList)
    .option('--force', 'with --hosts: push to some hosts of a fleet only', false)
    .option('--reason <text>', 'why --hosts is forced (recorded on every host)')
    .option('--skip-unreachable', 'a fleet: go on without hosts that cannot be reached before any switch (recorded as drift)', false)
    .action((opts: { slot?: Slot; sha: string; allowDirty: boolean; wait?: boolean; waitTimeout: number; hosts?: string[]; force: boolean; reason?: string; skipUnreachable: boolean }) => run((out, global) => {
      const pushOptions = {
        sha: opts.sha, allowDirty: opts.allowDirty, wait: opts.wait === true, waitTimeoutMs: opts.waitTimeout * 1000,
        detach: opts.wait === false, cwd: process.cwd(), ...(opts.slot ? { slot: opts.slot } : {}),
      };
      // An environment of several hosts is a fleet; one host keeps the single-host push (and its flags).
      const fleet = resolveFleet(loadDeployConfig(path.resolve(global.config ?? DEFAULT_CONFIG_FILE)), global.env);
      if (fleet.env !== null) scopeOutput({ env: fleet.env });
      if (fleet.hosts.length === 1 && !opts.hosts) return push(fleet.hosts[0]!, pushOptions, out);
      return fleetPush(fleet, { ...pushOptions, skipUnreachable: opts.skipUnreachable, hosts: opts.hosts ?? null, force: opts.force, reason: opts.reason ?? null }, out);
    }));

  program.command('promote')
    .description('move a release that passed one environment to another, byte for byte: gate, approval, same tarball, rollout')
    .argument('[ref]', 'release id or prefix, commit or tag (default: the source\'s live release)')
    .option('--from <env>', 'the environment it passed (default: --to\'s promotion.from)')
    .option('--to <env>', 'the environment to deploy it to (default: --env, or defaultEnv)')
    .option('--force', 'promote past a gate that refuses (needs --reason; recorded and notified on both sides)', false)
    .option('--reason <text>', 'why it is forced')
    .option('--yes', 'approve for an environment with requireApproval (needed when stdin is not a terminal)', false)
    .option('--no-wait', 'return once traffic has moved; the agent still runs the watch window')
    .option('--skip-unreachable', 'a fleet as --to: go on without hosts that cannot be reached before any switch (recorded as drift)', false)
    .action((ref: string | undefined, opts: { from?: string; to?: string; force: boolean; reason?: string; yes: boolean; wait?: boolean; skipUnreachable: boolean }) => run((out, global) => {
      const file = path.resolve(global.config ?? DEFAULT_CONFIG_FILE);
      const deployConfig = loadDeployConfig(file);
      // Either side may be a fleet (an environment of several hosts).
      const target = resolveFleet(deployConfig, opts.to ?? global.env);
      const fromEnv = opts.from ?? target.hosts[0]!.promotion?.from;
      if (fromEnv === undefined) {
        throw new SlipwayError('usage', `say where to promote from: --from <env> (${target.env ?? 'the target'} declares no promotion.from)`, {
          hint: `e.g. deploy promote --from staging --to ${target.env ?? 'production'}`,
        });
      }
      const source = resolveFleet(deployConfig, fromEnv);
      scopeOutput({ env: target.env });
      return promote(source, target, {
        force: opts.force, yes: opts.yes, cwd: process.cwd(), detach: opts.wait === false, skipUnreachable: opts.skipUnreachable,
        interactive: process.stdin.isTTY === true, confirm: askOnTerminal,
        ...(ref ? { ref } : {}), ...(opts.reason ? { reason: opts.reason } : {}),
      }, out);
    }));

  program.command('switch')
    .description('point nginx at the other, already-running slot (after a fresh health check), then watch it')
    .argument('<slot>', 'blue or green', parseSlot)
    .option('--reason <text>', 'why, recorded in the history')
    .option('--no-wait', 'return once traffic has moved; the agent still runs the watch window')
    .option('--hosts <names>', `${hostsHelp}: drift on purpose, recorded in history`)
    .option('--skip-unreachable', skipHelp, false)
    .action((slot: Slot, opts: { reason?: string; wait?: boolean; hosts?: string; skipUnreachable: boolean }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      if (fleet) return fleetSwitch(fleet.fleet, slot, { limitedTo: fleet.limitedTo, skipUnreachable: opts.skipUnreachable, ...(opts.reason ? { reason: opts.reason } : {}) }, out);
      return switchSlot(config(global), slot, { detach: opts.wait === false, ...(opts.reason ? { reason: opts.reason } : {}) }, out);
    }));

  program.command('rollback')
    .description('go back one release in deploy order (or --to a release): one switch if its slot is warm, else start + health gate + switch; then watch it')
    .option('--to <release>', 'a retained release to go back to: its id or a prefix of 7+ characters (see deploy releases)', parseReleaseRef)
    .option('--force', 'allow a release marked bad (the mark stays unless its watch window passes)', false)
    .option('--reason <text>', 'why, recorded in the history and on the release rolled back from')
    .option('--no-wait', 'return once traffic has moved; the agent still runs the watch window')
    .option('--hosts <names>', `${hostsHelp}: drift on purpose, recorded in history`)
    .option('--skip-unreachable', skipHelp, false)
    .action((opts: { to?: string; force: boolean; reason?: string; wait?: boolean; hosts?: string; skipUnreachable: boolean }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      if (fleet) {
        return fleetRollback(fleet.fleet, {
          force: opts.force, limitedTo: fleet.limitedTo, skipUnreachable: opts.skipUnreachable, ...(opts.to ? { to: opts.to } : {}), ...(opts.reason ? { reason: opts.reason } : {}),
        }, out);
      }
      return rollback(config(global), {
        force: opts.force, detach: opts.wait === false, ...(opts.to ? { to: opts.to } : {}), ...(opts.reason ? { reason: opts.reason } : {}),
      }, out);
    }));

  program.command('reconcile')
    .description('bring every reachable host of a fleet to the fleet\'s release (its last completed rollout); fleet commands do this first')
    .action(() => run((out, global) => fleetReconcile(resolveFleet(loadDeployConfig(path.resolve(global.config ?? DEFAULT_CONFIG_FILE)), global.env), { json: global.json ?? false }, out)));

  program.command('setup')
    .description('make the host a Slipway host over SSH as root or a sudoer: nginx, a dedicated user, Node.js, the agent of this checkout, its config, token, sudoers rule and systemd unit; idempotent')
    .option('--check', 'report how the host differs from what setup makes (drift), change nothing; exit 3 when it differs', false)
    .action((opts: { check: boolean }) => run(async (out, global) => {
      const { setup } = await import('./commands/setup.js');
      return setup(config(global), { check: opts.check, cwd: process.cwd() }, out);
    }));

  program.command('upgrade')
    .description('replace the agent on a host deploy setup made with the one of this checkout; only the agent restarts, the apps keep running; an agent that cannot start is replaced by the previous one again')
    .action(() => run(async (out, global) => {
      const { upgrade } = await import('./commands/upgrade.js');
      return upgrade(config(global), {}, out);
    }));

  program.command('status')
    .description('show slots, the live slot, processes, health and releases (a fleet: one row per host, and the drift)')
    .option('--hosts <names>', hostsHelp)
    .action((opts: { hosts?: string }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      return fleet ? fleetStatus(fleet.fleet, { json: global.json ?? false }, out) : status(config(global), global.json ?? false, out);
    }));

  program.command('history')
    .description('deployments, switches and rollbacks: who, when, steps with durations, outcome and reason')
    .option('-n, --limit <count>', 'how many', parseCount, 20)
    .option('--show <id>', 'one deployment with all its events, build and release-phase output included', parseDeploymentId)
    .option('--hosts <names>', hostsHelp)
    .action((opts: { limit: number; show?: number; hosts?: string }) => run((out, global) => {
      const fleet = opts.show === undefined ? fleetOf(global, opts.hosts) : null;
      if (fleet) return fleetHistory(fleet.fleet, { json: global.json ?? false, limit: opts.limit }, out);
      return history(config(global), { json: global.json ?? false, limit: opts.limit, ...(opts.show === undefined ? {} : { show: opts.show }) }, out);
    }));

  program.command('logs')
    .description('the last lines of each process of the live slot (or --slot, --process), with times, from PM2\'s logs; env file values masked; -f follows (across log rotation and switches)')
    .option('--slot <slot>', 'blue or green (default: the live slot)', parseSlot)
    .option('--process <name>', 'only this process of the spec')
    .option('-n, --lines <count>', 'lines per process (1-1000; with -f, 10 unless given)', parseCount)
    .option('--since <duration>', 'only lines of the last s, m, h or d (e.g. 10m)', parseSinceOption)
    .option('-f, --follow', 'keep printing new lines until Ctrl-C; without --slot it moves to the new live slot on a switch')
    .action((opts: { slot?: Slot; process?: string; lines?: number; since?: number; follow?: boolean }) => run((out, global) => logs(config(global), {
      lines: Math.min(opts.lines ?? (opts.follow ? 10 : 100), 1000), json: global.json ?? false,
      ...(opts.slot ? { slot: opts.slot } : {}), ...(opts.process ? { process: opts.process } : {}),
      ...(opts.since !== undefined ? { sinceSeconds: opts.since } : {}),
      ...(opts.follow ? { follow: { stopped: untilStopped() } } : {}),
    }, out)));

  program.command('metrics')
    .description('DORA figures from the host\'s history: deployment frequency, lead time, change failure rate, time to restore')
    .option('--since <window>', 'how far back: a number with h, d or w (e.g. 30d, 12h, 2w)', parseWindow, '30d')
    .action((opts: { since: string }) => run((out, global) => metrics(config(global), { since: opts.since, json: global.json ?? false }, out)));
  program.command('tls')
    .description('the app\'s HTTPS certificate (ACME or the host\'s files), when it expires, and its runs; --renew runs one now')
    .option('--renew', 'run the certificate check now: obtain or renew when due, reload nginx only if the certificate changed', false)
    .option('--force', 'a run now (implies --renew) asking the CA for a new certificate even if the installed one is fresh', false)
    .action((opts: { renew: boolean; force: boolean }) => run((out, global) => tls(config(global), { renew: opts.renew || opts.force, force: opts.force, json: global.json ?? false }, out)));
  program.command('diff')
    .description('what changed in the app spec (deploy.spec.json: processes, routes, build, checks) between two releases')
    .argument('<from>', 'the older release: its id, a prefix of 7+ characters of it or of its commit, or "live"', parseReleaseRefOrLive)
    .argument('[to]', 'the newer release (default: the live one)', parseReleaseRefOrLive, LIVE_REF)
    .action((from: string, to: string) => run((out, global) => diff(config(global), { from, to }, { json: global.json ?? false }, out)));

  program.command('ui')
    .description('a local web page of the app: slots, processes, health, history, releases, backups, DORA figures; switch and roll back with a reason. Served on 127.0.0.1 until Ctrl-C')
    .option('--port <port>', 'local port to serve the page on (default: a free one)', parsePort, 0)
    .option('--open', 'open the page in the desktop\'s browser', false)
    // Loaded only for this command: fastify costs every other command's start ≈ 0.25 s of CPU.
    .action((opts: { port: number; open: boolean }) => run(async (out, global) => {
      const { ui } = await import('./commands/ui.js');
      const target = config(global);
      return ui(target, { port: opts.port, open: opts.open, json: global.json ?? false, env: target.env, stopped: untilStopped() }, out);
    }));

  const releasesCommand = program.command('releases')
    .description('releases retained on the host, with state (live, standby, good, bad, failed) and age (a fleet: per host)')
    .option('--hosts <names>', hostsHelp)
    .action((opts: { hosts?: string }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      return fleet ? fleetReleases(fleet.fleet, { json: global.json ?? false }, out) : releases(config(global), { json: global.json ?? false }, out);
    }));
  releasesCommand.command('cleanup')
    .description('delete releases beyond the retention count (never live, standby, in use or the last good one)')
    .action(() => run((out, global) => cleanupReleases(config(global), { json: global.json ?? false }, out)));

  const lock = program.command('lock').description('the per-app deploy lock');
  lock.command('status').description('who holds the lock, since when, for what (a fleet: each host\'s)')
    .option('--hosts <names>', hostsHelp)
    .action((opts: { hosts?: string }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      return fleet ? fleetLockStatus(fleet.fleet, { json: global.json ?? false }, out) : lockStatus(config(global), { json: global.json ?? false }, out);
    }));
  lock.command('release').description('release a stale lock or your own unused reservation (a fleet: on each host)')
    .option('--force', 'release it even if someone else or a running rollout holds it', false)
    .option('--hosts <names>', hostsHelp)
    .action((opts: { force: boolean; hosts?: string }) => run((out, global) => {
      const fleet = fleetOf(global, opts.hosts);
      return fleet ? fleetLockRelease(fleet.fleet, { json: global.json ?? false, force: opts.force }, out)
        : lockRelease(config(global), { json: global.json ?? false, force: opts.force }, out);
    }));

  const envCommand = program.command('env')
    .description('the app\'s secrets in its env file on each host: list the keys (never values), set them from this process\'s environment or stdin, unset them');
  const envFleet = (opts: GlobalOptions): FleetTarget => {
    const fleet = resolveFleet(loadDeployConfig(path.resolve(opts.config ?? DEFAULT_CONFIG_FILE)), opts.env);
    if (fleet.env !== null) scopeOutput({ env: fleet.env });
    return fleet;
  };
  const envSkipHelp = 'an environment of several hosts: write on the hosts reached, leaving out (and naming) those that cannot be reached';
  envCommand.command('list', { isDefault: true })
    .description('each host\'s env file: its keys in file order (no values), when it was written, and the keys the live release requires that it lacks')
    .action(() => run((out, global) => envList(envFleet(global), { json: global.json ?? false }, out)));
  envCommand.command('set')
    .description('set keys on every host; each value comes from the variable of the same name in deploy\'s environment (never the command line), or from KEY=VALUE lines on stdin; takes effect when a slot starts (deploy push)')
    .argument('[keys...]', 'names of variables of this process\'s environment (e.g. DATABASE_URL; not DATABASE_URL=value)')
    .option('--stdin', 'also read KEY=VALUE lines (dotenv) from stdin', false)
    .option('--allow-empty', 'set a key whose variable is empty (by default an empty variable is refused: an undefined CI secret is empty)', false)
    .option('--skip-unreachable', envSkipHelp, false)
    .action((keys: string[], opts: { stdin: boolean; allowEmpty: boolean; skipUnreachable: boolean }) => run(async (out, global) => {
      const fromEnvironment = valuesFromEnvironment(keys, scope.environment ?? process.env, { allowEmpty: opts.allowEmpty });
      const fromStdin = opts.stdin ? valuesFromDotenv(await (scope.readStdin ?? (() => readAll(process.stdin, 2 * 1024 * 1024)))()) : {};
      const twice = Object.keys(fromStdin).filter((key) => Object.hasOwn(fromEnvironment, key));
      if (twice.length) throw new SlipwayError('usage', `named both as an argument and on stdin: ${twice.join(', ')}`, { hint: 'give each key one source' });
      const patch = envPatch({ ...fromEnvironment, ...fromStdin }, []);
      return envApply(envFleet(global), patch, { json: global.json ?? false, skipUnreachable: opts.skipUnreachable }, out);
    }));
  envCommand.command('unset')
    .description('remove keys from the env file on every host; takes effect when a slot starts (deploy push)')
    .argument('<keys...>', 'the keys to remove')
    .option('--skip-unreachable', envSkipHelp, false)
    .action((keys: string[], opts: { skipUnreachable: boolean }) => run((out, global) => {
      const patch = envPatch({}, keys);
      return envApply(envFleet(global), patch, { json: global.json ?? false, skipUnreachable: opts.skipUnreachable }, out);
    }));

  const backup = program.command('backup').description('database backups on the host: scheduled, verified, GFS-retained');
  backup.command('run').description('run a backup job now and wait for its verification')
    .argument('<job>', 'backup job name (backups.jobs in the agent config)')
    .action((job: string) => run((out, global) => backupRun(config(global), job, { json: global.json ?? false }, out)));
  backup.command('list').description('jobs, last success, age of the last verified backup, sizes, recent runs')
    .option('--job <job>', 'only this job')
    .action((opts: { job?: string }) => run((out, global) => backupList(config(global), { ...opts, json: global.json ?? false }, out)));
  backup.command('restore').description('restore a backup over its job\'s database (or --to another one)')
    .argument('<id>', 'backup id, from deploy backup list')
    .option('--to <uri>', 'restore into this database instead (mongodb:// or postgres:// URI)')
    .option('--yes', 'confirm: the target\'s data is replaced', false)
    .option('--force', 'restore even a backup that is not verified', false)
    .action((id: string, opts: { to?: string; yes: boolean; force: boolean }) => run((out, global) =>
      backupRestore(config(global), id, { ...opts, json: global.json ?? false }, out)));

  return program;
}

export interface CliIo { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; stdin?: NodeJS.ReadableStream }

function debugWanted(env: NodeJS.ProcessEnv): boolean {
  return env[DEBUG_ENV] !== undefined && env[DEBUG_ENV] !== '' && env[DEBUG_ENV] !== '0';
}

/**
 * For what escapes main() (a bug, or an unhandled rejection somewhere in a library): one line,
 * the stack only on request, and the exit code of an internal error.
 */
export function reportCrash(error: unknown, stderr: NodeJS.WritableStream, env: NodeJS.ProcessEnv): ExitCode {
  stderr.write(`${internalErrorLine(error)}\n`);
  if (debugWanted(env) && error instanceof Error && error.stack) stderr.write(`${error.stack}\n`);
  return EXIT.internal;
}

// The controller's single error boundary: commands throw, this prints and picks the exit code.
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }, env: NodeJS.ProcessEnv = process.env): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  let out: Output = new HumanOutput({ ...io, isTTY: Boolean((io.stderr as NodeJS.WriteStream).isTTY) });
  const scope: CliScope = { environment: env, readStdin: () => readAll(io.stdin ?? process.stdin, 2 * 1024 * 1024) };
  const program = buildProgram(async (action) => {
    const global = program.opts<GlobalOptions>();
    if (global.json) out = new JsonOutput({ ...io, isTTY: false });
    scope.output = out;
    try {
      exitCode = await action(out, global);
    } catch (error) {
      out.error(error instanceof Error ? error : new Error(String(error)));
      exitCode = exitCodeFor(error);
      if (!(error instanceof SlipwayError) && debugWanted(env) && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    }
  }, scope);
  program.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    throw error;
  }
  return exitCode;
}
