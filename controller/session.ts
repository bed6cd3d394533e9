import os from 'node:os';
import { AgentClient } from './agent-client.js';
import type { ControllerConfig } from './config.js';
import { connectSsh, type SshSession } from './ssh.js';
import type { SlipwayError } from '../contract/errors.js';
import { API_VERSION } from '../contract/api.js';
import { VERSION } from '../contract/version.js';
import { incompatibility } from './compat.js';

export interface AgentSession {
  ssh: SshSession;
  agent: AgentClient;
  close(): Promise<void>;
}

/** user@host of whoever runs the controller: recorded by the agent in deployments and the audit log. */
export function localActor(): string {
  const user = (process.env.SLIPWAY_ACTOR_USER ?? os.userInfo().username).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'unknown';
  const host = os.hostname().replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, 255) || 'unknown';
  return `${user}@${host}`;
}

/** How long a failed request waits to learn whether the SSH link itself went down. */
const LINK_LOSS_GRACE_MS = 1_000;

/** The session's loss error if it closes within `ms` (at once if it already has), else null. */
function lossWithin(ssh: SshSession, ms: number): Promise<SlipwayError | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    ssh.onClose((error) => {
      clearTimeout(timer);
      resolve(error ?? null);
    });
  });
}

/** The SSH connection to the config's host, with its key, known_hosts, timeouts and keepalive. */
export function connectHost(config: Pick<ControllerConfig, 'host'>): Promise<SshSession> {
  return connectSsh({
    host: config.host.address,
    port: config.host.port,
    username: config.host.user,
    ...(config.host.identityFile ? { privateKeyPath: config.host.identityFile } : {}),
    knownHostsPath: config.host.knownHostsFile,
    connectTimeoutMs: config.host.connectTimeoutMs,
    keepaliveIntervalMs: config.host.keepaliveIntervalMs,
    keepaliveCountMax: config.host.keepaliveCountMax,
  });
}

/**
 * One SSH connection per CLI run (≈120–180 ms to set up, ≈5 ms per request after): the token is
 * read over it, and every API request rides a forwarded channel of it to the agent's loopback port.
 */
export async function openAgentSession(config: ControllerConfig): Promise<AgentSession> {
  const ssh = await connectHost(config);
  try {
    const read = await ssh.execChecked(['cat', '--', config.agent.tokenFile], { step: 'read the agent token', timeoutMs: 15_000 });
    const token = read.stdout.trim();
    const agent = new AgentClient(() => ssh.forwardOut('127.0.0.1', config.agent.port), token, localActor(), () => lossWithin(ssh, LINK_LOSS_GRACE_MS), {
      hostLabel: ssh.remoteAddressLabel, uploadStallTimeoutMs: config.host.uploadStallTimeoutMs,
    });
    // The version check on connect: one request (≈ 5 ms over the open link) before anything else.
    const health = await agent.get<{ version?: string; apiVersion?: number }>('/health');
    const problem = incompatibility({ version: VERSION, apiVersion: API_VERSION }, { version: health.version ?? 'unknown', apiVersion: health.apiVersion ?? 1 }, ssh.remoteAddressLabel);
    if (problem) throw problem;
    return { ssh, agent, close: () => ssh.close() };
  } catch (error) {
    await ssh.close();
    throw error;
  }
}
