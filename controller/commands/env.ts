// `deploy env`: the app's secrets in its env file on each host of the environment. Values come
// from this process's environment (`deploy env set KEY`) or from stdin (`--stdin`), never from
// the command line; nothing here prints, logs or puts a value in an error.
import {
  ENV_MAX_BODY_BYTES, ENV_MAX_KEYS, ENV_MAX_VALUE_CHARS, isEnvKey, parseEnvFile, renderEnvValue,
  type AppEnvChange, type AppEnvPatch, type AppEnvView,
} from '../../contract/env-file.js';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { settleBounded } from '../../lib/bounded.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openFleet, unreachableError, type FleetMember, type FleetMiss, type FleetSession } from '../fleet/session.js';
import { hostName, type FleetTarget } from '../fleet/target.js';

/** When a new value reaches the app's processes: what the agent does (agent/rollout/slot-process.ts appEnv). */
export const TAKES_EFFECT = 'takes effect when a slot starts: the running processes keep their environment until the next `deploy push`'
  + ' (or a rollback to a release whose slot is not running); `deploy switch`, a rollback to a warm slot and PM2\'s restart of a crashed'
  + ' process keep the environment the process started with';

const KEY_HINT = 'a key is letters, digits and _, not starting with a digit (e.g. DATABASE_URL)';

function badKeys(keys: readonly string[]): SlipwayError | null {
  const bad = keys.filter((key) => !isEnvKey(key));
  if (bad.length === 0) return null;
  // Never what follows an `=`: that may be a value typed by mistake.
  const shown = bad.map((key) => JSON.stringify(key.includes('=') ? `${key.slice(0, key.indexOf('='))}=…` : key.slice(0, 64)));
  return new SlipwayError('usage', `not a key an env file can hold: ${shown.join(', ')}`, { hint: KEY_HINT });
}

/**
 * Pure: the values of `deploy env set KEY...`, each from the variable of that name in `environment`.
 * `KEY=VALUE` is refused (the value would be in the shell's history and in `ps`), naming KEY only;
 * a key missing from the environment (or empty there, unless `allowEmpty`) is refused. Nothing
 * is written when anything is refused.
 */
export function valuesFromEnvironment(keys: readonly string[], environment: NodeJS.ProcessEnv, options: { allowEmpty: boolean }): Record<string, string> {
  const onArgv = keys.filter((key) => key.includes('='));
  if (onArgv.length > 0) {
    const names = onArgv.map((arg) => arg.slice(0, arg.indexOf('=')));
    throw new SlipwayError('env_value_on_argv', `a value on the command line is refused (${names.map((n) => `${n}=…`).join(', ')}): it would stay in the shell's history and show in ps`, {
      hint: `put it in this process's environment and name the key only (${names[0] ?? 'KEY'}="$SECRET" deploy env set ${names.join(' ')}), or pipe KEY=VALUE lines to: deploy env set --stdin. Nothing was written`,
    });
  }
  const invalid = badKeys(keys);
  if (invalid) throw invalid;
  const missing = keys.filter((key) => environment[key] === undefined || (!options.allowEmpty && environment[key] === ''));
  if (missing.length > 0) {
    throw new SlipwayError('env_value_missing', `no value for ${missing.join(', ')}: each key's value is read from the variable of that name in deploy's environment, and ${missing.length === 1 ? 'it is' : 'they are'} unset or empty`, {
      hint: `export ${missing[0]!}=… first (in GitHub Actions: env: ${missing[0]!}: \${{ secrets.${missing[0]!} }}; an undefined secret is empty); --allow-empty sets an empty value on purpose. Nothing was written`,
    });
  }
  return Object.fromEntries(keys.map((key) => [key, environment[key]!]));
}

/** Pure: the values of `deploy env set --stdin`: dotenv lines, read by the agent's own parser. Errors name line numbers only. */
export function valuesFromDotenv(text: string): Record<string, string> {
  const parsed = parseEnvFile(text);
  if (!parsed.ok) {
    throw new SlipwayError('env_value_invalid', 'stdin is not KEY=VALUE lines', {
      details: parsed.errors, hint: 'one KEY=VALUE per line (comments start with #; quote a value with spaces). Nothing was written',
    });
  }
  if (Object.keys(parsed.env).length === 0) {
    throw new SlipwayError('usage', 'stdin held no KEY=VALUE lines', { hint: 'pipe the lines in: deploy env set --stdin < secrets.env' });
  }
  return parsed.env;
}

/**
 * Pure: the change sent to every host, checked here so that no host gets a change another refuses:
 * keys, sizes, and that every value can be written so it reads back the same.
 */
export function envPatch(set: Record<string, string>, unset: readonly string[]): Required<AppEnvPatch> {
  const invalid = badKeys([...Object.keys(set), ...unset]);
  if (invalid) throw invalid;
  const count = Object.keys(set).length + unset.length;
  if (count === 0) throw new SlipwayError('usage', 'name at least one key', { hint: 'deploy env set KEY [KEY...] (values from the environment), or deploy env unset KEY' });
  if (count > ENV_MAX_KEYS) throw new SlipwayError('usage', `${count} keys in one change: at most ${ENV_MAX_KEYS}`, { hint: 'split the change into several runs' });
  const long = Object.keys(set).filter((key) => set[key]!.length > ENV_MAX_VALUE_CHARS);
  if (long.length > 0) {
    throw new SlipwayError('env_value_invalid', `the value of ${long.join(', ')} is longer than ${ENV_MAX_VALUE_CHARS} characters`, { hint: 'keep large data in a file the app reads, not in its environment' });
  }
  for (const [key, value] of Object.entries(set)) renderEnvValue(key, value);
  const body = { set, unset: [...unset] };
  if (Buffer.byteLength(JSON.stringify(body)) > ENV_MAX_BODY_BYTES - 1024) {
    throw new SlipwayError('env_value_invalid', `the values total more than ${ENV_MAX_BODY_BYTES / 1024} KiB`, { hint: 'split the change into several runs' });
  }
  return body;
}

/** One host's outcome of a change: what it did, or why it failed. */
export type HostEnvOutcome = { host: string; change: AppEnvChange; error: null } | { host: string; change: null; error: Error };

/** What a change did across the environment's hosts. */
export interface EnvApplyReport {
  /** Hosts that have the change (or had it already). */
  written: string[];
  /** Hosts whose write failed, with why. */
  failed: { host: string; error: string }[];
  /** Hosts left out because they could not be reached (--skip-unreachable). */
  skipped: string[];
}

/**
 * Pure: whether a change may start. Every host must be reachable (a change some hosts lack is a
 * split-brain of secrets), unless `skipUnreachable` leaves the unreachable ones out, by name.
 */
export function planEnvApply(hosts: readonly string[], unreachable: readonly string[], skipUnreachable: boolean): { apply: string[]; skipped: string[] } {
  const apply = hosts.filter((host) => !unreachable.includes(host));
  const refused = unreachable.length > 0 && !skipUnreachable;
  return { apply: refused ? [] : apply, skipped: [...unreachable] };
}

/** Pure: the report of the writes, and the error when some host lacks the change. */
export function envApplyReport(outcomes: readonly HostEnvOutcome[], skipped: readonly string[]): { report: EnvApplyReport; error: SlipwayError | null } {
  const report: EnvApplyReport = {
    written: outcomes.filter((o) => o.error === null).map((o) => o.host),
    failed: outcomes.flatMap((o) => (o.error === null ? [] : [{ host: o.host, error: errorMessage(o.error) }])),
    skipped: [...skipped],
  };
  if (report.failed.length === 0) return { report, error: null };
  const only = outcomes.length === 1 ? outcomes[0]!.error : null;
  if (only instanceof SlipwayError) return { report, error: only };
  return {
    report,
    error: new SlipwayError('env_write_partial', `the change was written on ${report.written.length ? report.written.join(', ') : 'no host'} and failed on ${report.failed.map((f) => f.host).join(', ')}`, {
      details: report.failed.map((f) => `${f.host}: ${f.error}`),
      hint: 'fix what failed and run the same command again: it is idempotent (hosts that have the change answer "unchanged")',
    }),
  };
}

/** Pure: one host's change as a line of key names. */
export function formatEnvChange(host: string | null, change: AppEnvChange): string {
  const parts = (['added', 'changed', 'removed', 'unchanged'] as const).filter((k) => change[k].length > 0).map((k) => `${k} ${change[k].join(', ')}`);
  return `${host ? `${host}: ` : ''}${parts.join('; ') || 'nothing to do'}`;
}

/** Pure: one host's env file as `deploy env` lists it. */
export function formatEnvView(host: string | null, view: AppEnvView): string {
  const lines = [`${host ? `${host}: ` : ''}${view.file} (mode ${view.mode}, ${view.updatedAt ? `updated ${view.updatedAt}` : 'no file yet'})`];
  lines.push(view.keys.length ? `  ${view.keys.join('\n  ')}` : '  (no keys)');
  if (view.missing && view.missing.length > 0) lines.push(`  MISSING (the live release requires them): ${view.missing.join(', ')}`);
  return lines.join('\n');
}

/** Opens every host of the environment; none reached is `noneReached`, or, for one host alone, its own error. */
async function withHosts<T>(fleet: FleetTarget, noneReached: (misses: readonly FleetMiss[]) => Error, fn: (session: FleetSession) => Promise<T>): Promise<T> {
  const session = await openFleet(fleet);
  try {
    if (session.members.length === 0) throw fleet.hosts.length === 1 ? session.unreachable[0]!.error : noneReached(session.unreachable);
    return await fn(session);
  } finally {
    await session.close();
  }
}

/** Pure: the refusal when some host cannot be reached: nothing was written anywhere. */
export function notAllReached(misses: readonly FleetMiss[]): SlipwayError {
  return unreachableError(misses, 'env',
    'nothing was written on any host; bring the host back, or pass --skip-unreachable to write on the others (the host left out keeps its old values until you run the command again)');
}

const envPath = (fleet: FleetTarget) => `/apps/${encodeURIComponent(fleet.app)}/env`;

/** An agent from before `deploy env` answers its route with not_found: say so, and how to fix it. */
function olderAgent(host: string) {
  return (error: unknown): never => {
    if (error instanceof SlipwayError && error.code === 'not_found') {
      throw new SlipwayError('agent_incompatible', `the agent on ${host} does not know deploy env (it is older than this controller)`, {
        hint: 'upgrade the agent there (deploy upgrade), then run the command again',
      });
    }
    throw error;
  };
}

const label = (fleet: FleetTarget, name: string) => (fleet.hosts.length > 1 ? name : null);

/** `deploy env` / `deploy env list`: each host's keys (no values), when written, and what the live release lacks. */
export async function envList(fleet: FleetTarget, options: { json: boolean }, out: Output): Promise<ExitCode> {
  const noneReached = (misses: readonly FleetMiss[]) => unreachableError(misses, 'env', 'check the hosts\' addresses and SSH access (deploy status), then run the command again');
  return withHosts(fleet, noneReached, async (session) => {
    const settled = await settleBounded(session.members, fleet.rollout.concurrency, (m: FleetMember) => m.session.agent.get<AppEnvView>(envPath(fleet)).catch(olderAgent(m.name)));
    const hosts = session.members.map((m, i) => {
      const r = settled[i]!;
      return r.status === 'fulfilled' ? { host: m.name, env: r.value, error: null } : { host: m.name, env: null, error: errorMessage(r.reason) };
    });
    const unreachable = session.unreachable.map((u) => ({ host: u.name, error: errorMessage(u.error) }));
    const single = settled[0]!;
    if (fleet.hosts.length === 1 && single.status === 'rejected') throw single.reason;
    if (options.json) {
      out.data({ app: fleet.app, hosts, unreachable });
    } else {
      out.data([
        ...hosts.map((h) => (h.env ? formatEnvView(label(fleet, h.host), h.env) : `${h.host}: ${h.error}`)),
        ...unreachable.map((u) => `${u.host}: unreachable (${u.error})`),
      ].join('\n'));
    }
    return hosts.some((h) => h.error) ? EXIT.failedBeforeSwitch : unreachable.length ? EXIT.unreachable : EXIT.ok;
  });
}

/**
 * `deploy env set` / `deploy env unset`: the same change on every host of the environment. All
 * hosts must be reached first (else nothing is written anywhere), unless --skip-unreachable.
 */
export async function envApply(fleet: FleetTarget, patch: Required<AppEnvPatch>, options: { json: boolean; skipUnreachable: boolean }, out: Output): Promise<ExitCode> {
  return withHosts(fleet, notAllReached, async (session) => {
    const plan = planEnvApply(fleet.hosts.map(hostName), session.unreachable.map((u) => u.name), options.skipUnreachable);
    if (plan.apply.length === 0) throw notAllReached(session.unreachable);
    const members = plan.apply.map((name) => session.member(name)!);
    const settled = await settleBounded(members, fleet.rollout.concurrency, (m) => m.session.agent.json<AppEnvChange>('PATCH', envPath(fleet), patch).catch(olderAgent(m.name)));
    const outcomes: HostEnvOutcome[] = members.map((m, i) => {
      const r = settled[i]!;
      return r.status === 'fulfilled' ? { host: m.name, change: r.value, error: null } : { host: m.name, change: null, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) };
    });
    const { report, error } = envApplyReport(outcomes, plan.skipped);
    const many = fleet.hosts.length > 1;
    if (options.json) {
      out.data({ app: fleet.app, hosts: outcomes.map((o) => ({ host: o.host, ...(o.change ?? {}), error: o.error ? errorMessage(o.error) : null })), ...report, takesEffect: TAKES_EFFECT });
    } else {
      for (const o of outcomes) if (o.change) out.data(formatEnvChange(many ? o.host : null, o.change));
      if (report.skipped.length) out.info(`not written on ${report.skipped.join(', ')} (unreachable, left out by --skip-unreachable): run the same command again once ${report.skipped.length === 1 ? 'it is' : 'they are'} back`);
      if (report.written.length && outcomes.some((o) => o.change && (o.change.added.length || o.change.changed.length || o.change.removed.length))) out.info(TAKES_EFFECT);
    }
    if (error) throw error;
    return EXIT.ok;
  });
}
