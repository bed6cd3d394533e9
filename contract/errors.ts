/**
 * Every failure Slipway reports on purpose is a SlipwayError: a stable code for scripts,
 * a message saying what went wrong (with app, slot, sha, step where known), and a hint saying
 * what to do next. Anything else reaching an error boundary is a bug and is reported as such.
 */
export interface ErrorBody {
  /** An ErrorCode when the agent and the controller are of one version; any string on the wire. */
  error: string;
  message: string;
  hint?: string;
  details?: string[];
}

/**
 * What a failure means for whoever ran the command, and so for `deploy`'s exit code:
 * - usage: the input is wrong (flags, deploy.config.json and the files it names, the repository, the agent
 *   config at agent start): fix it and run again.
 * - refused: failed or refused before traffic moved: the live slot is untouched.
 * - unreachable: SSH or the agent could not be reached, or the link dropped or stalled while no
 *   rollout ran: nothing was switched.
 * - in_doubt: the link was lost while a rollout ran on the host; it goes on there (it finishes or
 *   swaps back on its own), and this side cannot know how it ends.
 * - rolled_back: traffic moved, a check failed, and traffic went back to the previous slot.
 * - failed_after_switch: traffic moved, the new release failed, and traffic could not go back.
 * - internal: a bug in Slipway.
 */
export type ErrorKind = 'usage' | 'refused' | 'unreachable' | 'in_doubt' | 'rolled_back' | 'failed_after_switch' | 'internal';

/**
 * The one list of error codes, each with its kind: one line per code. SlipwayError only takes a
 * code listed here, so a new code does not compile until it is classified.
 */
export const ERROR_KINDS = {
  // Input and configuration: the controller's flags, deploy.config.json, local files, the repository.
  usage: 'usage',
  config_missing: 'usage',
  config_invalid: 'usage',
  not_a_git_repo: 'usage',
  git_ref_unknown: 'usage',
  git_failed: 'usage',
  dirty_tree: 'usage',
  include_invalid: 'usage',
  manifest_conflict: 'usage',
  spec_invalid: 'usage',
  env_required: 'usage',
  ssh_no_credentials: 'usage',
  ssh_key_unreadable: 'usage',
  ssh_key_unusable: 'usage',
  known_hosts_unreadable: 'usage',
  // Arguments the agent refuses: a slot, backup or restore target named on the command line.
  invalid_request: 'usage',
  slot_is_live: 'usage',
  backup_job_not_found: 'usage',
  backup_not_found: 'usage',
  backup_source_invalid: 'usage',
  restore_target_invalid: 'usage',
  restore_target_unsupported: 'usage',
  // The local web page of `deploy ui` (controller/ui): its port, and requests it refuses.
  ui_port_in_use: 'usage',
  ui_session_required: 'usage',
  csrf_token_invalid: 'usage',
  ui_app_not_targeted: 'usage',
  // The agent's own config and files, found bad when it starts.
  token_file_insecure: 'usage',
  token_file_invalid: 'usage',
  cron_invalid: 'usage',
  cron_never: 'usage',
  pm2_home_invalid: 'usage',
  pm2_home_conflict: 'usage',

  // Transport: SSH and the way to the agent. Nothing reached the agent, or nothing was switched.
  host_unknown: 'unreachable',
  host_key_mismatch: 'unreachable',
  host_key_unreadable: 'unreachable',
  ssh_key_malformed: 'unreachable',
  ssh_auth_failed: 'unreachable',
  ssh_connect_failed: 'unreachable',
  ssh_connection_lost: 'unreachable',
  ssh_channel_failed: 'unreachable',
  ssh_forward_failed: 'unreachable',
  remote_command_failed: 'unreachable',
  remote_command_timeout: 'unreachable',
  remote_no_exit_status: 'unreachable',
  remote_output_too_large: 'unreachable',
  agent_unreachable: 'unreachable',
  agent_bad_response: 'unreachable',
  // The controller and the agent speak different API versions: nothing was asked of the agent.
  agent_incompatible: 'refused',
  agent_stopping: 'unreachable',
  unauthorized: 'unreachable',
  upload_stalled: 'unreachable',

  // The link lost while a rollout runs on the host.
  agent_stream_cut: 'in_doubt',
  rollout_link_lost: 'in_doubt',

  // Traffic moved and a check failed afterwards.
  watch_failed: 'rolled_back',
  watch_failed_no_previous: 'failed_after_switch',
  watch_failed_previous_unhealthy: 'failed_after_switch',
  swap_back_failed: 'failed_after_switch',

  // Refusals and failures before traffic moved.
  release_ref_ambiguous: 'usage',
  agent_error: 'refused',
  app_not_found: 'refused',
  app_locked: 'refused',
  lock_in_use: 'refused',
  lock_not_yours: 'refused',
  slot_already_live: 'refused',
  slot_not_running: 'refused',
  no_previous_release: 'refused',
  release_already_live: 'refused',
  release_bad: 'refused',
  release_not_found: 'refused',
  deployment_not_found: 'refused',
  command_not_started: 'refused',
  disk_full: 'refused',
  disk_space_low: 'refused',
  env_file_insecure: 'refused',
  env_file_invalid: 'refused',
  env_missing_keys: 'refused',
  start_script_invalid: 'refused',
  start_script_missing: 'refused',
  port_in_use: 'refused',
  health_check_failed: 'refused',
  // App specs (agent/spec): a release's spec the agent cannot run, or the host does not allow.
  release_spec_invalid: 'refused',
  spec_missing: 'refused',
  spec_refused: 'refused',
  spec_overrides_invalid: 'refused',
  ports_exhausted: 'refused',
  command_not_found: 'refused',
  backups_unavailable: 'refused',
  backup_before_deploy_failed: 'refused',
  // Real apps: host builds, native addon platforms, release phase (agent/build, agent/rollout/release-phase.ts).
  build_failed: 'refused',
  build_not_allowed: 'refused',
  build_memory_low: 'refused',
  platform_mismatch: 'refused',
  release_phase_failed: 'refused',
  // Releases: upload, unpack, store.
  release_digest_mismatch: 'refused',
  upload_missing: 'refused',
  upload_in_progress: 'refused',
  upload_size_mismatch: 'refused',
  upload_incomplete: 'refused',
  upload_failed: 'refused',
  invalid_sha256: 'refused',
  invalid_length: 'refused',
  invalid_app_name: 'refused',
  invalid_release_id: 'refused',
  checksum_mismatch: 'refused',
  release_too_large: 'refused',
  release_limit_exceeded: 'refused',
  release_exists: 'refused',
  release_corrupt: 'refused',
  release_sync_failed: 'refused',
  bad_tarball: 'refused',
  bad_manifest: 'refused',
  manifest_mismatch: 'refused',
  extract_failed: 'refused',
  extract_target_exists: 'refused',
  ingest_failed: 'refused',
  // nginx.
  invalid_nginx_value: 'refused',
  nginx_template_error: 'refused',
  nginx_config_invalid: 'refused',
  nginx_not_running: 'refused',
  nginx_write_failed: 'refused',
  nginx_reload_failed: 'refused',
  nginx_reload_not_applied: 'refused',
  nginx_switch_failed: 'refused',
  nginx_switch_not_applied: 'refused',
  nginx_command_timeout: 'refused',
  // PM2.
  pm2_daemon_down: 'refused',
  pm2_invalid_start: 'refused',
  pm2_invalid_name: 'refused',
  pm2_name_in_use: 'refused',
  pm2_start_failed: 'refused',
  pm2_cwd_mismatch: 'refused',
  pm2_not_found: 'refused',
  pm2_duplicate_name: 'refused',
  pm2_disconnected: 'refused',
  pm2_timeout: 'refused',
  pm2_failed: 'refused',
  // Backups and restores (backup_<status> is how `deploy backup run` reports a run that did not verify).
  backup_running: 'refused',
  backup_skipped: 'refused',
  backup_failed: 'refused',
  backup_unverified: 'refused',
  backup_file_gone: 'refused',
  backup_corrupt: 'refused',
  backup_source_missing: 'refused',
  restore_in_progress: 'refused',
  restore_not_configured: 'refused',
  restore_tool_missing: 'refused',
  restore_failed: 'refused',
  // Promotion (deploy promote): the source's gate, the kept tarball, the target's approval.
  promotion_refused: 'refused',
  artifact_missing: 'refused',
  artifact_mismatch: 'refused',
  approval_required: 'usage',
  approval_declined: 'refused',
  // Host setup (deploy setup, controller/setup): packing the agent, what the host must allow, a step that failed.
  agent_package_failed: 'usage',
  setup_not_privileged: 'refused',
  setup_conflict: 'refused',
  setup_step_failed: 'refused',

  // Bugs, or an agent and a controller of different versions.
  internal_error: 'internal',
  not_found: 'internal',
  bad_request: 'internal',
  invalid_json: 'internal',
  body_too_large: 'internal',
  unsupported_media_type: 'internal',
  ssh_session_closed: 'internal',
  unquotable_argument: 'internal',
  empty_command: 'internal',
  host_not_allowed: 'internal',
  origin_not_allowed: 'internal',
  reconcile_failed: 'internal',
  orphan_stop_failed: 'internal',
  // part tls: a certificate nginx may not serve, TLS asked of an app without it.
  tls_certificate_invalid: 'refused',
  tls_not_configured: 'usage',

  // Fleets (part fleet-core): an environment of several hosts (controller/fleet).
  fleet_unsupported: 'usage',
  fleet_unreachable: 'unreachable',
  fleet_locked: 'refused',
  fleet_rolled_back: 'rolled_back',
  fleet_failed_after_switch: 'failed_after_switch',
  rollout_aborted: 'refused',

  // Delta uploads (part delta, issue 16): a base file the host no longer has, or no longer the
  // bytes its index names (the controller falls back to a full upload), or a bundle refused.
  delta_base_missing: 'refused',
  delta_base_mismatch: 'refused',
  delta_bundle_invalid: 'refused',
  // Fleet operations (part fleet-ops): status, rollback, switch and reconcile across a fleet's hosts.
  fleet_rollback_ambiguous: 'usage',
  // A fleet rollback/switch lost a host's link while its part ran (controller/commands/fleet-move.ts).
  fleet_in_doubt: 'in_doubt',
  fleet_drift_left: 'failed_after_switch',
  fleet_busy: 'refused',

  // Operator surface (part ops): the nginx probe secret, `deploy upgrade`, `deploy logs`.
  probe_secret_unavailable: 'usage',
  upgrade_layout_missing: 'usage',
  upgrade_rolled_back: 'refused',
  upgrade_not_restored: 'internal',

  // Delta uploads, part 2 (content hash cache): a file whose bytes are not the hash the release
  // manifest was computed with (build output written during the push, or a wrong cache entry).
  release_content_changed: 'refused',

  // Promotion to or from a fleet (part promote): a source fleet whose hosts serve different releases.
  promotion_source_drift: 'refused',

  // The upload-once relay (part relay-agent): a host serves a kept upload to its peers for one
  // session (agent/release/relay-*.ts); any of these on a peer makes the controller upload directly.
  relay_artifact_missing: 'refused',
  relay_address_invalid: 'usage',
  relay_port_busy: 'usage',
  relay_session_exists: 'refused',
  relay_unreachable: 'refused',
  relay_refused: 'refused',

  // App secrets (part env): deploy env set/unset (controller/commands/env.ts, agent/routes/env.ts).
  env_value_missing: 'usage',
  env_value_on_argv: 'usage',
  env_value_invalid: 'usage',
  env_write_partial: 'refused',

  // A promotion's download of the source host's kept tarball got no bytes for the stall limit
  // (the source agent stopped or hangs on its disk); nothing changed on the target.
  download_stalled: 'unreachable',
  // `deploy logs -f` left so much unread (stopped with Ctrl-Z) that the agent ended the follow.
  logs_fell_behind: 'unreachable',
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERROR_KINDS;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_KINDS, value);
}

export function kindOf(code: ErrorCode): ErrorKind {
  return ERROR_KINDS[code];
}

export interface SlipwayErrorOptions {
  hint?: string;
  details?: string[];
  cause?: unknown;
  /** HTTP status when the error crosses the agent API. */
  status?: number;
}

export class SlipwayError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: string[] | undefined;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options: SlipwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SlipwayError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
    this.status = options.status ?? 500;
  }

  get kind(): ErrorKind {
    return kindOf(this.code);
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: this.code, message: this.message };
    if (this.hint) body.hint = this.hint;
    if (this.details?.length) body.details = this.details;
    return body;
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  return typeof value === 'object' && value !== null
    && typeof (value as ErrorBody).error === 'string' && typeof (value as ErrorBody).message === 'string';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
