import { LIVE_LINK } from './slot-switch.js';

/**
 * Pure: turns what nginx printed or logged into Slipway's error texts. nginx's own words are the
 * reason shown to the user; these functions pick them out, say which file they concern, and say
 * what to do next.
 */

const SERIOUS = /\[(emerg|alert|crit)\]/;
/** "2024/05/01 10:00:00 [emerg] 1234#1234: " and, for a connection, "*5 ": noise in a message. */
const LOG_PREFIX = /^[0-9]{4}\/[0-9]{2}\/[0-9]{2} [0-9:]{8} (\[[a-z]+\]) [0-9]+#[0-9]+: (\*[0-9]+ )?/;
const BIND_FAILURE = /bind\(\) to (\S+) failed \(([0-9]+): ([^)]*)\)/;
const MAX_REASONS = 5;

function lines(text: string): string[] {
  return text.split('\n').map((line) => line.trim()).filter(Boolean);
}

/** nginx's own diagnosis: the [emerg]/[alert]/[crit] lines of `nginx -t` (its stderr tail otherwise). */
export function nginxDiagnosis(stderr: string): string {
  const all = lines(stderr);
  const serious = all.filter((line) => SERIOUS.test(line));
  return (serious.length > 0 ? serious : all.slice(-5)).join('\n') || '(nginx printed nothing)';
}

/**
 * The serious lines of an error-log excerpt as a person reads them: without timestamp and pid,
 * each once, in order (a failing bind is retried and logged five times), the last few.
 */
export function logReasons(excerpt: string[]): string[] {
  const reasons = excerpt.filter((line) => SERIOUS.test(line)).map((line) => line.replace(LOG_PREFIX, '$1 '));
  return [...new Set(reasons)].slice(-MAX_REASONS);
}

/** The lines of an error-log excerpt worth quoting in details: the serious ones, else the last few. */
export function logDetails(excerpt: string[]): string[] {
  const serious = excerpt.filter((line) => SERIOUS.test(line));
  return serious.length > 0 ? serious.slice(-MAX_REASONS) : excerpt.slice(-8);
}

/** The address of the first failed bind() nginx reports, with its errno, or null. */
export function failedBind(text: string): { address: string; errno: number; port: string | null } | null {
  const match = BIND_FAILURE.exec(text);
  if (!match) return null;
  const address = match[1]!;
  return { address, errno: Number(match[2]), port: /:([0-9]+)$/.exec(address)?.[1] ?? null };
}

/**
 * The file an `nginx -t` failure concerns. nginx names a file (" in <path>:<line>") for errors it
 * finds while parsing; for others, such as a listen address it cannot bind, it names none: those
 * come from the include being applied, the one file that changed since nginx last accepted its
 * config. Another file is blamed only when nginx names it.
 */
export function blamedFile(diagnosis: string, include: string): { file: string; ours: boolean } {
  if (diagnosis.includes(include)) return { file: include, ours: true };
  const named = / in (\/.*?):[0-9]+(\s|$)/m.exec(diagnosis)?.[1];
  return named === undefined ? { file: include, ours: true } : { file: named, ours: false };
}

/** The hint of an `nginx -t` failure, pointing at the file to fix. */
export function testFailureHint(app: string, diagnosis: string, include: string): string {
  const unchanged = `nothing was reloaded and ${include} is unchanged`;
  const { file, ours } = blamedFile(diagnosis, include);
  if (!ours) return `the error is in ${file}, a file Slipway did not write; fix it first. ${capitalised(unchanged)}`;
  const bind = failedBind(diagnosis);
  if (bind) {
    return `nginx cannot listen on ${bind.address}, the address Slipway's include ${include} listens on: apps.${app}.listen.host (apps.${app}.public.listenHost in a legacy config) must be an address of this machine (and a port below 1024 needs a root master); ${unchanged}`;
  }
  return `the rendered config ${include} was rejected; ${unchanged}. Fix the app's nginx values or template`;
}

/** What the error log said after a reload nginx did not apply. */
export type ErrorLogExcerpt =
  | { path: string; lines: string[] }
  | { path: string; unreadable: string };

export interface NotAppliedInput {
  app: string;
  proveTimeoutMs: number;
  log: ErrorLogExcerpt;
  /** What the proof saw last, and what it expected. */
  expected: string;
  observed: string;
  /** The outcome of reloading the restored config: null when it worked, else nginx's complaint. */
  reloadAgainFailure: string | null;
}

/**
 * The error of a reload nginx did not apply. Its message carries nginx's reason from the error
 * log when there is one (a failed rollout shows the message and hint, not the details), and the
 * hint says what to fix: the port holder for a taken port, the log setting when the log is silent.
 */
export function notAppliedError(input: NotAppliedInput): { message: string; hint: string; details: string[] } {
  const { app, log } = input;
  const excerpt = 'lines' in log ? log.lines : [];
  const reasons = logReasons(excerpt);
  const restored = input.reloadAgainFailure === null
    ? 'the previous config was restored and nginx reloaded again'
    : `reloading the restored config failed too: ${input.reloadAgainFailure}`;
  const details = [
    input.expected,
    `last observed: ${input.observed}`,
    ...('unreadable' in log
      ? [`could not read ${log.path}: ${log.unreadable}`]
      : excerpt.length > 0 ? [`${log.path}:`, ...logDetails(excerpt)] : [`${log.path}: nothing logged since the reload`]),
    restored,
  ];
  const untouched = 'Slipway\'s include was put back and traffic did not move';
  if (reasons.length > 0) {
    const bind = failedBind(reasons.join('\n'));
    const inUse = bind !== null && bind.errno === 98 && bind.port !== null;
    return {
      message: `nginx did not apply the new config for app ${app}; ${log.path} says: ${reasons.join('; ')}`,
      hint: inUse
        ? `another program holds ${bind.address} (find it with: ss -ltnp 'sport = :${bind.port}'); stop it, or move the app's route to a free port (its listenPort in deploy.spec.json, one of apps.${app}.listen.ports; apps.${app}.public.listenPort in a legacy config). nginx kept its old config; ${untouched}`
        : `nginx kept its old config; fix what it logged, then push again. ${capitalised(untouched)}`,
      details,
    };
  }
  if ('unreadable' in log) {
    return {
      message: `nginx did not serve the new config for app ${app} within ${input.proveTimeoutMs} ms after reload (last observed: ${input.observed}); its error log ${log.path} could not be read (${log.unreadable})`,
      hint: `nginx says why it rejects a reload only in its error log: set nginx.errorLogPath in the agent config to the error_log of nginx.conf, readable by the agent, to see the reason here. ${capitalised(untouched)}`,
      details,
    };
  }
  return {
    message: `nginx did not serve the new config for app ${app} within ${input.proveTimeoutMs} ms after reload (last observed: ${input.observed}); it logged nothing serious in ${log.path} since the reload`,
    hint: `if nginx.conf's error_log is not ${log.path}, set nginx.errorLogPath in the agent config to it; otherwise check that the app's public address reaches this nginx. ${capitalised(untouched)}`,
    details,
  };
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The error of a flag flip nginx did not show, with why it most likely did not. */
export function switchNotAppliedError(input: {
  app: string; slot: string; dir: string; before: string | null; proveTimeoutMs: number; expected: string; observed: string;
}): { message: string; hint: string; details: string[] } {
  const { app, slot, dir } = input;
  // "default" is what the include serves while nginx's workers cannot see any flag.
  const unseen = /x-slipway-switch: default/.test(input.observed);
  return {
    message: `nginx did not serve slot ${slot} of app ${app} within ${input.proveTimeoutMs} ms after its switch flag moved`,
    details: [
      input.expected,
      `last observed: ${input.observed}`,
      input.before === null ? 'the flag was removed again' : `the flag points at ${input.before} again`,
    ],
    hint: unseen
      ? `nginx's workers cannot see ${dir}/${LIVE_LINK}/${slot}: every directory on that path must be searchable (o+x) by nginx's worker user`
      : `the app's include must route by the switch flags (see nginx/app.conf.njk) and nginx must be running; ${app}'s traffic did not move`,
  };
}
